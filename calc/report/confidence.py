"""How sure each printed figure is: its 80% band (calc.bands) and the three-valued fit verdict, attached in one place.

``FIGURES`` is the whole wiring: for each result class, which of its keys is a predicted figure and which corpus
kind's band it takes. ``annotate`` walks a result (and the results nested in it: a report's memory and serving
parts, a plan search's plans, a serving plan's layouts), and beside each listed class's JSON puts

    bands: {KEY: {low, high, level, rows, group}}        and, where the class has a memory figure,
    fit:   "fits" | "tight" | "does not fit"              right after the boolean ``fits``.

The GPU generation (GPUSpec.arch), dtype and dense/MoE that pick a band group are read from the result (``gpu``,
``dtype`` or ``precision``, ``model``), or inherited from the result it is nested in; so is the stack the band is read
for (calc.bands.band ``stack``: a group holding no rows of it gives way to its pool): a training result's ``stack``
(train-step, train-plan's plans, train-time's plan: megatron when no --stack is given, the step model's reference) or
a serving result's ``engine`` (latency, concurrency, serve: vllm by default), by its family (vllm-v0 is vllm).
--explain names it after each band's group.

Two figures are derived rather than looked up:

- ``gpus_needed`` (serve): GPUs needed scale as 1 / throughput, so at the throughput band [t_lo, t_hi] of
  ``tokens_per_s_per_gpu`` = t they lie in [n t / t_hi, n t / t_lo], rounded outward to whole GPUs (``whole``; not
  to whole replicas). A serving
  plan without --rate or --users sizes one replica: its GPU count is the layout itself, not a prediction.
- ``max_concurrency``: requests held = KV tokens / tokens per request, so it takes the KV-capacity band, rounded
  outward to whole requests (``whole``).

A user calibration (--calibration, from `bench --save` or `calibrate --save`) replaces the corpus band of every
time and throughput figure by the calibration's own residual spread: for each measured op point, the efficiency its
curve predicts from the *other* points (leave-one-out, calc.hardware.calibration.Calibration.interpolate) against
the measured one, r = log(measured / predicted efficiency) = log(predicted / measured time); the band is
[p exp(-q90), p exp(-q10)] of those r as in calc.bands (negated for a rate). It covers the scatter of the
calibrated efficiencies only, not the step model's structure (communication, overlap), and says so in its group.
A calibration with fewer than ``MIN_CALIBRATION_POINTS`` residuals keeps the corpus band, labelled as such.
Memory and KV-capacity figures do not depend on a calibration and keep the corpus band.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel

from calc.bands import KINDS, NO_BAND, Band, band, oriented
from calc.fitted import fitted
from calc.units import figure, gib, human, percent, plural

FIT_VERDICTS = ("fits", "tight", "does not fit")
MIN_CALIBRATION_POINTS = 5
ASSUMED = f"{NO_BAND} (MFU assumed: --mfu, or 0.4 where no node type ships for the GPU; not predicted)"


@dataclass(frozen=True)
class Figure:
    """One predicted figure of a result: the corpus kind of its band, and how the "how sure" block prints it."""

    kind: str  # a calc.bands.KINDS key, or "gpus_needed" / "per_throughput" (derived from the throughput band)
    label: str
    unit: str  # s, ms, %, GiB, days, GPU-h, tokens/s, tokens, requests, GPUs


def _memory_kind(r: Any) -> str:
    return "inference_peak_memory" if getattr(r, "mode", "infer") == "infer" else "training_peak_memory"


# result class (module.name) -> {JSON key: Figure}; a callable kind picks the kind from the result
FIGURES: dict[str, dict[str, Figure | Callable[[Any], Figure]]] = {
    "calc.training.step.TrainStepResult": {
        "step_time_s": Figure("training_step_time", "step time", "s"),
        "mfu": Figure("training_mfu", "MFU", "%"),
        "memory_per_gpu_bytes": Figure("training_peak_memory", "memory per GPU", "GiB"),
    },
    "calc.training.mfu.TrainTimeResult": {  # mfu and step_time_s: its plan's, as train-step prints them
        "days": Figure("training_gpu_hours", "days", "days"),
        "gpu_hours": Figure("training_gpu_hours", "GPU-hours", "GPU-h"),
        "mfu": Figure("training_mfu", "MFU", "%"),
        "step_time_s": Figure("training_step_time", "step time", "s"),
        "cost": Figure("training_gpu_hours", "cost", ""),  # GPU-hours x the price: the GPU-hours band x the price
        "memory_per_gpu_bytes": Figure("training_peak_memory", "memory per GPU", "GiB"),
    },
    "calc.serving.latency.LatencyResult": {
        "ttft_s": Figure("serving_ttft", "TTFT", "s"),
        "tpot_s": Figure("serving_tpot", "TPOT", "s"),
        "e2e_s": Figure("serving_e2e", "end to end", "s"),
    },
    "calc.serving.capacity.ConcurrencyResult": {
        "kv_cache_tokens": Figure("kv_capacity", "KV cache", "tokens"),
        "max_concurrency": Figure("kv_capacity", "max concurrency", "requests"),
    },
    "calc.serving.plan.ServePlan": {
        "gpus_needed": Figure("gpus_needed", "GPUs needed", "GPUs"),
    },
    "calc.serving.plan.Layout": {
        "ttft_ms": Figure("serving_ttft", "TTFT", "ms"),
        "tpot_ms": Figure("serving_tpot", "TPOT", "ms"),
        "tokens_per_s_per_gpu": Figure("serving_throughput", "tokens/s per GPU", "tokens/s"),
        "gpus_needed": Figure("gpus_needed", "GPUs needed", "GPUs"),
        "kv_cache_tokens": Figure("kv_capacity", "KV cache", "tokens"),
        "max_concurrency": Figure("kv_capacity", "max concurrency", "requests"),
    },
    "calc.report.build.CompareRow": {  # compare: one row per GPU, the layout serve picks there
        "ttft_s": Figure("serving_ttft", "TTFT", "s"),
        "tpot_s": Figure("serving_tpot", "TPOT", "s"),
        "tokens_per_s": Figure("serving_throughput", "tokens/s", "tokens/s"),
        "cost_per_million_tokens": Figure("per_throughput", "cost per million tokens", ""),
    },
    "calc.memory.result.MemoryResult": {
        "per_gpu_bytes": lambda r: Figure(_memory_kind(r), "memory per GPU", "GiB"),
    },
    "calc.memory.finetune.FinetuneResult": {
        "per_gpu_bytes": Figure("finetune_peak_memory", "peak per GPU", "GiB"),
        "reserved_peak_bytes": Figure("finetune_peak_memory", "reserved peak", "GiB"),
    },
}

# result class -> (per-GPU bytes key, capacity key) of its memory fit; the band is that of the bytes key
MEMORY_FIT: dict[str, tuple[str, str]] = {
    "calc.training.step.TrainStepResult": ("memory_per_gpu_bytes", "gpu_memory_bytes"),
    "calc.training.mfu.TrainTimeResult": ("memory_per_gpu_bytes", "gpu_memory_bytes"),  # its plan's (none with --mfu)
    "calc.memory.result.MemoryResult": ("per_gpu_bytes", "gpu_memory_bytes"),
    "calc.memory.finetune.FinetuneResult": ("per_gpu_bytes", "gpu_memory_bytes"),
}
# results whose fit is that of a part: a report's memory answer, a plan search's best (first) plan
FIT_FROM: dict[str, str] = {"calc.report.build.Report": "memory", "calc.training.plan.PlanSearchResult": "plans"}
# time figures a deployment that does not fit has none of: null in its JSON (with their bands), as its table refuses
# before any time figure; the FLOPs, bytes and per-phase terms stay (what the step would move, were there room)
NO_TIME_UNLESS_FIT: dict[str, tuple[str, ...]] = {
    "calc.serving.latency.LatencyResult": ("ttft_s", "tpot_s", "e2e_s", "tokens_per_s", "decode_tokens_per_s", "meets_targets"),
    "calc.report.build.Report": ("train_time",),
}


def _levers(r: Any, training: bool = True) -> str:
    """What would make room for a training / fine-tuning peak, leaving out what the run already has: a higher --zero
    below ZeRO-3, --recompute full when it recomputes less, a smaller micro-batch above 1, CPU offload (fine-tuning),
    then more --pp/--tp and more GPUs ("a higher --zero" at ZeRO-3 named a change --zero 4 refuses)."""
    zero, recompute = getattr(r, "zero", 0) or 0, getattr(r, "recompute", "none")
    batch = getattr(r, "micro_batch", None) or getattr(r, "batch", 1)
    finetune = hasattr(r, "cpu_offload_bytes")
    levers = [*(["a higher --zero"] if zero < 3 and training and not finetune else []),
              *(["--zero 3 over more GPUs"] if finetune and zero < 3 else []),
              *(["--recompute full"] if recompute != "full" else []),
              *([f"a smaller --{'micro-batch' if hasattr(r, 'micro_batch') else 'batch'}"] if batch > 1 else []),
              *(["--offload"] if finetune else []),
              "more --pp/--tp" if not finetune else "more GPUs"]
    return ", ".join(levers[:-1]) + (" or " if len(levers) > 1 else "") + levers[-1]


def _memory_room(r: Any) -> str:
    if getattr(r, "mode", "infer") == "train":  # memory --mode train / report --mode train: the training levers
        return _levers(r)
    return "more GPUs (--num-gpus/--tp), a smaller --batch or --seq, or a lighter --dtype"


# what would make room, per class, for the warning of a tight fit (a callable reads the run: its levers left)
ROOM: dict[str, str | Callable[[Any], str]] = {
    "calc.training.step.TrainStepResult": _levers,
    "calc.training.mfu.TrainTimeResult": "more GPUs, or a layout with a higher --zero, --recompute full or more --pp/--tp "
                                         "(train-plan lists them)",
    "calc.memory.result.MemoryResult": _memory_room,
    "calc.memory.finetune.FinetuneResult": _levers,
    "calc.serving.capacity.ConcurrencyResult": "a lighter --kv-dtype or more GPUs, or a shorter --max-model-len",
    "calc.serving.plan.ServePlan": "more GPUs per replica, a lighter --kv-dtype or a shorter --prompt/--output",
}
def latency_room(r: Any) -> str:
    """latency's levers (its --max-model-len is the request's already): a smaller --batch only above 1."""
    return "a lighter --kv-dtype, more GPUs or a smaller --batch" if r.batch > 1 else "a lighter --kv-dtype or more GPUs"



def fit_verdict(need: float, capacity: float, need_high: float) -> str:
    """Three-valued fit of a predicted need (bytes per GPU, or KV tokens) against a capacity, given the high end of
    the need's 80% band: "does not fit" when need > capacity; "tight" when the need fits but need_high does not (the
    card lies inside the band); else "fits".

    >>> fit_verdict(70, 80, 78), fit_verdict(75, 80, 85), fit_verdict(81, 80, 90)
    ('fits', 'tight', 'does not fit')
    """
    if need > capacity:
        return "does not fit"
    return "tight" if need_high > capacity else "fits"


def change_fit(r: BaseModel, need: float) -> tuple[str, float]:
    """(fit_verdict, the band's high end) of a change's predicted peak ``need`` per GPU on ``r``'s GPUs (a does-not-fit
    answer's ``fits_with``): the band of ``r``'s own memory figure, read at ``need``, so a change that fits with less
    room than the band's width is "tight", as the answer's own fit would be."""
    key, capacity = MEMORY_FIT[_name(r)]
    fig = _figures(r)[key]
    b = figure_band((fig(r) if callable(fig) else fig).kind, need, Context().inside(r))
    return fit_verdict(need, getattr(r, capacity), b.high), b.high


def _name(obj: BaseModel) -> str:
    return f"{type(obj).__module__}.{type(obj).__name__}"


def _arch(gpu: str) -> str:
    """The generation of the GPU a result names: a file's spec read this process (its ``arch``), else the catalog's;
    "unknown" (the family band applies) for neither."""
    from calc.sources.catalog import loaded_from_file
    from calc.specs import GPUSpec

    spec = loaded_from_file(GPUSpec, gpu)
    return spec.arch if spec is not None else _catalog_arch(gpu)


@cache
def _catalog_arch(gpu: str) -> str:
    from calc.errors import LLMCalcError
    from calc.sources.catalog import load_gpu

    try:
        return load_gpu(gpu).arch
    except LLMCalcError:
        return "unknown"


def _moe(model: str) -> bool:
    """Whether the model a result names has routed experts: a file's spec read this process, else the catalog's."""
    from calc.sources.catalog import loaded_from_file
    from calc.specs import ModelSpec

    spec = loaded_from_file(ModelSpec, model)
    return spec.moe is not None if spec is not None else _catalog_moe(model)


@cache
def _catalog_moe(model: str) -> bool:
    from calc.errors import LLMCalcError
    from calc.sources.catalog import load_model

    try:
        return load_model(model).moe is not None
    except LLMCalcError:
        return False


@dataclass(frozen=True)
class Context:
    """What picks a band group, inherited from the enclosing result; ``calibration``: the command's --calibration."""

    gpu: str | None = None
    dtype: str = "bf16"
    model: str | None = None
    calibration: Any = None
    stack: str | None = None  # the training stack or serving engine, where the result names it (calc.bands.band)

    def inside(self, r: BaseModel) -> Context:
        dtype = getattr(r, "weights_dtype", None) or getattr(r, "dtype", None) or getattr(r, "precision", None) or self.dtype
        return Context(getattr(r, "gpu", None) or self.gpu, str(dtype), getattr(r, "model", None) or self.model,
                       self.calibration, _stack(r) or self.stack)


def _stack(r: BaseModel) -> str | None:
    """The band's stack key of a result that names its training ``stack`` or serving ``engine``, as
    benchmarks/fit_corpus.row_stack keys a corpus row: a named training stack (calc.training.stack.stack_key), an
    engine (vllm, sglang, trtllm: their own family), else the name in lower case."""
    from calc.training.stack import band_stack

    stack, engine = getattr(r, "stack", None), getattr(r, "engine", None)
    if isinstance(stack, str):
        return band_stack(stack)
    return {"vllm-v0": "vllm"}.get(engine, engine.lower()) if isinstance(engine, str) else None


def calibration_residuals(cal: Any) -> list[float]:
    """r = log(measured / leave-one-out predicted efficiency) of every op point whose curve has other points
    (module docstring): the calibration's own out-of-sample error on time."""
    out = []
    for kind, points in cal.ops.items():
        for i, p in enumerate(points):
            rest = points[:i] + points[i + 1:]
            if not rest:
                continue
            predicted = cal.model_copy(update={"ops": {kind: rest}}).interpolate(kind, p.size)
            if predicted and p.efficiency > 0:
                out.append(math.log(p.efficiency / predicted))
    return out


def figure_band(kind: str, value: float, ctx: Context, *, assumed: bool = False) -> Band:
    """The band of one figure: the corpus band (calc.bands.band), the calibration's residual band for a time or
    rate when --calibration is given, or the stated wide default for a figure computed from an assumed MFU."""
    data = fitted()["bands"]
    if assumed:
        q = data["wide_default"]
        return Band(*oriented(kind, value, q["q10"], q["q90"]), level=data["level"], rows=0, group=ASSUMED)
    corpus = band(kind, value, gpu=_arch(ctx.gpu) if ctx.gpu else "unknown", dtype=ctx.dtype,
                  moe=_moe(ctx.model) if ctx.model else False, stack=ctx.stack)
    if ctx.calibration is None or KINDS[kind][0] not in ("training", "serving"):
        return corpus
    r = calibration_residuals(ctx.calibration)
    if len(r) < MIN_CALIBRATION_POINTS:
        return Band(corpus.low, corpus.high, corpus.level, corpus.rows,
                    f"calibrated, but its {len(r)} residuals are too few for a band: corpus band {corpus.group}")
    q = statistics.quantiles(r, n=10, method="inclusive")
    return Band(*oriented(kind, value, q[0], q[8]), level=data["level"], rows=len(r),
                group=f"calibrated: band from the calibration's {len(r)} leave-one-out residuals "
                      f"({ctx.calibration.device_name}, {ctx.calibration.date}); the step model's structure not included")


def _figures(r: BaseModel) -> dict[str, Figure]:
    table = FIGURES.get(_name(r), {})
    return {k: f(r) if callable(f) else f for k, f in table.items()}


def _latency_floors(r: Any) -> dict[str, float]:
    """The physical floors of a static batch's times, which no band may go below: a decode step streams at least its
    bytes at the datasheet HBM bandwidth, a prefill needs at least its FLOPs at the dense peak (ttft_at_full_peak_s),
    and e2e = TTFT + (O - 1) TPOT at both floors."""
    from calc.errors import LLMCalcError
    from calc.sources.catalog import load_gpu

    try:
        hbm = load_gpu(r.gpu).hbm_tb_s * 1e12
    except LLMCalcError:  # a measured device outside the catalog (`bench` on this machine): no datasheet floor
        return {}
    tpot = r.decode_bytes_per_step / hbm
    return {"tpot_s": tpot, "ttft_s": r.ttft_at_full_peak_s, "e2e_s": r.ttft_at_full_peak_s + (r.output - 1) * tpot}


def _training_floors(r: Any) -> dict[str, float]:
    """A training time at 100% MFU: the figure x its MFU (MFU = FLOPs / (time x GPUs x peak), in the result's own FLOP
    convention), so a time band never implies an MFU the MFU band (capped at 1) rules out."""
    mfu = getattr(r, "mfu", None)
    if not mfu or mfu <= 0:
        return {}
    return {k: v * mfu for k in ("step_time_s", "days", "gpu_hours", "cost") if (v := getattr(r, k, None))}


# result class -> its figures' physical floors (a band's low end is clamped to them); the training ones (FLOOR_ANY_BAND)
# also where the band is a stated default's (no corpus rows), as an assumed --mfu's days are
FLOORS: dict[str, Callable[[Any], dict[str, float]]] = {"calc.serving.latency.LatencyResult": _latency_floors,
                                                          "calc.training.step.TrainStepResult": _training_floors,
                                                          "calc.training.mfu.TrainTimeResult": _training_floors}
FLOOR_ANY_BAND = ("calc.training.step.TrainStepResult", "calc.training.mfu.TrainTimeResult")


def bands_of(r: BaseModel, ctx: Context) -> dict[str, Band]:
    """The bands of one result's own figures (keys whose value is None, e.g. no step time when a plan does not fit,
    get none; nor does an input: train-time's MFU given by --mfu)."""
    out: dict[str, Band] = {}
    assumed = _name(r) == "calc.training.mfu.TrainTimeResult" and getattr(r, "plan", None) is None
    for key, fig in _figures(r).items():
        value = getattr(r, key, None)
        if value is None or (assumed and key == "mfu"):
            continue
        b = _gpus_band(r, float(value), ctx) if fig.kind == "gpus_needed" else \
            _per_throughput_band(r, float(value), ctx) if fig.kind == "per_throughput" else \
            figure_band(fig.kind, float(value), ctx, assumed=assumed)
        if b is not None and fig.kind == "training_mfu" and b.high > 1:  # no step runs above the dense peak
            b = Band(min(b.low, 1.0), 1.0, b.level, b.rows, b.group)
        if b is not None:
            out[key] = whole(b, minimum=1) if fig.unit == "GPUs" else whole(b) if fig.unit == "requests" else b
    floors = FLOORS[_name(r)](r) if _name(r) in FLOORS and out else {}
    for key, floor in floors.items():
        b = out.get(key)
        if b is not None and (b.rows or _name(r) in FLOOR_ANY_BAND) and b.low < floor:  # below physics: the floor
            out[key] = Band(min(floor, b.high), b.high, b.level, b.rows, b.group)
    return out


def whole(b: Band, minimum: int = 0) -> Band:
    """The band of a count (GPUs, requests) in whole units, rounded outward, as a user reads it: [floor(low),
    ceil(high)], at least ``minimum`` (a deployment has at least 1 GPU). E.g. GPUs needed 6.15-17.0 -> 6-17,
    requests 3.72-4.06 -> 3-5. (A hair of float noise, 1e-9, is not a unit: 17.0000000001 stays 17.)"""
    low = max(math.floor(b.low + 1e-9), minimum)
    high = max(math.ceil(b.high - 1e-9), low)
    return Band(float(low), float(high), b.level, b.rows, b.group)


def _inverse_throughput_band(x: float, t: float, ctx: Context) -> Band:
    """A figure x that scales as 1 / throughput (GPUs needed at a rate, a price per token) at throughput t: at the
    throughput band [t_lo, t_hi] of t it lies in [x t / t_hi, x t / t_lo] (module docstring)."""
    tb = figure_band("serving_throughput", t, ctx)
    return Band(x * t / tb.high, x * t / tb.low, tb.level, tb.rows, f"from the throughput band: {tb.group}")


def _gpus_band(r: Any, n: float, ctx: Context) -> Band | None:
    """GPUs needed at the ends of the throughput band of the layout's tokens per second per GPU."""
    layout = r if hasattr(r, "tokens_per_s_per_gpu") else getattr(r, "best", None)
    traffic = getattr(r, "replicas", None) if layout is r else (getattr(r, "rate", None) or getattr(r, "users", None))
    if layout is None or not traffic or (layout is r and not getattr(r, "sized", True)):
        return None  # a layout not sized for traffic: its GPU count is the one given (or one replica's), nothing predicted
    return _inverse_throughput_band(n, layout.tokens_per_s_per_gpu, ctx)


def _per_throughput_band(r: Any, c: float, ctx: Context) -> Band | None:
    """A price per token (compare's cost per million tokens, price x GPUs / tokens per second) at the ends of the
    throughput band of ``tokens_per_s``."""
    t = getattr(r, "tokens_per_s", None)
    return _inverse_throughput_band(c, t, ctx) if t else None


def fit_of(r: BaseModel, bands: dict[str, Band], ctx: Context) -> tuple[str, str | None] | None:
    """The three-valued fit of a result and, when tight, the one warning line naming the margin and what makes room.
    Only a band measured on the corpus (rows > 0) can make a fit tight: the stated wide default is "no comparable
    measurement", not a memory band, so against it a fit that fits is "fits"."""
    name = _name(r)
    if name in MEMORY_FIT:
        bands = {k: b for k, b in bands.items() if b.rows > 0}  # the wide default is no band: it cannot make a fit tight
        need_key, cap_key = MEMORY_FIT[name]
        need, cap = getattr(r, need_key, None), getattr(r, cap_key, None)
        if need is None or not cap:  # train-time at an assumed --mfu: its run was checked to fit first (exit 2 if not)
            return ("fits", None) if name == "calc.training.mfu.TrainTimeResult" else None
        high = bands[need_key].high if need_key in bands else need
        verdict = fit_verdict(need, cap, high)
        margin = (f"{gib(cap - need):.2f} GiB of {gib(cap):.2f} GiB per GPU to spare, but the 80% band of the peak "
                  f"reaches {gib(high):.2f} GiB")
    elif name == "calc.serving.capacity.ConcurrencyResult":
        b = bands.get("kv_cache_tokens")
        if b is None:
            return None
        # one request of max_tokens must fit the KV cache; the cache may be as small as the band's low end
        need, cap = r.max_tokens, r.kv_cache_tokens  # type: ignore[attr-defined]
        verdict = ("does not fit" if r.max_concurrency < 1 else "fits" if b.rows == 0  # type: ignore[attr-defined]
                   else fit_verdict(need, cap, need * cap / b.low))
        margin = f"the KV cache holds {cap:,} tokens, but its 80% band goes down to {b.low:,.0f}, under one request of {need:,}"
    elif name == "calc.serving.latency.LatencyResult":
        held = getattr(r, "max_concurrency", None)
        if held is None:
            return ("does not fit", None) if not r.fits else None  # type: ignore[attr-defined]
        b = figure_band("kv_capacity", held, ctx) if held else None
        b = b if b is not None and b.rows > 0 else None
        verdict = ("does not fit" if not r.fits else "fits" if not b  # type: ignore[attr-defined]
                   else fit_verdict(r.batch, held, r.batch * held / b.low))  # type: ignore[attr-defined]  # type: ignore[attr-defined]
        margin = (f"the KV cache admits {plural(held, 'request')} for a batch of {r.batch:,}, "  # type: ignore[attr-defined]
                  f"but its 80% band goes down to {math.floor(b.low) if b else 0:,}")  # whole requests admitted
        name = "latency"  # latency_room: its --max-model-len is at least prompt + output already
    elif name == "calc.serving.plan.ServePlan":
        best = getattr(r, "best", None)
        if not r.fits:  # type: ignore[attr-defined]
            return "does not fit", None
        if best is None:  # it fits in memory; no layout meets the time targets (the verdict and exit code say so)
            return "fits", None
        b = figure_band("kv_capacity", best.max_concurrency, ctx)
        verdict = ("fits" if b.rows == 0  # no measured KV band: nothing to be tight against
                   else fit_verdict(best.batch, best.max_concurrency, best.batch * best.max_concurrency / b.low))
        margin = (f"the best layout's KV cache holds {plural(best.max_concurrency, 'request')} for a batch of {best.batch:,}, "
                  f"but its 80% band goes down to {math.floor(b.low):,}")  # whole requests admitted
    elif name == "calc.training.plan.PlanSearchResult":
        return ("does not fit", None) if not r.plans else None  # type: ignore[attr-defined]  # else its best plan's (FIT_FROM)
    elif name == "calc.report.build.Report":
        return ("does not fit", None) if not r.fits else None  # type: ignore[attr-defined]  # else its memory's (FIT_FROM)
    else:
        return None
    room = latency_room if name == "latency" else ROOM.get(name, "more GPUs")
    line = f"fit: tight: {margin}; {room(r) if callable(room) else room} would make room" if verdict == "tight" else None
    return verdict, line


@dataclass
class Annotated:
    """The bands, fit and tight warnings found in one walk of a result, in output order."""

    blocks: list[tuple[str, dict[str, Band], dict[str, Figure], Any]]
    tight: list[str]
    stacks: dict[int, str] = field(default_factory=dict)  # block index -> the stack or engine its bands were read for


def annotate(result: Any, payload: Any, ctx: Context | None = None, found: Annotated | None = None,
             where: str = "") -> Annotated:
    """Put ``bands`` and ``fit`` into ``payload`` (the JSON dump of ``result``) at every listed class, in place;
    return what was attached, for the table's block and the warnings."""
    ctx = ctx or Context(calibration=_active_calibration())
    found = found if found is not None else Annotated([], [])
    if isinstance(result, BaseModel) and isinstance(payload, dict):
        inner = ctx.inside(result)
        bands = bands_of(result, inner)
        if bands:
            payload["bands"] = {k: {"low": b.low, "high": b.high, "level": b.level, "rows": b.rows, "group": b.group}
                                for k, b in bands.items()}
            if inner.stack is not None:
                found.stacks[len(found.blocks)] = inner.stack
            found.blocks.append((where, bands, _figures(result), result))
        fit = fit_of(result, bands, inner)
        if fit is not None:
            _put_after(payload, "fits", "fit", fit[0])
            if payload.get("fits") is False:
                for key in NO_TIME_UNLESS_FIT.get(_name(result), ()):
                    payload[key] = None
                    payload.get("bands", {}).pop(key, None)
            margin = fit[1].partition("; ")[0] if fit[1] else None  # one plan's margin, warned once (report: plan + days)
            if margin and all(t.partition("; ")[0] != margin for t in found.tight) and _shown_block(where):
                found.tight.append(fit[1])
        for key in type(result).model_fields:
            if key in payload:
                annotate(getattr(result, key), payload[key], inner, found, key)
        part = FIT_FROM.get(_name(result))
        inner_payload = payload.get(part) if part else None
        if isinstance(inner_payload, list):
            inner_payload = inner_payload[0] if inner_payload else None
        if isinstance(inner_payload, dict) and "fit" in inner_payload:
            _put_after(payload, "fits", "fit", inner_payload["fit"])
    elif isinstance(result, list | tuple) and isinstance(payload, list):
        for i, (item, dumped) in enumerate(zip(result, payload, strict=False)):
            annotate(item, dumped, ctx, found, f"{where}[{i}]")
    elif isinstance(result, dict) and isinstance(payload, dict):
        for key, item in result.items():
            if key in payload:
                annotate(item, payload[key], ctx, found, str(key))
        if "fits" in payload and "fit" not in payload:  # a page of sections (report --mode finetune): its section's fit
            inner_fit = next((v["fit"] for v in payload.values() if isinstance(v, dict) and "fit" in v), None)
            if inner_fit is not None:
                _put_after(payload, "fits", "fit", inner_fit)
    return found


def _put_after(payload: dict[str, Any], anchor: str, key: str, value: Any) -> None:
    """payload[key] = value, placed right after ``anchor`` when the payload has it (JSON keys keep their order)."""
    items = list(payload.items())
    payload.clear()
    for k, v in items:
        payload[k] = v
        if k == anchor:
            payload[key] = value
    payload.setdefault(key, value)


_CALIBRATION: ContextVar[str | None] = ContextVar("calibration", default=None)


@contextmanager
def calibrated_by(path: str | None) -> Iterator[None]:
    """While a command runs, the calibration file its --calibration names (set by calc.cli.shell.Command), so
    the one output path bands the figures that calibration computed, and no command passes it twice."""
    token = _CALIBRATION.set(path)
    try:
        yield
    finally:
        _CALIBRATION.reset(token)


def _active_calibration() -> Any:
    path = _CALIBRATION.get()
    if not path:
        return None
    from calc.hardware.calibration import load_calibration

    return load_calibration(path)


def _shown(value: float, unit: str) -> str:
    if unit == "%":
        return percent(value)
    if unit == "GiB":
        return f"{gib(value):,.2f}"
    if unit in ("s", "ms", "days"):
        return human(value) if value < 100 else f"{value:,.0f}"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else figure(value, 2)


def _range(b: Band, unit: str) -> str:
    """``low-high unit`` of a band, in the figure's own unit (GiB, ms, %, ...)."""
    return f"{_shown(b.low, unit)}-{_shown(b.high, unit)}{'' if unit in ('%', '') else ' ' + unit}"


def band_line(fig: Figure, value: float, b: Band) -> str:
    """`step time 6.8 s (6.1-7.9, 80%, 34 rows: training|Hopper|16-bit|dense)`, or the "no band" line of a default."""
    if fig.unit == "s" and value < 1:  # a TTFT or TPOT reads in milliseconds
        fig, value, b = Figure(fig.kind, fig.label, "ms"), value * 1e3, Band(b.low * 1e3, b.high * 1e3, b.level, b.rows, b.group)
    unit = "" if fig.unit in ("%", "") else f" {fig.unit}"  # a cost is in the price's own currency: no unit
    one = unit in (" GPUs", " requests") and value == 1  # "1 GPU", not "1 GPUs"
    shown = f"{fig.label} {_shown(value, fig.unit)}{unit[:-1] if one else unit}"
    if b.rows == 0:  # no band: the stated wide default (a factor f either way, f = exp(q90)), or rows too scattered
        why = b.group.removeprefix(NO_BAND).strip(" ()")
        factor = math.exp(fitted()["bands"]["wide_default"]["q90"])
        spread = f"{_shown(b.low, fig.unit)}-{_shown(b.high, fig.unit)}{unit}, {b.level:.0%}"
        if b.low <= 0 or math.isclose(b.high / b.low, factor**2, rel_tol=1e-6):  # a zero figure: the default's
            return f"{shown}: no band: {NO_BAND} ({why + '; ' if why else ''}stated default ×/÷{factor:.3g}: {spread})"
        return f"{shown}: no band: {NO_BAND} ({why}: {spread})"
    # a band of residual quantiles can lie wholly on one side of the figure (its group's measurements nearly all came
    # out on that side): say so, rather than leave "0.297 s (0.304-0.620)" to be read as a typo
    side = "above" if value < b.low else "below" if value > b.high else ""
    aside = (f"; the band lies {side} the figure: this group's measurements came out "
             f"{'higher' if side == 'above' else 'lower'} than predicted") if side else ""
    return f"{shown} ({_shown(b.low, fig.unit)}-{_shown(b.high, fig.unit)}, {b.level:.0%}, {b.rows} rows: {b.group}{aside})"


def how_sure_lines(found: Annotated) -> list[str]:
    """The block under a table: one line per banded figure. A serving plan's layouts and a plan search's plans are
    many: only the best (first) is shown; all of them are in the JSON. A best layout's figure that repeats the
    headline's (serve's GPUs needed when sizing for a rate) is shown once."""
    lines: list[str] = []
    seen: set[str] = set()
    for where, bands, figures, result in found.blocks:
        if not _shown_block(where):
            continue
        # a list of per-GPU results (compare) names each row's GPU
        prefix = {"layouts[0]": "best layout ", "plans[0]": "best plan "}.get(where, "") or \
            (f"{result.gpu}: " if where.startswith("[") and isinstance(getattr(result, "gpu", None), str) else "")
        for key, b in bands.items():
            line = band_line(figures[key], getattr(result, key), b)
            if line not in seen:
                seen.add(line)
                lines.append(prefix + line)
    return lines


def _shown_block(where: str) -> bool:
    """Every banded result but the serving plan's other layouts and its ``best`` (the same as layouts[0])."""
    return where != "best" and not any(where.startswith(f"{many}[") and where != f"{many}[0]" for many in ("layouts", "plans"))


def how_sure_text(result: BaseModel, explain: bool = False) -> list[str]:
    """The "How sure" lines of a result as plain text, for a page (Markdown, HTML) or --explain: the table's
    block lines, or with ``explain`` the band-source lines (`band of ...: 80% band ... from N rows, group ...`)."""
    found = annotate(result, result.model_dump(mode="json"))
    return explain_lines(found) if explain else how_sure_lines(found)


HOW_SURE_TITLE = "How sure (80% bands from the measurement corpus):"


def _stack_word(kind: str) -> str:
    """What a band's stack is called for a figure: a serving figure's is the engine, a training figure's the stack."""
    return "engine" if kind.startswith(("serving", "kv_", "inference")) or kind == "gpus_needed" else "stack"


def explain_lines(found: Annotated) -> list[str]:
    """--explain: which band group each figure's band comes from, how many rows, and the stack (training) or engine
    family (serving) it was read for (calc.bands.band: a group without rows of it gives way to the pool)."""
    return [f"band of {where + '.' if where else ''}{key}: {b.level:.0%} band {_range(b, figures[key].unit)} from "
            + (f"{b.rows} rows, group {b.group}" if b.rows else b.group)
            + (f"; read for {_stack_word(figures[key].kind)} {found.stacks[i]}" if i in found.stacks else "")
            for i, (where, bands, figures, _) in enumerate(found.blocks) if _shown_block(where)
            for key, b in bands.items()]
