"""Timing benchmark: train-plan for Llama 3.1 405B on 16,384 H100s must finish in under 2 s on one core.

    python benchmarks/plan_search.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from calc.sources.catalog import load_gpu, load_model, load_system  # noqa: E402
from calc.training.cost import ModelCost  # noqa: E402
from calc.training.plan import search_plans  # noqa: E402

CASES = [
    ("llama3.1-405b", "h100", "dgx-h100", 16384, 2048, 8192),
    ("deepseek-v3", "h800", "hgx-h800", 2048, 15360, 4096),
    ("mixtral-8x7b", "h100", "dgx-h100", 1024, 2048, 4096),
]
LIMIT_S = 2.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| model | GPUs | global batch x seq | layouts considered / fitting / timed | best plan | time (best of runs) |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for name, gpu, system, n, batch, seq in CASES:
        best_time, result = float("inf"), None
        for _ in range(args.repeat):
            start = time.perf_counter()
            cost = ModelCost(load_model(name), load_gpu(gpu), load_system(system), seq)  # fresh caches each run
            result = search_plans(cost, n, batch)
            best_time = min(best_time, time.perf_counter() - start)
        assert result is not None
        top = result.plans[0].layout if result.plans else "none fits"
        print(f"| {name} | {n:,} | {batch} x {seq} | {result.layouts_considered} / {result.layouts_fitting} / "
              f"{result.layouts_timed} | {top} | {best_time:.3f} s |")
        worst = max(worst, best_time)
    print(f"\nslowest search {worst:.3f} s (limit {LIMIT_S} s)")
    return 0 if worst < LIMIT_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
