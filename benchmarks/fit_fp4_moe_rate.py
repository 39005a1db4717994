"""Fit the fp4 MoE grouped-GEMM rate (ServingAssumptions.fp4_grouped_gemm_dim / fp4_grouped_gemm_exponent) to
TensorRT-LLM's measured MoE layer on B200 (benchmarks/data/aiconfigurator_b200_fp4_moe.csv: aiconfigurator's
b200_sxm/moe/trtllm/1.3.0rc20 table, NVFP4 CUTLASS and W4A8 MXFP4 experts, balanced routing, EP 1, TP 1-8, >= 128
tokens per expert, the expert shapes of catalog models).

Each point is timed by this model as one MoE layer: the routed experts' GEMMs (calc.serving.step.weight_gemm_time,
experts_only) + router / top-k / permute (moe_routing_s), balanced (expert_imbalance 1), over the MoE layers. The rate
of an expert GEMM whose smaller weight dimension is d (min(K, N) on its TP rank) is

    r(d) = min(1, (d / D) ** alpha)

and (D, alpha) is the grid point that minimises |log median(measured / predicted)| + median |log(measured /
predicted)|: the pooled median on 1 and the spread smallest. The rate is the grouped kernel's against a dense GEMM,
so the dense fp4 GEMM is timed here at the plateau aiconfigurator measured for it on the same GPU (the
Blackwell/fp4 PRIOR of benchmarks/fit_corpus.py, 0.43 of B200's dense fp4 peak), not at the corpus-fitted value:
both sides of the ratio come from the same silicon tables, and the result does not move with a refit. Not a corpus
fit: no serving measurement enters it.

    python benchmarks/fit_fp4_moe_rate.py       # prints the fit, the per-model medians and q10-q90
"""

from __future__ import annotations

import csv
import math
import statistics
from functools import cache
from pathlib import Path

from fit_corpus import PRIOR

DATA = Path(__file__).parent / "data" / "aiconfigurator_b200_fp4_moe.csv"
# expert shape (hidden, intermediate, experts) -> catalog model
SHAPES = {(4096, 14336, 8): "mixtral-8x7b", (6144, 16384, 8): "mixtral-8x22b", (2048, 768, 128): "qwen3-30b-a3b",
          (4096, 1536, 128): "qwen3-235b-a22b", (7168, 2048, 256): "deepseek-v3", (2880, 2880, 32): "gpt-oss-20b",
          (2880, 2880, 128): "gpt-oss-120b"}
# The dense NVFP4 GEMM's large-shape fraction of B200's fp4 peak in aiconfigurator's TensorRT-LLM GEMM table (0.43:
# the Blackwell/fp4 prior of benchmarks/fit_corpus.py, where its source is quoted).
MEASURED_DENSE_FP4 = PRIOR["gemm_plateau"]["Blackwell/fp4"]
DIMS = (2048, 4096, 6144, 8192, 12288, 16384, 32768, 65536)
EXPONENTS = tuple(i / 100 for i in range(0, 101, 3))


def points() -> list[tuple[str, int, int, float]]:
    """(model, moe_tp, tokens, measured seconds) of every kept row."""
    lines = [line for line in DATA.read_text().splitlines() if not line.startswith("#")]
    out = []
    for r in csv.DictReader(lines):
        model = SHAPES[(int(r["hidden_size"]), int(r["inter_size"]), int(r["num_experts"]))]
        out.append((model, int(r["moe_tp_size"]), int(r["num_tokens"]), float(r["latency_ms"]) * 1e-3))
    return out


@cache
def _model(name: str):
    """The catalog model as the table ran it: gpt-oss as shipped (MXFP4 experts), the rest as NVFP4 checkpoints."""
    from calc.memory.weights import requantize
    from calc.sources.catalog import load_model

    m = load_model(name)
    return m if name.startswith("gpt-oss") else requantize(m, "nvfp4")[0]


def layer_s(name: str, tp: int, tokens: int, dim: float, exponent: float) -> float:
    """This model's time of one balanced MoE layer at ``tokens`` on moe_tp ``tp`` (B200), the dense fp4 GEMM at the
    measured plateau (MEASURED_DENSE_FP4)."""
    from corpus_predict import _overridden

    from calc.hardware.efficiency import GEMM_PLATEAU, memory_efficiency
    from calc.serving.assumptions import ServingAssumptions
    from calc.serving.step import moe_routing_s, weight_gemm_time
    from calc.sources.catalog import load_gpu

    m, gpu = _model(name), load_gpu("b200")
    # the kernel alone, as the table times it: balanced routing, no whole-step MoE serving rate (calc.serving.moe)
    a = ServingAssumptions(expert_imbalance=1.0, moe_serving_rate=1.0, fp4_grouped_gemm_dim=dim,
                           fp4_grouped_gemm_exponent=exponent)
    with _overridden(GEMM_PLATEAU, {"Blackwell/fp4": MEASURED_DENSE_FP4}):
        s = weight_gemm_time(m, gpu, tokens, 0, tp, None, None, 1, a, experts_only=True)[0]
    s += moe_routing_s(m, tokens, tp, 1, gpu.hbm_tb_s * 1e12 * memory_efficiency(gpu), a)
    return s / (m.num_layers - m.moe.num_dense_layers)


def ratios(dim: float, exponent: float) -> list[float]:
    return [meas / layer_s(name, tp, tokens, dim, exponent) for name, tp, tokens, meas in points()]


def score(r: list[float]) -> float:
    return abs(math.log(statistics.median(r))) + statistics.median(abs(math.log(x)) for x in r)


def fit() -> tuple[float, float]:
    """(D, alpha) of the grid that scores best."""
    return min(((d, e) for d in DIMS for e in EXPONENTS), key=lambda de: score(ratios(*de)))


def main() -> None:
    d, e = fit()
    r = ratios(d, e)
    q = sorted(r)
    print(f"fp4_grouped_gemm_dim {d:g}, fp4_grouped_gemm_exponent {e:g}: {len(r)} points, median measured / predicted "
          f"{statistics.median(r):.2f}, median |log| {statistics.median(abs(math.log(x)) for x in r):.3f}, "
          f"q10-q90 {q[len(q) // 10]:.2f}-{q[9 * len(q) // 10]:.2f}; at rate 1: median {statistics.median(ratios(d, 0.0)):.2f}")
    for name in sorted({p[0] for p in points()}):
        mine = [x for x, p in zip(r, points(), strict=True) if p[0] == name]
        print(f"  {name}: {len(mine)} points, median {statistics.median(mine):.2f}")


if __name__ == "__main__":
    main()
