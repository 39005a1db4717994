"""Predict any corpus row (benchmarks/data/corpus/) with the calc engine, as the CLI would run it.

    predict(row) -> float          the prediction in the row's measured unit (raises CannotPredict)
    predict_or_reason(row)         (value, "") or (None, why): a row the engine cannot predict yet is reported

Each kind calls the engine function its command calls: training rows ``train_step`` on the published layout
(``train-step``), GPU-hours ``train_time`` on the best plan at the published GPU count (``train-time``),
serving latency ``latency`` (``latency``), KV capacity ``engine_memory`` (``concurrency``), fine-tuning peaks
``finetune_memory`` (``memory --mode finetune``). ``overrides`` replaces fitted defaults for the fit
(benchmarks/fit_corpus.py): {"gemm_plateau": {key: value}, "step_overhead_s": value}.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import calc.hardware.efficiency as efficiency  # noqa: E402
from calc.errors import LLMCalcError  # noqa: E402
from calc.hardware.peaks import peak_tflops  # noqa: E402
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions  # noqa: E402
from calc.sources.catalog import load_gpu, load_model, load_system, system_for_gpu  # noqa: E402
from calc.specs import GPUSpec, ModelSpec  # noqa: E402
from calc.units import GIB, TERA  # noqa: E402

CORPUS_DIR = Path(__file__).resolve().parent / "data" / "corpus"
TRAINING_KINDS = ("training_throughput", "training_mfu", "training_step_time", "training_gpu_hours")
LATENCY_FIELD = {"serving_ttft": "ttft_s", "serving_tpot": "tpot_s", "serving_e2e": "e2e_s"}
ENGINE_KNOBS = ("gpu_memory_utilization", "max_model_len", "max_num_batched_tokens", "enable_chunked_prefill",
                "max_num_seqs", "block_size", "mem_fraction_static", "chunked_prefill_size")


class CannotPredict(Exception):
    """The engine has no prediction for this row (the reason is the message); reported, never dropped."""


def _path_or_name(name: str) -> str:
    return str(CORPUS_DIR / name) if name.startswith("configs/") else name


@cache
def _model(name: str) -> ModelSpec:
    return load_model(_path_or_name(name))


@cache
def _gpu(name: str) -> GPUSpec:
    return load_gpu(_path_or_name(name))


def row_model(row: Any) -> ModelSpec:
    """The row's model, loaded once per name (the fit predicts each row dozens of times)."""
    return _model(row.model)


def row_gpu(row: Any) -> GPUSpec:
    return _gpu(row.hardware.gpu)


def megatron_flops(global_batch: int, seq: int, layers: int, hidden: int, vocab: int, recompute_counted: bool) -> float:
    """The Megatron papers' FLOPs per iteration: 72 B s L H^2 (1 + s/6H + V/12HL) (model FLOPs, Korthikanti et al.
    2022 sec. 6) or, counting the full recomputation as Narayanan et al. 2021 (sec. 5.1) do, 96 B s L H^2
    (1 + s/6H + V/16LH)."""
    B, s, L, H, V = global_batch, seq, layers, hidden, vocab
    if recompute_counted:
        return 96 * B * s * L * H**2 * (1 + s / (6 * H) + V / (16 * L * H))
    return 72 * B * s * L * H**2 * (1 + s / (6 * H) + V / (12 * H * L))


@contextmanager
def plateau_override(values: dict[str, float] | None) -> Iterator[None]:
    """Temporarily replace fitted GEMM plateaus (keys as calc.hardware.efficiency.plateau_key) for the fit."""
    saved = dict(efficiency.GEMM_PLATEAU)
    try:
        efficiency.GEMM_PLATEAU.update(values or {})
        yield
    finally:
        efficiency.GEMM_PLATEAU.clear()
        efficiency.GEMM_PLATEAU.update(saved)


def _training(row: Any, m: ModelSpec, gpu: GPUSpec) -> float:
    from calc.training.cost import Efficiencies, ModelCost
    from calc.training.layout import Layout
    from calc.training.mfu import train_time
    from calc.training.plan import best_plan
    from calc.training.step import train_step

    c = row.config
    system = load_system(c["system"]) if "system" in c else system_for_gpu(gpu)
    if system is None:
        raise CannotPredict(f"no node type ships for {gpu.name}: the row needs config.system")
    eff = Efficiencies(flash=c.get("attention", "flash") == "flash", dropout=float(c.get("dropout", 0.0)))
    cost = ModelCost(m, gpu, system, int(c["seq"]), row.dtype, eff)
    n = row.hardware.num_gpus
    if row.kind == "training_gpu_hours":
        plan = best_plan(cost, n, c.get("global_batch"))
        return train_time(m, gpu, num_gpus=n, tokens=float(c["tokens"]), seq=int(c["seq"]), dtype=row.dtype, plan=plan).gpu_hours
    layout = Layout(**{k: c[k] for k in ("tp", "pp", "dp", "cp", "ep", "vpp", "sp", "micro_batch", "zero", "recompute") if k in c})
    r = train_step(cost, layout, global_batch=int(c["global_batch"]), num_gpus=n)
    if not r.fits:
        raise CannotPredict(f"the engine refuses the published layout {layout.label()}: does not fit")
    if row.kind == "training_step_time":
        return r.step_time_s
    if row.kind == "training_throughput":
        return c["global_batch"] * c["seq"] / (r.step_time_s * n)
    convention = c.get("flop_convention", "llmcalc")
    if convention == "llmcalc":
        return r.mfu
    flops = megatron_flops(c["global_batch"], c["seq"], m.num_layers, m.hidden_size, m.vocab_size, convention == "megatron-hfu")
    return flops / (r.step_time_s * n * peak_tflops(gpu, row.dtype) * TERA)


def _serving(row: Any, m: ModelSpec, gpu: GPUSpec, assumptions: ServingAssumptions) -> float:
    from calc.serving.latency import latency

    c = row.config
    if not all(k in c for k in ("batch", "prompt", "output")):
        raise CannotPredict("a serving row needs config batch, prompt and output (a static batch)")
    tp, pp = int(c.get("tp", row.hardware.num_gpus)), int(c.get("pp", 1))
    kv_dtype = c.get("kv_dtype") or (row.assumed["kv_dtype"].value if "kv_dtype" in row.assumed else None)
    r = latency(m, gpu, num_gpus=tp * pp, batch=int(c["batch"]), prompt=int(c["prompt"]), output=int(c["output"]),
                dtype=None if c.get("weights_as_shipped") else row.dtype, kv_dtype=kv_dtype, causal=True, tp=tp, pp=pp,
                assumptions=assumptions)
    if row.kind == "serving_throughput":  # a static batch: tokens over its end-to-end time
        per_request = c["output"] + (c["prompt"] if "total" in row.measured.metric else 0)
        value = c["batch"] * per_request / r.e2e_s
        return value / row.hardware.num_gpus if row.measured.unit.endswith("/gpu") else value
    seconds = getattr(r, LATENCY_FIELD[row.kind])
    return seconds * 1e3 if row.measured.unit == "ms" else seconds


def _kv(row: Any, m: ModelSpec, gpu: GPUSpec) -> float:
    from calc.serving.engine_memory import engine_memory
    from calc.specs.serving import EngineSettings

    c = row.config
    settings = EngineSettings(engine=row.stack.name, engine_version=str(row.stack.version or "") or None,
                              **{k: c[k] for k in ENGINE_KNOBS if k in c})
    capacity = int(c["capacity_gib"] * GIB) if "capacity_gib" in c else None
    mem = engine_memory(m, gpu, settings=settings, tp=int(c.get("tp", 1)), pp=int(c.get("pp", 1)),
                        dtype=None if c.get("weights_as_shipped") else row.dtype, kv_dtype=c.get("kv_dtype"), capacity_bytes=capacity)
    if mem.kv_cache_tokens <= 0:
        raise CannotPredict("the engine predicts no room for a KV cache (0 tokens)")
    return float(mem.kv_cache_tokens)


FINETUNE_PLAN_KEYS = ("dp", "tp", "pp")


def finetune_settings(settings: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(Parallelism, the remaining finetune_memory keyword arguments) of a recipe's settings."""
    from calc.specs import Parallelism

    rest = dict(settings)
    plan = Parallelism(**{k: rest.pop(k) for k in FINETUNE_PLAN_KEYS if k in rest})
    return plan, rest


def finetune_peak_gib(m: ModelSpec, settings: dict[str, Any], metric: str) -> float:
    """Predicted fine-tuning peak in GiB on the metric the source reports (reserved: the allocator, no CUDA context)."""
    from calc.memory.finetune import finetune_memory

    plan, rest = finetune_settings(settings)
    r = finetune_memory(m, plan=plan, **rest)
    return (r.reserved_peak_bytes if metric == "reserved" else r.per_gpu_bytes) / GIB


def _finetune(row: Any, m: ModelSpec) -> float:
    metric = "reserved" if "reserved" in row.measured.metric else "allocated"
    gib = finetune_peak_gib(m, dict(row.config), metric)
    return {"GiB": gib, "GB": gib * GIB / 1e9}[row.measured.unit]


def predict(row: Any, overrides: dict[str, Any] | None = None) -> float:
    """The engine's prediction for a corpus row, in the row's measured unit; CannotPredict says why not."""
    overrides = overrides or {}
    assumptions = DEFAULT_ASSUMPTIONS
    if "step_overhead_s" in overrides:
        assumptions = ServingAssumptions(step_overhead_s=overrides["step_overhead_s"])
    m, gpu = row_model(row), row_gpu(row)
    with plateau_override(overrides.get("gemm_plateau")):
        if row.kind in TRAINING_KINDS:
            return _training(row, m, gpu)
        if row.kind in LATENCY_FIELD or row.kind == "serving_throughput":
            return _serving(row, m, gpu, assumptions)
        if row.kind == "kv_capacity":
            return _kv(row, m, gpu)
        if row.kind == "finetune_peak_memory":
            return _finetune(row, m)
    raise CannotPredict(f"no predictor for kind {row.kind} yet")


def predict_or_reason(row: Any, overrides: dict[str, Any] | None = None) -> tuple[float | None, str]:
    """(prediction, "") or (None, why): the engine's own refusals (LLMCalcError) are reasons, bugs propagate."""
    try:
        return predict(row, overrides), ""
    except CannotPredict as e:
        return None, str(e)
    except LLMCalcError as e:
        return None, f"engine: {e}"


def parameter_keys(row: Any) -> dict[str, str]:
    """Which fitted defaults this row's prediction depends on: {"gemm_plateau": key} for every time or throughput
    row, plus "step_overhead_s" for serving latency/throughput rows. Memory rows depend on none."""
    keys: dict[str, str] = {}
    if row.kind in TRAINING_KINDS or row.kind in LATENCY_FIELD or row.kind == "serving_throughput":
        keys["gemm_plateau"] = efficiency.plateau_key(row_gpu(row), row.dtype)
    if row.kind in LATENCY_FIELD or row.kind == "serving_throughput":
        keys["step_overhead_s"] = "all"
    return keys
