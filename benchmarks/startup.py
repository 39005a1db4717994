"""Start-up and query time of the CLI: median wall time of `llmcalc --help` (budget 0.3 s), of typical
queries (budget 0.4 s each) and of plan searches (serve, train-plan: budget 2 s), each printed beside the
same-moment median of `python -c pass`, so that a run on a loaded machine can be read against it.

The runs are interleaved (one of each command per round) so that a change in the machine's load touches
every command alike. Where PYTHONDONTWRITEBYTECODE is set, every run recompiles the package's sources:
slower than an installed copy, whose bytecode is cached.

Run: python benchmarks/startup.py [runs]   (uses the `llmcalc` on PATH)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

HELP, QUERY, SEARCH = 0.3, 0.4, 2.0  # budgets, seconds
COMMANDS = (
    (HELP, ["--help"]),
    (QUERY, ["params", "llama2-7b"]),
    (QUERY, ["params", "llama2-7b", "--json"]),
    (QUERY, ["memory", "llama2-70b", "--gpu", "a800", "--num-gpus", "2", "--seq", "4K"]),
    (QUERY, ["latency", "llama2-70b", "--gpu", "a800", "--num-gpus", "8", "--batch", "16", "--prompt", "4000",
             "--output", "1"]),
    (QUERY, ["concurrency", "llama2-70b", "--gpu", "a800", "--num-gpus", "2", "--max-model-len", "4000"]),
    (QUERY, ["report", "llama2-70b", "--gpu", "a800", "--num-gpus", "2"]),
    (SEARCH, ["serve", "llama3-70b", "--gpu", "h100", "--prompt", "2000", "--output", "300", "--ttft-ms", "1000",
              "--tpot-ms", "40", "--rate", "20"]),
    (SEARCH, ["train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "256",
              "--seq", "8192"]),
)


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    exe = shutil.which("llmcalc") or sys.exit("llmcalc is not on PATH; pip install . first")
    baseline: list[float] = []
    samples: list[list[float]] = [[] for _ in COMMANDS]
    for _ in range(runs):
        baseline.append(_seconds([sys.executable, "-c", "pass"]))
        for i, (_, args) in enumerate(COMMANDS):
            samples[i].append(_seconds([exe, *args]))
    print(f"{'python -c pass (baseline)':68s} median {statistics.median(baseline) * 1e3:6.0f} ms")
    for (budget, args), times in zip(COMMANDS, samples, strict=True):
        median = statistics.median(times)
        verdict = "ok" if median <= budget else "OVER"
        print(f"llmcalc {' '.join(args)[:60]:60s} median {median * 1e3:6.0f} ms  min {min(times) * 1e3:5.0f} ms  "
              f"max {max(times) * 1e3:5.0f} ms  budget {budget * 1e3:4.0f} ms {verdict}  ({runs} runs)")


if __name__ == "__main__":
    main()
