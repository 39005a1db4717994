"""Start-up and query time of the CLI: median wall time of `llmcalc --help` (budget 0.3 s) and of
typical queries (budget 0.4 s each).

Run: python benchmarks/startup.py [runs]   (uses the `llmcalc` on PATH)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = (
    ["--help"],
    ["params", "llama2-7b"],
    ["params", "llama2-7b", "--json"],
    ["memory", "llama2-70b", "--gpu", "a800", "--num-gpus", "2", "--seq", "4K"],
    ["latency", "llama2-70b", "--gpu", "a800", "--num-gpus", "8", "--batch", "16", "--prompt", "4000", "--output", "1"],
    ["concurrency", "llama2-70b", "--gpu", "a800", "--num-gpus", "2", "--max-model-len", "4000"],
    ["report", "llama2-70b", "--gpu", "a800", "--num-gpus", "2"],
)


def time_command(args: list[str], runs: int) -> list[float]:
    exe = shutil.which("llmcalc") or sys.exit("llmcalc is not on PATH; pip install . first")
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([exe, *args], check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    for args in COMMANDS:
        samples = time_command(args, runs)
        print(f"llmcalc {' '.join(args)[:60]:60s} median {statistics.median(samples) * 1e3:6.0f} ms  "
              f"min {min(samples) * 1e3:5.0f} ms  max {max(samples) * 1e3:5.0f} ms  ({runs} runs)")


if __name__ == "__main__":
    main()
