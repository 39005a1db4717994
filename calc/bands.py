"""The 80% band of a predicted figure, from the cross-validated residuals of its group in the corpus.

Residual. For a row with prediction p and measurement m, r = log(p / m) of the figure read as a time: a time, GPU-hours,
a memory peak or a KV capacity as it is; a rate (throughput, MFU) negated, since log(p_rate / m_rate) =
log(m_time / p_time). So every r is log(predicted time / measured time), and figures that are one prediction seen
through different units share one residual.

Pools: the residuals that share one prediction are pooled (``POOL``):

- ``training``: throughput, MFU, step time and GPU-hours are all the one predicted step time (tokens/s = tokens per
  step / step time; MFU = model FLOPs per step / (step time x peak); GPU-hours = steps x step time x GPUs), so an
  MFU or step-time band is read from every training row of its generation x dtype x dense/MoE, not from the few rows
  published in that unit.
- ``serving_decode``: TPOT, end-to-end latency and serving throughput. Decode is memory-bound and dominates all
  three: throughput at a batch B is B / TPOT per decode step, e2e = TTFT + (T - 1) TPOT is TPOT-dominated for the
  output lengths of the corpus (T >> TTFT / TPOT), so their residuals are the decode-step residual.
- ``serving_prefill``: TTFT is prefill, compute-bound (the GEMM plateau, attention), a different error from decode:
  kept apart, and only where a prefill pool has fewer than ``min_rows`` rows does it fall back to the ``serving``
  family (``FAMILY``: prefill and decode rows together), which is wider for holding both physics.
- KV capacity and each peak-memory kind (fine-tuning, training, inference: optimizer states vs KV cache) stay
  pools of their own, with no family fallback: their errors do not share a cause. One exception
  (``SAME_ENGINE_POOL``): a training peak reads the fine-tuning peaks' pool, the same memory engine (`memory --mode
  train` and `--mode finetune --method full` price one job alike: one band, one verdict), whether or not the corpus
  gives training peaks a pool of their own (until the twenty-fifth pass only while it gave none, so once it did the
  same job read two bands). One pool for both kinds was tried in the twenty-fifth pass and not kept: its four fit
  sources disagree (the fit split's training peaks, torchtitan and pytorch/ao runs, priced 22% under at the median;
  the fine-tuning peaks 2%), so its leave-one-source-out spread factor came out at 3.25 (leave-one-out coverage 0.5
  at 1) and every fine-tuning band about three times wider than its own rows' scatter.

benchmarks/fit_bands.py (run by benchmarks/fit_corpus.py) writes, per band group (pool | GPU generation | dtype
class | dense/moe), per pool and per family, the 10% and 90% quantiles q10, q90 of r over the out-of-fold
residuals of the fit split, each source group's rows weighing 1 in all, spread about their median by a
leave-one-source-out factor, with the stacks each group holds (calc/data/fitted_defaults.json, "bands"; a pool
entry that also holds "moe" quantiles, spread by the factor its MoE rows measured, bands a MoE figure read from the
pool with those: benchmarks/fit_bands.py SPREAD_BY_CLASS, off today). For a
prediction p of a time-like figure the measured value m = p exp(-r) lies, 80% of the time, in

    [p exp(-q90), p exp(-q10)]

and for a rate in [p exp(q10), p exp(q90)]. The chain: the band group when it has >= min_rows rows from
>= min_group_sources source groups (a pool: min_sources) and holds rows of the figure's stack (``stack``: a stack the group has never seen
makes its scatter that of other stacks' settings); else its pool over all generations; else (prefill) the serving
family; else no comparable measurement. Two cases are "no band" (``rows`` 0, group starting ``NO_BAND``, printed as
"no band: no comparable measurement"): no usable rows at all, given the stated wide default (a factor of 2 either
way); and a band wider than ``max_half_width`` of the prediction either way (too_wide: read on its log width, so a
time and its rate agree), whose rows do not resemble the figure enough to bound it: its ends are kept, to show how
far they scatter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from calc.fitted import fitted

# Corpus kind -> (family, +1 time-like / -1 rate-like); benchmarks/fit_corpus.py reads the same table.
KINDS: dict[str, tuple[str, int]] = {
    "training_throughput": ("training", -1), "training_mfu": ("training", -1), "training_step_time": ("training", 1),
    "training_gpu_hours": ("training", 1), "serving_ttft": ("serving", 1), "serving_tpot": ("serving", 1),
    "serving_e2e": ("serving", 1), "serving_throughput": ("serving", -1), "kv_capacity": ("kv_capacity", 1),
    "finetune_peak_memory": ("peak_memory", 1), "training_peak_memory": ("peak_memory", 1),
    "inference_peak_memory": ("peak_memory", 1),
}
# Corpus kind -> the pool whose residuals it shares (module docstring); a kind not listed is a pool of its own.
POOL: dict[str, str] = {
    "training_throughput": "training", "training_mfu": "training", "training_step_time": "training",
    "training_gpu_hours": "training", "serving_tpot": "serving_decode", "serving_e2e": "serving_decode",
    "serving_throughput": "serving_decode", "serving_ttft": "serving_prefill",
}
# Pool -> the family it falls back to when the pool itself has too few rows (only where the pooling is justified).
FAMILY: dict[str, str] = {"serving_prefill": "serving", "serving_decode": "serving"}
# Pool -> the pool read in its place: a training peak is the fine-tuning peak's memory engine (calc.memory.training
# prices `memory --mode train`, train-step and `--mode finetune --method full` alike), so one job gets one band and one
# fit verdict in both modes (module docstring).
SAME_ENGINE_POOL: dict[str, str] = {"training_peak_memory": "finetune_peak_memory"}
NO_BAND = "no comparable measurement"


def pool_of(kind: str) -> str:
    return POOL.get(kind, kind)


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    level: float
    rows: int  # corpus rows behind the band (0: the stated wide default)
    group: str  # the band group, its pool or family, or NO_BAND


def dtype_class(dtype: str) -> str:
    """fp8 GEMMs apart; bf16, fp16 and mixed precision as one 16-bit class; the int4 checkpoint formats (awq, gptq)
    as int4, the class calc.memory.weights.weights_class gives such a checkpoint; other dtypes by name."""
    if dtype.startswith("fp8"):
        return "fp8"
    if dtype.startswith(("bf16-", "fp16-")):  # a training recipe (calc.memory.training.RECIPES): its weights' dtype
        return "16-bit"
    return "16-bit" if dtype in ("bf16", "fp16", "mixed") else "int4" if dtype in ("awq", "gptq") else dtype


def group_name(kind: str, gpu: str, dtype: str, moe: bool) -> str:
    """The finest band group: pool | GPU generation | dtype class | dense/moe."""
    return f"{pool_of(kind)}|{gpu}|{dtype_class(dtype)}|{'moe' if moe else 'dense'}"


def band(kind: str, value: float, *, gpu: str, dtype: str = "bf16", moe: bool = False, stack: str | None = None) -> Band:
    """The 80% band around ``value`` (a prediction of a corpus ``kind``) for a GPU generation (``gpu``: the
    GPUSpec.arch, e.g. "Hopper"), dtype, dense/MoE model and, where known, the stack or engine that runs it
    (``stack``: the key benchmarks/fit_corpus.row_stack gives a corpus row, a training stack as
    calc.training.stack.stack_key names it, a serving engine family, else the name in lower case; None: not known,
    the group's band applies) (module docstring).

    >>> b = band("training_mfu", 0.5, gpu="Ampere")
    >>> b.low < 0.5 < b.high, b.level
    (True, 0.8)
    """
    if kind not in KINDS:
        raise ValueError(f"no band for kind {kind!r}; kinds: {', '.join(KINDS)}")
    data = fitted()["bands"]
    group, pool = group_name(kind, gpu, dtype, moe), pool_of(kind)
    borrowed = ""
    if SAME_ENGINE_POOL.get(pool) in data["pools"]:
        own_pool = pool
        group, pool = group_name(SAME_ENGINE_POOL[pool], gpu, dtype, moe), SAME_ENGINE_POOL[pool]
        group_label = f"{group} (the same memory engine as {own_pool})"
        borrowed = f"read for {own_pool}, the same memory engine; "
    else:
        group_label = group
    family = FAMILY.get(pool)
    own = data["groups"].get(group)
    unseen = own is not None and stack is not None and stack not in own.get("stacks", [stack])
    why = (f"{group} holds no {stack} rows" if unseen
           else f"{group} has fewer than {data['min_rows']} rows from "
                f"{data.get('min_group_sources', data.get('min_sources', 1))} sources")
    if own is not None and not unseen:
        q, name = own, group_label
    elif pool in data["pools"]:
        q, name = data["pools"][pool], f"{pool} ({borrowed}all generations: {why})"
        if moe and "moe" in q:  # the pool's quantiles spread by the k its MoE rows measured (module docstring)
            q, name = {**q, **q["moe"]}, f"{pool} ({borrowed}all generations, spread for MoE: {why})"
    elif family in data["families"]:
        q, name = data["families"][family], f"{family} (prefill and decode, all generations: {why}, and {pool} too)"
    else:
        low, high = oriented(kind, value, data["wide_default"]["q10"], data["wide_default"]["q90"])
        return Band(low=low, high=high, level=data["level"], rows=0, group=NO_BAND)
    low, high = oriented(kind, value, q["q10"], q["q90"])
    cap = data.get("max_half_width")
    if cap is not None and too_wide(q["q10"], q["q90"], cap):
        return Band(low=low, high=high, level=data["level"], rows=0,
                    group=f"{NO_BAND} (the nearest rows, {q['rows']} of {name}, scatter beyond ±{cap:.0%})")
    return Band(low=low, high=high, level=data["level"], rows=q["rows"], group=name)


def too_wide(q10: float, q90: float, cap: float) -> bool:
    """A band is no band when its half-width, read on the band of the same log width centred on the prediction,
    [p exp(-w/2), p exp(w/2)] with w = q90 - q10, exceeds ``cap`` of the prediction: sinh(w / 2) > cap. Read so, a
    time and the rate that is its inverse (one residual) are banded alike; cap 1 (±100%) is w > 2 asinh(1) = 1.763,
    a band spanning more than a factor 5.83 from end to end.

    >>> too_wide(-0.8, 0.9, 1.0), too_wide(-0.9, 0.9, 1.0)
    (False, True)
    """
    return math.sinh((q90 - q10) / 2) > cap


def oriented(kind: str, value: float, q10: float, q90: float) -> tuple[float, float]:
    """The band's ends from residual quantiles (module docstring): a time-like figure p lies in
    [p exp(-q90), p exp(-q10)], a rate in [p exp(q10), p exp(q90)].

    >>> [round(x, 3) for x in oriented("serving_ttft", 1.0, -0.1, 0.2)], [round(x, 3) for x in oriented("training_mfu", 1.0, -0.1, 0.2)]
    ([0.819, 1.105], [0.905, 1.221])
    """
    lo, hi = (-q90, -q10) if KINDS[kind][1] > 0 else (q10, q90)
    return value * math.exp(lo), value * math.exp(hi)
