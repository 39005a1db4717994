"""Start-up time of the CLI: median wall time of `llmcalc --help` and `llmcalc params llama2-7b`.

Run: python benchmarks/startup.py [runs]   (uses the `llmcalc` on PATH)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = (["--help"], ["params", "llama2-7b"], ["params", "llama2-7b", "--json"])


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
        print(f"llmcalc {' '.join(args):28s} median {statistics.median(samples) * 1e3:6.0f} ms  "
              f"min {min(samples) * 1e3:5.0f} ms  max {max(samples) * 1e3:5.0f} ms  ({runs} runs)")


if __name__ == "__main__":
    main()
