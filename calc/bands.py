"""The 80% band of a predicted figure, from the cross-validated residuals of its group in the corpus.

benchmarks/fit_corpus.py writes, per band group (kind | GPU generation | dtype class | dense/moe) and per
kind, the 10% and 90% quantiles q10, q90 of r = log(predicted / measured) of time-like figures, taken over
out-of-fold predictions of the fit split (calc/data/fitted_defaults.json, "bands"). For a prediction p of a
time-like figure (a time, GPU-hours, a memory peak, a KV capacity) the measured value m = p exp(-r) lies, 80% of
the time, in

    [p exp(-q90), p exp(-q10)]

and for a rate (throughput, MFU), whose residual is -r, in [p exp(q10), p exp(q90)]. A group with fewer than
min_rows rows falls back to its kind, a kind without them to the stated wide default (a factor of 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from calc.fitted import fitted

# Corpus kind -> (family, +1 time-like / -1 rate-like); the same table as benchmarks/fit_corpus.py FAMILY.
KINDS: dict[str, tuple[str, int]] = {
    "training_throughput": ("training", -1), "training_mfu": ("training", -1), "training_step_time": ("training", 1),
    "training_gpu_hours": ("training", 1), "serving_ttft": ("serving", 1), "serving_tpot": ("serving", 1),
    "serving_e2e": ("serving", 1), "serving_throughput": ("serving", -1), "kv_capacity": ("kv_capacity", 1),
    "finetune_peak_memory": ("peak_memory", 1), "training_peak_memory": ("peak_memory", 1),
    "inference_peak_memory": ("peak_memory", 1),
}


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    level: float
    rows: int  # corpus rows behind the band (0: the wide default)
    group: str  # the band group, the family, or "wide default: no comparable measurement"


def dtype_class(dtype: str) -> str:
    """fp8 GEMMs apart; bf16, fp16 and mixed precision as one 16-bit class; other dtypes by name."""
    return "fp8" if dtype.startswith("fp8") else "16-bit" if dtype in ("bf16", "fp16", "mixed") else dtype


def group_name(kind: str, gpu: str, dtype: str, moe: bool) -> str:
    """The finest band group: kind | GPU generation | dtype class | dense/moe."""
    return f"{kind}|{gpu}|{dtype_class(dtype)}|{'moe' if moe else 'dense'}"


def band(kind: str, value: float, *, gpu: str, dtype: str = "bf16", moe: bool = False) -> Band:
    """The 80% band around ``value`` (a prediction of a corpus ``kind``) for a GPU generation (``gpu``: the
    GPUSpec.arch, e.g. "Hopper"), dtype and dense/MoE model (module docstring).

    >>> b = band("training_mfu", 0.5, gpu="Ampere")
    >>> b.low < 0.5 < b.high, b.level
    (True, 0.8)
    """
    if kind not in KINDS:
        raise ValueError(f"no band for kind {kind!r}; kinds: {', '.join(KINDS)}")
    sign = KINDS[kind][1]
    data = fitted()["bands"]
    group = group_name(kind, gpu, dtype, moe)
    if group in data["groups"]:
        q, name = data["groups"][group], group
    elif kind in data["kinds"]:
        q, name = data["kinds"][kind], f"{kind} (all generations: {group} has fewer than {data['min_rows']} rows)"
    else:
        q, name = {**data["wide_default"], "rows": 0}, "wide default: no comparable measurement"
    lo, hi = (-q["q90"], -q["q10"]) if sign > 0 else (q["q10"], q["q90"])
    return Band(low=value * math.exp(lo), high=value * math.exp(hi), level=data["level"], rows=q["rows"], group=name)
