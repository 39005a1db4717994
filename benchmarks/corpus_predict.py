"""Predict any corpus row (benchmarks/data/corpus/) with the calc engine, as the CLI would run it.

    predict(row) -> float          the prediction in the row's measured unit (raises CannotPredict)
    predict_or_reason(row)         (value, "") or (None, why): a row the engine cannot predict yet is reported

Each kind calls the engine function its command calls: training rows ``train_step`` on the published layout
(``train-step``), GPU-hours ``train_time`` on the best plan at the published GPU count (``train-time``),
serving latency ``latency`` (``latency``), max-load throughput ``max_load_layout`` (``serve``'s replica model), peaks
``train_step`` / ``inference_memory``, KV capacity ``engine_memory`` (``concurrency``), fine-tuning peaks
``finetune_memory`` (``memory --mode finetune``). ``overrides`` replaces fitted defaults for the fit
(benchmarks/fit_corpus.py): {"gemm_plateau": {key: value}, "stack_efficiency": {stack: value}, "step_overhead_s" and
"step_overhead_per_seq_s": value or {engine family: value}}; without it a
serving row runs at its engine family's fitted overhead.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from corpus_knobs import (  # noqa: E402
    Unrepresentable,
    finetune_kwargs,
    fp8_scales,
    knobs,
    training_layout,
    training_loss,
)

import calc.hardware.collectives as collectives  # noqa: E402
import calc.hardware.efficiency as efficiency  # noqa: E402
import calc.serving.moe as serving_moe  # noqa: E402
import calc.training.stack as stack  # noqa: E402
from calc.bands import KINDS  # noqa: E402
from calc.errors import LLMCalcError  # noqa: E402
from calc.fitted import parameter  # noqa: E402
from calc.hardware.attention import KERNELS  # noqa: E402
from calc.hardware.peaks import peak_tflops  # noqa: E402
from calc.memory.training import peak_by_metric  # noqa: E402
from calc.memory.weights import WEIGHT_FORMATS, requantize  # noqa: E402
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions, overhead_family  # noqa: E402
from calc.serving.engine_kernels import engine_kernels  # noqa: E402
from calc.serving.weights import weight_format  # noqa: E402
from calc.sources.catalog import load_gpu, load_model, load_system, system_for_gpu  # noqa: E402
from calc.specs import GPUSpec, ModelSpec  # noqa: E402
from calc.training.fp8_recipe import recipe_of  # noqa: E402
from calc.units import GIB, TERA  # noqa: E402

CORPUS_DIR = Path(__file__).resolve().parent / "data" / "corpus"
TRAINING_KINDS = tuple(k for k, (family, _sign) in KINDS.items() if family == "training")  # calc.bands: one list
LATENCY_FIELD = {"serving_ttft": "ttft_s", "serving_tpot": "tpot_s", "serving_e2e": "e2e_s"}
ENGINE_KNOBS = ("gpu_memory_utilization", "max_model_len", "max_num_batched_tokens", "enable_chunked_prefill",
                "max_num_seqs", "block_size", "mem_fraction_static", "chunked_prefill_size", "usage_context")


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


@cache
def _requantized(name: str, fmt: str) -> ModelSpec:
    return requantize(_model(name), fmt)[0]


def row_model(row: Any) -> ModelSpec:
    """The row's model, loaded once per name (the fit predicts each row dozens of times); a row served in a 4-bit
    weight format (dtype nvfp4 / mxfp4, as `--dtype nvfp4`) as that checkpoint (calc.memory.weights.requantize)."""
    if row.dtype in WEIGHT_FORMATS and not knobs(row).get("weights_as_shipped"):
        return _requantized(row.model, row.dtype)
    return _model(row.model)


def row_gpu(row: Any) -> GPUSpec:
    """The row's catalog GPU; a published memory that differs from the catalog part's (``hardware.memory_gb``, a
    variant such as the H100 96GB HBM2e) replaces its capacity, nothing else."""
    gpu = _gpu(row.hardware.gpu)
    if row.hardware.memory_gb is None:
        return gpu
    return gpu.model_copy(update={"memory_gb": row.hardware.memory_gb, "memory_visible_mib": None,
                                  "memory_cuda_total_mib": None})


def megatron_flops(global_batch: int, seq: int, layers: int, hidden: int, vocab: int, recompute_counted: bool) -> float:
    """The Megatron papers' FLOPs per iteration: 72 B s L H^2 (1 + s/6H + V/12HL) (model FLOPs, Korthikanti et al.
    2022 sec. 6) or, counting the full recomputation as Narayanan et al. 2021 (sec. 5.1) do, 96 B s L H^2
    (1 + s/6H + V/16LH)."""
    B, s, L, H, V = global_batch, seq, layers, hidden, vocab
    if recompute_counted:
        return 96 * B * s * L * H**2 * (1 + s / (6 * H) + V / (16 * L * H))
    return 72 * B * s * L * H**2 * (1 + s / (6 * H) + V / (12 * H * L))


@contextmanager
def _overridden(table: dict[str, float], values: dict[str, float] | None) -> Iterator[None]:
    """Temporarily update a module-level table of defaults (the fit's candidate values), restoring it after."""
    saved = dict(table)
    try:
        table.update(values or {})
        yield
    finally:
        table.clear()
        table.update(saved)


def _assumed(row: Any, key: str) -> Any:
    a = row.assumed.get(key)
    return a.value if a is not None else None


def _system(row: Any, k: dict[str, Any], gpu: GPUSpec) -> Any:
    system = load_system(_path_or_name(k["system"])) if "system" in k else system_for_gpu(gpu)  # configs/<node>.yaml too
    if system is None:
        raise CannotPredict(f"no node type ships for {gpu.name}: the row needs config.system")
    return system


def _training_dtype(row: Any) -> str:
    """fp8 recipes (delayed/current scaling, tensorwise/rowwise, blockwise, MXFP8) all run the GEMMs at the fp8 peak."""
    if row.dtype in ("nvfp4", "fp4", "mxfp4"):
        raise CannotPredict(f"{row.dtype} training GEMMs are not modelled (bf16, fp16, fp8)")
    return "bf16" if row.dtype == "mixed" else row.dtype


# How sources name the expert-parallel token exchange -> calc.hardware.moe_ops.DISPATCHERS, training and serving alike.
# HybridEP: "an Expert Parallel (EP) communication library ... with functions similar to DeepEP" (Megatron-LM
# deepseek-v3-gb200-optimization, sec. 2); Megatron's "flex" dispatcher runs DeepEP / HybridEP; vLLM's
# --all2all-backend names (deepep_high_throughput / deepep_low_latency, allgather_reducescatter, naive).
DISPATCHER_SPELLINGS = {"a2a": "alltoall", "alltoall": "alltoall", "deepep": "deepep", "hybridep": "deepep",
                        "flex": "deepep", "deepephighthroughput": "deepep", "deepeplowlatency": "deepep",
                        "allgather": "allgather", "allgatherreducescatter": "allgather", "naive": "naive"}
# A serving row's old ``moe_collective`` knob: its "alltoall" was the DeepEP-style dispatch (calc.cli.options).
OLD_MOE_COLLECTIVE = {"alltoall": "deepep", "allgather": "allgather"}


def dispatcher_of(name: str | None, default: str = "alltoall") -> str:
    """The engine's dispatcher for a row's spelling (None: ``default``, Megatron's all-to-all for training); an
    unknown one is refused."""
    if name is None:
        return default
    key = name.lower().replace("-", "").replace("_", "")
    if key not in DISPATCHER_SPELLINGS:
        raise CannotPredict(f"dispatcher {name!r}: the engine knows {', '.join(sorted(set(DISPATCHER_SPELLINGS)))}")
    return DISPATCHER_SPELLINGS[key]


def training_dispatcher(name: str | None) -> str:
    """dispatcher_of for a training row: the dispatchers calc.training.cost prices (moe_ops.TRAINING_DISPATCHERS)."""
    from calc.hardware.moe_ops import TRAINING_DISPATCHERS

    value = dispatcher_of(name)
    if value not in TRAINING_DISPATCHERS:
        raise CannotPredict(f"dispatcher {name!r}: training prices {' and '.join(TRAINING_DISPATCHERS)}")
    return value


def serving_dispatcher(row: Any, k: dict[str, Any]) -> str:
    """A serving row's expert-parallel token exchange: its ``dispatcher`` knob (or the old ``moe_collective``), else
    the default of the engine release it ran (calc.serving.assumptions.engine_dispatcher, what `--engine` and
    `--engine-version` take)."""
    from calc.serving.assumptions import engine_dispatcher

    if k.get("moe_collective") is not None:
        return OLD_MOE_COLLECTIVE[k["moe_collective"]]
    return dispatcher_of(k.get("dispatcher"), engine_dispatcher(row.stack.name, stack_version(row)))


def stack_version(row: Any) -> tuple[int, ...] | None:
    """The engine release a row ran as a version tuple; None when the source does not say (the current release)."""
    from calc.specs.serving import version_tuple

    return None if row.stack.version in ("", "unknown") else version_tuple(str(row.stack.version))


def row_attention_windows(row: Any, k: dict[str, Any]) -> str:
    """Whether the row's engine ran its sliding-window layers over their window: the row's ``attention_windows``
    knob, else its release's default (calc.serving.assumptions.engine_attention_windows)."""
    from calc.serving.assumptions import engine_attention_windows

    return k.get("attention_windows") or engine_attention_windows(row.stack.name, stack_version(row))


def tp_overlap_of(k: dict[str, Any]) -> float | None:
    """The share of the TP collectives a row hid (calc.training.cost.Efficiencies.tp_overlap): a row that says
    Transformer Engine's TP communication overlap ran (``tp_comm_overlap``) hides the overlap efficiency's share, one
    that says it did not hides none; None: the stack's default. torchtitan's async TP (a row's ``async_tp``) is not
    read: its source's own pairs (benchmarks/asyncTP_llama3_h100_2025-06_torchtitan.md, the fit split) gain 0-16% over
    vanilla TP, where hiding that share of the engine's TP seconds would give up to 27%: it hides less than the
    userbuffers overlap, by an amount no second source measures, so those rows are priced as vanilla TP."""
    on = k.get("tp_comm_overlap")
    return None if on is None else efficiency.OVERLAP_EFFICIENCY if on else 0.0


def moe_routing_of(k: dict[str, Any]) -> str:
    """How a training row's router spread tokens (calc.training.cost.Efficiencies.moe_routing): its ``moe_routing``
    knob, whose first word names it ("force-balanced, token-dropless": Megatron's --moe-router-force-load-balancing
    without a capacity factor, the Megatron-Bridge benchmark pages' footnote), else the engine's default (aux-loss).
    A routing the engine does not price is refused."""
    from calc.hardware.moe_ops import MOE_ROUTINGS

    value = k.get("moe_routing")
    if value is None:
        return "aux-loss"
    name = value.split(",")[0].strip()
    if name not in MOE_ROUTINGS:
        raise CannotPredict(f"moe_routing {value!r}: the engine prices {', '.join(MOE_ROUTINGS)}")
    return name


def _training(row: Any, m: ModelSpec, gpu: GPUSpec) -> float:
    from calc.training.adapters import Lora
    from calc.training.cost import Efficiencies, ModelCost
    from calc.training.layout import Layout
    from calc.training.mfu import train_time
    from calc.training.plan import best_plan
    from calc.training.step import train_step

    k = knobs(row)
    if "seq" not in k:
        raise CannotPredict("no sequence length given or assumed")
    method = k.get("method", "full")
    if method not in ("full", "pretrain", "sft", "lora"):
        raise CannotPredict(f"method {method} through train-step: it times full training and LoRA (train-step --method "
                            "lora); other adapters are priced by memory --mode finetune and not timed")
    if m.moe is not None and stack.loops_experts(row.stack.name) and row.kind != "training_peak_memory":
        raise CannotPredict(f"{row.stack.name} runs the experts in a Python loop with a host sync per expert "
                            "(transformers' eager MoE blocks); the step model times grouped-GEMM experts "
                            "(calc.training.stack.LOOPED_EXPERTS)")
    lora = Lora.of(k.get("lora_rank"), k.get("lora_targets")) if method == "lora" else None
    loss = training_loss(row, k)
    attention = k.get("attention", "flash")  # flash (the stack's kernel), unfused, or a named kernel (train-step --attention)
    eff = Efficiencies(flash=attention != "unfused", attention_kernel=attention if attention in KERNELS else None,
                       dropout=float(k.get("dropout", 0.0)),
                       stack=row.stack.name, fp8_recipe=recipe_of(row.config.get("fp8_recipe") or _assumed(row, "fp8_recipe")),
                       ep_overlap_1f1b=k.get("ep_overlap_1f1b", False), dispatcher=training_dispatcher(k.get("dispatcher")),
                       cp_comm=k.get("cp_comm"), pp_p2p_overlap=k.get("pp_p2p_overlap"), tp_overlap=tp_overlap_of(k),
                       recipe=k.get("training_recipe", "bf16-adam"), moe_routing=moe_routing_of(k),
                       **({"loss": loss} if loss else {}))
    dtype = _training_dtype(row)
    cost = ModelCost(m, gpu, _system(row, k, gpu), k["seq"], dtype, eff, lora=lora, doc_tokens=k.get("doc_tokens"))
    n = row.hardware.num_gpus
    if row.kind == "training_gpu_hours":
        plan = best_plan(cost, n, k.get("global_batch"))
        return train_time(m, gpu, num_gpus=n, tokens=k["tokens"], seq=k["seq"], dtype=dtype, plan=plan).gpu_hours
    try:
        lay, global_batch = training_layout(row, k)
    except Unrepresentable as e:
        raise CannotPredict(str(e)) from e
    r = train_step(cost, Layout(**lay), global_batch=global_batch, num_gpus=n)
    if row.kind == "training_peak_memory":  # read as the row's metric reads it (calc.memory.training.peak_by_metric)
        peak = peak_by_metric(r.memory_per_gpu, peak_metric(row.measured.metric))
        return peak / GIB * (1 if row.measured.unit == "GiB" else GIB / 1e9)
    if not r.fits:
        raise CannotPredict(f"the engine refuses the published layout {r.layout}: does not fit "
                            f"({r.memory_per_gpu_bytes / GIB:.1f} GiB per GPU predicted; issue 21)")
    if row.kind == "training_step_time":
        return r.step_time_s
    if row.kind == "training_throughput":  # tokens/s/gpu, or the whole job's tokens/s (a node's, a cluster's)
        return global_batch * k["seq"] / r.step_time_s / (n if row.measured.unit.endswith("/gpu") else 1)
    if row.measured.unit == "TFLOP/s/gpu":  # NeMo's achieved model TFLOP/s: MFU x the dtype's peak
        return r.mfu * peak_tflops(gpu, dtype)
    convention = k.get("flop_convention", "llmcalc")
    if convention == "llmcalc":
        return r.mfu
    flops = megatron_flops(global_batch, k["seq"], m.num_layers, m.hidden_size, m.vocab_size, convention == "megatron-hfu")
    return flops / (r.step_time_s * n * peak_tflops(gpu, dtype) * TERA)


def _serving_dtype(row: Any, k: dict[str, Any]) -> str | None:
    if k.get("weights_as_shipped"):
        return None
    if row.dtype in WEIGHT_FORMATS:  # the model is that checkpoint already (row_model)
        return None
    return row.dtype


def _serving(row: Any, m: ModelSpec, gpu: GPUSpec, assumptions: ServingAssumptions) -> float:
    from calc.serving.assumptions import engine_chunked_decode, engine_permute_scope
    from calc.serving.latency import latency

    k = knobs(row)
    if (scales := fp8_scales(row, k)) is not None:
        assumptions = assumptions.model_copy(update={"fp8_moe_scales": scales})
    assumptions = assumptions.model_copy(update={"dispatcher": serving_dispatcher(row, k),
                                                 "moe_permute_scope": engine_permute_scope(row.stack.name, stack_version(row)),
                                                 "chunked_decode": engine_chunked_decode(row.stack.name),
                                                 "attention_windows": row_attention_windows(row, k)})  # applied by
    # the engine's entry points (calc.serving.windows): the windows the row's engine applied
    if "rate" in k:
        raise CannotPredict("a Poisson-rate load: latency and queueing at a request rate are not predicted per row "
                            "(static batches and max-load throughput are)")
    if row.kind == "serving_throughput" and "batch" not in k:
        return _max_load(row, k, m, gpu, assumptions)
    if not all(key in k for key in ("batch", "prompt", "output")):
        raise CannotPredict("a serving row needs batch, prompt and output (a static batch)")
    if k.get("burst") and k["batch"] > 1 and row.kind in ("serving_tpot", "serving_e2e"):
        raise CannotPredict(f"a burst of {k['batch']} requests into a continuous-batching server: decode steps run "
                            "interleaved with the later requests' prefill chunks, not the static batch's separate phases")
    if row.kind == "serving_ttft" and k["batch"] > 1 and k.get("num_requests", k["batch"]) > k["batch"]:
        raise CannotPredict(f"a closed-loop run at --max-concurrency {k['batch']} ({k['num_requests']} requests): each "
                            "request's first token comes from its own prefill amid the others' decode steps, not from "
                            "the static batch's prefill of every prompt at once (its throughput and TPOT are priced as "
                            "that batch)")
    eager_from = v0_eager_context(row, k)
    if k.get("enforce_eager") or (eager_from is not None and row.kind != "serving_ttft"
                                  and k["prompt"] + k["output"] - 1 > eager_from):
        # --enforce-eager, or vLLM V0 decoding past max_seq_len_to_capture: every step eager (calc.serving.eager)
        assumptions = assumptions.model_copy(update={"eager": True})
    elif eager_from is not None:  # vLLM V0 never captures a step holding prompt tokens
        assumptions = assumptions.model_copy(update={"eager_prefill": True})
    if k.get("num_scheduler_steps", 1) > 1:  # vLLM V0 multi-step scheduling (calc.serving.step.step_overhead)
        assumptions = assumptions.model_copy(update={"scheduler_steps": k["num_scheduler_steps"]})
    if row.stack.name in ("vllm", "vllm-v0"):  # the release's ROCm kernels (calc.serving.engine_kernels)
        assumptions = engine_kernels(assumptions, m, gpu, _engine_settings(row, k), k["prompt"] + k["output"] - 1,
                                     _serving_dtype(row, k), k.get("rocm_custom_pa_max_seq_len"))
    tp, pp, ep = k.get("tp", row.hardware.num_gpus), k.get("pp", 1), 1
    if row.stack.name in ("vllm", "vllm-v0", "sglang"):  # the layout its flags give (serving_layout), as `latency --ep`
        tp, pp, ep = serving_layout(row, k)
    waves, chunk = _batch_waves(row, k, m, gpu, tp, pp, assumptions, ep)
    runs = [latency(m, gpu, num_gpus=ep if ep > 1 else tp * pp, batch=b, prompt=k["prompt"], output=k["output"],
                    dtype=_serving_dtype(row, k), kv_dtype=k.get("kv_dtype"), causal=True, tp=tp, pp=pp,
                    assumptions=assumptions, chunk_tokens=chunk, ep=ep) for b in waves]
    r = runs[0]
    e2e = sum(w.e2e_s for w in runs)
    if row.kind == "serving_throughput":  # a static batch: tokens over its end-to-end time
        per_request = k["output"] + (k["prompt"] if "total" in row.measured.metric else 0)
        value = k["batch"] * per_request / e2e
        return value / row.hardware.num_gpus if row.measured.unit.endswith("/gpu") else value
    if row.kind == "serving_e2e":
        return e2e * 1e3 if row.measured.unit == "ms" else e2e
    seconds = getattr(r, LATENCY_FIELD[row.kind])
    return seconds * 1e3 if row.measured.unit == "ms" else seconds


# vLLM V0's default --max-seq-len-to-capture (vllm/engine/arg_utils.py EngineArgs and vllm/entrypoints/llm.py LLM,
# v0.5 - v0.7: max_seq_len_to_capture: int = 8192).
VLLM_V0_MAX_SEQ_LEN_TO_CAPTURE = 8192


def v0_eager_context(row: Any, k: dict[str, Any]) -> int | None:
    """The sequence length past which vLLM V0 runs a decode step without its CUDA graph, or None (not V0).

    vllm/worker/model_runner.py (v0.6.3) ModelInputForGPUBuilder._use_captured_graph replays a captured graph only
    when the batch is decode-only, enforce_eager is off, ``max_decode_seq_len <= max_seq_len_to_capture`` and the
    batch is at most the largest captured size; otherwise the step runs eager, launching every kernel from Python.
    The graphs are captured for sequences up to max_seq_len_to_capture (default 8192, EngineArgs), so a request whose
    prompt + generated tokens exceed it decodes eager from that point on. E.g. a 32,784-token prompt decodes every
    step eager; 2,048 + 2,048 tokens never does. A prefill step is never graph-captured in V0 at any length, so a
    TTFT is unaffected. V1 (0.8+) captures piecewise graphs without this length test."""
    if row.stack.name not in ("vllm", "vllm-v0") or _engine_settings(row, k).accounting() != "vllm-v0":
        return None
    return int(k.get("max_seq_len_to_capture", VLLM_V0_MAX_SEQ_LEN_TO_CAPTURE))


def wave_sizes(batch: int, capacity: int) -> list[int]:
    """A batch of ``batch`` equal requests through a cache holding ``capacity`` of them at their longest, as
    vLLM V0 runs an offline batch submitted at once: ceil(batch / capacity) waves of whole requests, the last one
    the remainder. V0's scheduler (vllm/core/scheduler.py at v0.6.3, _schedule_default / _schedule_chunked_prefill)
    admits prompts while their blocks fit, and when a decode step finds no free block it preempts the running group
    admitted last (_preempt: PreemptionMode.RECOMPUTE whenever the group has one sequence, the default), putting it
    back at the front of the waiting queue to be re-prefilled when the earlier requests finish and free their blocks.
    Equal requests grow in step, so the ones still running when the cache is full are the first ``capacity``; the
    recompute of the preempted prefixes is not priced (a first model). E.g. 10 requests, room for 4: [4, 4, 2]."""
    full, rest = divmod(batch, capacity)
    return [capacity] * full + ([rest] if rest else [])


def _engine_settings(row: Any, k: dict[str, Any]) -> Any:
    """The engine the row ran (its stack name and version, "unknown" as the current release) with its knobs."""
    from calc.specs.serving import EngineSettings

    version = None if row.stack.version in ("", "unknown") else str(row.stack.version)
    return EngineSettings(engine=row.stack.name, engine_version=version, **{key: k[key] for key in ENGINE_KNOBS if key in k})


def _batch_waves(row: Any, k: dict[str, Any], m: ModelSpec, gpu: GPUSpec, tp: int, pp: int,
                 assumptions: ServingAssumptions, ep: int = 1) -> tuple[list[int], int | None]:
    """Fit first, as `latency` does (calc.serving.capacity.batch_fit_problem), with the engine's accounting at the
    row's version: the batch when its KV cache fits; for vLLM V0's end-to-end time of a whole batch, the waves it
    runs in (wave_sizes); any other batch the cache cannot hold (preemption interleaved with TTFT / TPOT, or
    V1 / SGLang schedulers) is reported, not predicted as if it ran at once. With the waves, the engine's prefill
    tokens per step when it chunks (EngineMemory.batched_tokens, as the `latency` command passes it), else None."""
    from calc.serving.capacity import deployment_memory
    from calc.serving.moe import attention_ranks
    from calc.specs import Parallelism

    engine = {"vllm-v0": "vllm"}.get(row.stack.name, row.stack.name)
    if engine not in ("vllm", "sglang"):
        return [k["batch"]], None
    settings = _engine_settings(row, k)
    mem = deployment_memory(m, gpu, Parallelism(tp=tp, pp=pp), settings, _serving_dtype(row, k), k.get("kv_dtype"),
                            k["prompt"] + k["output"], assumptions, ep=ep)
    chunk = mem.prefill_chunk
    if mem.max_concurrency * attention_ranks(tp, ep) >= k["batch"]:
        return [k["batch"]], chunk
    if ep > 1:
        raise CannotPredict(f"the batch exceeds the KV caches of the {attention_ranks(tp, ep)} attention groups "
                            "(they preempt, not modelled here)")
    if mem.max_concurrency >= 1 and settings.accounting() == "vllm-v0" and row.kind in ("serving_e2e", "serving_throughput"):
        return wave_sizes(k["batch"], mem.max_concurrency), chunk
    raise CannotPredict(f"the batch exceeds the engine's KV cache (it preempts, not modelled here): the "
                        f"{mem.engine} KV cache holds {mem.kv_cache_tokens:,} tokens = {mem.max_concurrency} requests of "
                        f"{k['prompt'] + k['output']:,}, batch {k['batch']} needs more")


# The step budget of a max-load row that names none (TensorRT-LLM BuildConfig's max_num_tokens default).
TRTLLM_MAX_TOKENS = 8192
TRTLLM_BUILD_FRACTION = 0.95  # bench/build/build.py build_command calls get_benchmark_engine_settings without a fraction


def trtllm_bench_settings(row: Any, k: dict[str, Any], m: ModelSpec, gpu: GPUSpec, tp: int, pp: int) -> Any:
    """The engine a trtllm-bench throughput row ran: TensorRT-LLM at the row's release, free_gpu_memory_fraction from
    --kv_cache_free_gpu_mem_fraction, and max_batch_size / max_num_tokens as given, else trtllm-bench's own
    (calc.serving.trtllm_memory.bench_engine_settings on the group's ``tp`` x ``pp`` GPUs and the row's ISL / OSL; the
    engine build of the TensorRT flow at the build's default fraction 0.95, the PyTorch run at the row's)."""
    from calc.serving.engine_memory import resolve_kv_dtype
    from calc.serving.trtllm_memory import bench_engine_settings, trtllm_backend
    from calc.serving.weights import weight_format
    from calc.specs.serving import EngineSettings

    version = None if row.stack.version in ("", "unknown") else str(row.stack.version)
    base = EngineSettings(engine="trtllm", engine_version=version,
                          free_gpu_memory_fraction=k.get("kv_cache_free_gpu_mem_fraction", 0.9))
    build = trtllm_backend(base.version()) == "tensorrt"
    fmt = weight_format(m, gpu, _serving_dtype(row, k))
    bs, tokens = bench_engine_settings(
        m, gpu.memory_bytes, tp=tp, pp=pp, isl=k["prompt"], osl=k["output"], weight_dtype=_serving_dtype(row, k),
        kv_dtype=resolve_kv_dtype(k.get("kv_dtype"), fmt.act_dtype, m.checkpoint_dtype),
        fraction=TRTLLM_BUILD_FRACTION if build else base.free_gpu_memory_fraction, engine_build=build)
    return base.model_copy(update={"max_num_seqs": k.get("max_batch_size", bs),
                                   "max_num_batched_tokens": k.get("max_num_tokens", tokens)})


def serving_layout(row: Any, k: dict[str, Any]) -> tuple[int, int, int]:
    """The (tp, pp, ep) layout the row ran, from its engine's own flags (calc.serving.launch.engine_layout, the inverse
    of `serve --emit`): vLLM tp / dp (--data-parallel-size) / enable_expert_parallel, SGLang tp / dp / ep (--ep-size)
    / enable_dp_attention, TensorRT-LLM tp / ep (trtllm-bench's attention DP). tp defaults to the row's GPUs."""
    from calc.serving.launch import engine_layout

    try:
        return engine_layout(row.stack.name, k.get("tp", row.hardware.num_gpus), k.get("pp", 1), k.get("dp", 1),
                             k.get("ep", 1), bool(k.get("enable_expert_parallel")), bool(k.get("enable_dp_attention")))
    except LLMCalcError as e:
        raise CannotPredict(str(e)) from e


def _max_load(row: Any, k: dict[str, Any], m: ModelSpec, gpu: GPUSpec, assumptions: ServingAssumptions) -> float:
    """Offline max-load throughput (trtllm-bench; vllm bench serve / SGLang with every request sent at once): output
    tokens/s of the replica the row ran (serving_layout) at the largest batch its KV cache admits, capped by the
    engine's max batch (calc.serving.plan.max_load_layout), over the row's requests (finite_run_tokens_per_s).
    The rate is the one `serve` prints, B x O / (TTFT + (O - 1) x TPOT) per replica (calc.serving.plan
    slot_tokens_per_s): each request's own prefill included, not B / TPOT (decode_tokens_per_s), which leaves it out
    and at batch 1 leaves out all of it (a 32,000-token prompt with 77 outputs on one A100: 22.4 vs 4.1 tokens/s;
    the run measured 4.32). Until the thirty-first pass the corpus read B / TPOT (kept in the fifteenth pass, when
    `serve` moved to the steady state, so that no prediction moved).
    vLLM and SGLang rows run their own accounting and defaults at the row's version (_engine_settings: max_num_seqs /
    max_running_requests and the step budget by version, GPU and usage, calc.specs.serving.EngineSettings).
    A TensorRT-LLM row runs TensorRT-LLM's own accounting (calc.serving.trtllm_memory) with trtllm-bench's settings
    (trtllm_bench_settings). Workloads of varying lengths (ShareGPT) are priced at their mean prompt and output: the
    run's tail, where the longest outputs finish at a shrinking batch, is not."""
    from calc.serving.moe import attention_ranks
    from calc.serving.plan import max_load_layout

    if not all(key in k for key in ("prompt", "output")):
        raise CannotPredict("a max-load throughput row needs prompt and output lengths")
    tp, pp, ep = serving_layout(row, k)
    proxy = assumptions
    if row.stack.name == "trtllm":  # TensorRT-LLM's own accounting with trtllm-bench's settings
        # trtllm-bench --tp: its heuristic sizes the whole group (attention DP makes each attention rank TP 1)
        settings = trtllm_bench_settings(row, k, m, gpu, k.get("tp", row.hardware.num_gpus), pp)
        # the engine is sized once: a smaller last wave (finite_run_tokens_per_s) keeps its CUDA-graph pool
        proxy = assumptions.model_copy(update={"trtllm_graph_batch": settings.max_num_seqs})
    elif row.stack.name in ("vllm", "vllm-v0", "sglang"):
        settings = _engine_settings(row, k)
    else:
        raise CannotPredict(f"max-load throughput of {row.stack.name} is not modelled (vllm, sglang, trtllm)")

    ranks = attention_ranks(tp, ep)

    def layout(seqs: int | None) -> Any:  # at most ``seqs`` requests running on each attention rank
        if row.stack.name == "trtllm":  # a wave's cap as max_batch_size (the engine re-profiled at it)
            return max_load_layout(m, gpu, prompt=k["prompt"], output=k["output"], tp=tp, pp=pp, dtype=_serving_dtype(row, k),
                                   kv_dtype=k.get("kv_dtype"), settings=settings.model_copy(update={"max_num_seqs": seqs}),
                                   assumptions=proxy, ep=ep)
        # vLLM / SGLang: the engine as launched, the wave capped by the requests it holds
        return max_load_layout(m, gpu, prompt=k["prompt"], output=k["output"], tp=tp, pp=pp, dtype=_serving_dtype(row, k),
                               kv_dtype=k.get("kv_dtype"), settings=settings, assumptions=proxy, ep=ep,
                               requests=seqs * ranks if seqs else None)

    lay = layout(settings.max_num_seqs if row.stack.name == "trtllm" else None)
    if lay is None:
        raise CannotPredict("the engine predicts no room for one request's KV cache")
    tokens_per_s = lay.tokens_per_s  # serve's steady state: each request's own prefill included (B x O / busy time)
    if "num_requests" in k:
        tokens_per_s = finite_run_tokens_per_s(k["num_requests"], lay.batch, ranks, lambda seqs: layout(seqs).tokens_per_s)
        if k.get("output_lengths") == "exponential":  # the run ends when its longest output does (drain_excess_s)
            from calc.serving.plan import max_load_decode_step

            step = max_load_decode_step(m, gpu, prompt=k["prompt"], output=k["output"], tp=tp, pp=pp,
                                        dtype=_serving_dtype(row, k), kv_dtype=k.get("kv_dtype"), settings=settings,
                                        assumptions=proxy, ep=ep)
            running = min(k["num_requests"], lay.batch)
            seconds = k["num_requests"] * k["output"] / tokens_per_s
            seconds += drain_excess_s(running, k["output"], k.get("output_cap", k["output"]), step)
            tokens_per_s = k["num_requests"] * k["output"] / seconds
    metric = row.measured.metric.lower()  # "Total Output Throughput" counts output tokens only
    per_request = k["output"] + (k["prompt"] if "total" in metric and "output" not in metric else 0)
    value = tokens_per_s * per_request / k["output"]
    return value / row.hardware.num_gpus if row.measured.unit.endswith("/gpu") else value


def finite_run_tokens_per_s(requests: int, batch: int, ranks: int, tokens_per_s: Any) -> float:
    """Output tokens/s of an offline run of ``requests`` identical requests, all queued at once, on an engine that runs
    at most ``batch`` of them together over ``ranks`` attention ranks (``tokens_per_s(s)``: the layout's tokens/s with
    at most s requests per rank, calc.serving.plan.max_load_layout). Identical requests admitted together finish
    together, so the run is wave_sizes(requests, batch) waves, each producing b x O tokens in b x O / tps(b) seconds:

        tokens/s = requests x O / sum_w (b_w x O / tps(b_w)) = requests / sum_w (b_w / tps(b_w))

    with a wave of b requests spread ceil(b / ranks) per rank. Fewer requests than the engine admits run as one wave of
    all of them: an engine never batches more requests than the benchmark sends (trtllm-bench's datasets: TensorRT-LLM
    docs/source/performance/perf-overview.md, "$num_requests" by ISL/OSL, 30,000 at 128/128 down to 1,000 at
    20,000/2,000; v0.17 @ 258c754 and v1.0 @ 00f3768).

    >>> finite_run_tokens_per_s(1500, 4096, 1, lambda s: s * 10.0)  # one wave of 1,500 at 10 tokens/s each
    15000.0
    >>> finite_run_tokens_per_s(10, 4, 1, lambda s: 100.0)  # waves 4, 4, 2 at 100 tokens/s: 10 / (0.04 + 0.04 + 0.02)
    100.0
    """
    seconds = sum(b / tokens_per_s(math.ceil(b / ranks)) for b in wave_sizes(requests, batch))
    return requests / seconds


def drain_excess_s(running: int, mean_output: float, cap: int, step: Any) -> float:
    """Seconds an offline run of varying output lengths lasts beyond the mean-length model (finite_run_tokens_per_s,
    where every request of a wave finishes at its mean output O). Output lengths are taken as exponential with the
    row's mean O (knob output_lengths: exponential; an assumption, stated on the row, not fitted), capped at
    ``cap`` tokens (the benchmark's sampler: vllm bench serve / sglang.bench_serving keep ShareGPT pairs with prompt +
    output <= 2048, so cap = 2048 - P). When the queue empties, ``running`` requests hold residual lengths that are
    again exponential with mean O (memorylessness), so at decode step t of the drain

        b(t) = max(1, running x exp(-t / O))        requests still running
        T_end = min(O x H(running), cap)             the expected longest of them, H the harmonic number

    and the drain takes sum_{t < T_end} step(b(t)) seconds where the mean-length model charged O x step(running)
    (both decode-only: ``step`` = calc.serving.plan.max_load_decode_step; the drain's tokens, running x O, are the
    same in both). The excess is the difference: small-batch steps, each streaming every weight, for the outputs
    longer than the mean.

    >>> round(drain_excess_s(1, 100, 100, lambda b: 0.01), 6)  # one request: no tail
    0.0
    >>> drain_excess_s(1000, 100, 2000, lambda b: 0.01) > 6.0  # ~748 steps at 10 ms against 100
    True
    """
    end = min(mean_output * sum(1 / i for i in range(1, running + 1)), cap)
    memo: dict[int, float] = {}

    def at(b: int) -> float:
        if b not in memo:
            memo[b] = step(b)
        return memo[b]

    drain = sum(at(max(1, round(running * math.exp(-t / mean_output)))) for t in range(round(end)))
    return max(drain - mean_output * at(running), 0.0)


def _kv(row: Any, m: ModelSpec, gpu: GPUSpec) -> float:
    from calc.serving.engine_memory import engine_memory

    k = knobs(row)
    engine = row.stack.name
    if engine not in ("vllm", "vllm-v0", "sglang", "trtllm"):
        raise CannotPredict(f"KV accounting of {row.stack.name} is not modelled (vllm, vllm-v0, sglang, trtllm)")
    settings = _engine_settings(row, k)
    capacity = int(k["capacity_gib"] * GIB) if "capacity_gib" in k else None
    # a row whose log names the top-k / top-p sampler (vLLM V1) says so; else the release's default install
    # (and the windows the row's engine applied: calc.serving.windows, applied by engine_memory)
    assumptions = DEFAULT_ASSUMPTIONS.model_copy(update={"vllm_flashinfer_sampler": k.get("vllm_flashinfer_sampler"),
                                                         "attention_windows": row_attention_windows(row, k)})
    mem = engine_memory(m, gpu, settings=settings, tp=k.get("tp", 1), pp=k.get("pp", 1),
                        dtype=None if k.get("weights_as_shipped") else row.dtype, kv_dtype=k.get("kv_dtype"),
                        capacity_bytes=capacity, assumptions=assumptions)
    if mem.kv_cache_tokens <= 0:
        raise CannotPredict("the engine predicts no room for a KV cache (0 tokens)")
    if row.measured.unit == "GiB":  # the log's "Available KV cache memory" (vLLM V1 gpu_worker.py), not its tokens
        return mem.kv_budget_bytes / GIB
    return float(mem.kv_cache_tokens)


def _inference_memory(row: Any, m: ModelSpec, gpu: GPUSpec) -> float:
    """The process's memory at a context: `memory --mode infer` (weights + KV of batch x seq + activations + reserve)."""
    from calc.memory.inference import inference_memory
    from calc.specs import Parallelism

    k = knobs(row)
    seq = k.get("max_model_len") or k.get("seq")
    if seq is None:
        raise CannotPredict("an inference peak needs the context (max_model_len or seq)")
    r = inference_memory(m, gpu=gpu, plan=Parallelism(tp=k.get("tp", 1)), dtype=_serving_dtype(row, k),
                         kv_dtype=k.get("kv_dtype"), batch=k.get("batch", 1), seq=seq)
    return r.per_gpu_bytes / (GIB if row.measured.unit == "GiB" else 1e9)


FINETUNE_PLAN_KEYS = ("dp", "tp", "pp")


def finetune_settings(settings: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(Parallelism, the remaining finetune_memory keyword arguments) of a recipe's settings."""
    from calc.specs import Parallelism

    rest = dict(settings)
    plan = Parallelism(**{k: rest.pop(k) for k in FINETUNE_PLAN_KEYS if k in rest})
    return plan, rest


def peak_metric(metric: str) -> str:
    """Which peak a row's metric text names (calc.memory.training.PEAK_METRICS): torch.cuda.max_memory_reserved
    ("reserved"), max_memory_allocated / the allocator's active bytes ("allocated"), else the device's ("device")."""
    text = metric.lower()
    return "reserved" if "reserved" in text else "allocated" if "allocated" in text or "active" in text else "device"


def finetune_peak_gib(m: ModelSpec, settings: dict[str, Any], metric: str) -> float:
    """Predicted fine-tuning peak in GiB on the metric the source reports (reserved: the allocator, no CUDA context)."""
    from calc.memory.finetune import finetune_memory

    plan, rest = finetune_settings(settings)
    r = finetune_memory(m, plan=plan, **rest)
    return {"reserved": r.reserved_peak_bytes, "allocated": r.allocated_peak_bytes}.get(metric, r.per_gpu_bytes) / GIB


def _finetune(row: Any, m: ModelSpec) -> float:
    metric = "reserved" if "reserved" in row.measured.metric else "allocated"
    try:
        settings = finetune_kwargs(row, knobs(row))
    except Unrepresentable as e:
        raise CannotPredict(str(e)) from e
    gib = finetune_peak_gib(m, settings, metric)
    return {"GiB": gib, "GB": gib * GIB / 1e9}[row.measured.unit]


def predict(row: Any, overrides: dict[str, Any] | None = None) -> float:
    """The engine's prediction for a corpus row, in the row's measured unit; CannotPredict says why not."""
    overrides = overrides or {}
    update = {}
    for name in ("step_overhead_s", "step_overhead_per_seq_s"):  # the fixed and the per-sequence part of a step's overhead
        value = overrides.get(name, parameter(name))  # a value, or {engine family: value}
        if isinstance(value, dict):  # a family the data file does not hold yet reads "other" (calc.serving.assumptions.engine_overhead)
            value = value.get(overhead_key(row), value["other"])
        update[name] = value
    assumptions = DEFAULT_ASSUMPTIONS.model_copy(update=update)
    m, gpu = row_model(row), row_gpu(row)
    # fitted GEMM plateaus (keys as calc.hardware.efficiency.plateau_key) and stack efficiencies
    # (calc.training.stack.stack_key) replaced by the fit's candidates for this prediction
    with _overridden(efficiency.GEMM_PLATEAU, overrides.get("gemm_plateau")), \
            _overridden(stack.OVERRIDES, overrides.get("stack_efficiency")), \
            _overridden(serving_moe.MOE_SERVING_RATE, overrides.get("moe_serving_rate")), \
            _overridden(collectives.PCIE_COLLECTIVE_FACTOR, overrides.get("pcie_collective_factor")):
        if row.kind in TRAINING_KINDS or row.kind == "training_peak_memory":
            return _training(row, m, gpu)
        if row.kind in LATENCY_FIELD or row.kind == "serving_throughput":
            return _serving(row, m, gpu, assumptions)
        if row.kind == "kv_capacity":
            return _kv(row, m, gpu)
        if row.kind == "finetune_peak_memory":
            return _finetune(row, m)
        if row.kind == "inference_peak_memory":
            return _inference_memory(row, m, gpu)
    raise CannotPredict(f"no predictor for kind {row.kind} yet")


_ANSWERS: dict[tuple[str, str], tuple[float | None, str]] = {}


def predict_or_reason(row: Any, overrides: dict[str, Any] | None = None) -> tuple[float | None, str]:
    """(prediction, "") or (None, why): the engine's own refusals (LLMCalcError) are reasons, bugs propagate.
    Answers are kept per (row id, overrides) for the process: the fit, the README tables and the tests ask again."""
    key = (row.id, repr(sorted((overrides or {}).items())))
    if key not in _ANSWERS:
        try:
            _ANSWERS[key] = predict(row, overrides), ""
        except CannotPredict as e:
            _ANSWERS[key] = None, str(e)
        except LLMCalcError as e:
            _ANSWERS[key] = None, f"engine: {e}"
    return _ANSWERS[key]


ENGINE_FAMILY = {"vllm": "vllm", "vllm-v0": "vllm-v0", "sglang": "sglang", "trtllm": "trtllm", "nim-trtllm": "trtllm",
                 "lmdeploy": "lmdeploy"}


def engine_family(row: Any) -> str:
    """The serving engine whose per-step overhead a row informs; unlisted stacks share "other" (never fitted). vLLM
    by release: before 0.8 the V0 engine ("vllm-v0": its own scheduler, input preparation and driver-worker broadcast
    every step, EngineSettings.accounting), from 0.8 V1 ("vllm"), as calc.serving.assumptions.engine_overhead
    reads them for --engine / --engine-version."""
    family = ENGINE_FAMILY.get(row.stack.name, "other")
    if not family.startswith("vllm"):
        return family
    k = knobs(row)
    family = overhead_family(_engine_settings(row, k))
    # vLLM V1's async scheduler (a row's async_scheduling: --async-scheduling, as its source gives it) overlaps the
    # next step's scheduling and input preparation with the GPU step: its steps do not inform (nor read) the
    # synchronous V1 overhead. Chosen on the fit split (pass 21): the first fit pooling them moved "vllm" from 2 to
    # 0.25-0.75 ms on one async source (vllm issue 30326). The engine has no async switch yet: the key is the fit's.
    return "vllm-async" if family == "vllm" and k.get("async_scheduling") else family


def overhead_key(row: Any) -> str:
    """The step-overhead key a serving row informs and reads: its engine family, with "/moe" after it for an MoE
    model (calc.serving.assumptions.overhead_family reads it the same way for --engine and the model)."""
    family = engine_family(row)
    return f"{family}/moe" if family != "other" and row_model(row).moe else family


def parameter_keys(row: Any) -> dict[str, str]:
    """Which fitted defaults this row's prediction depends on: {"gemm_plateau": key} for every time or throughput
    row, plus "step_overhead_s" and "step_overhead_per_seq_s": overhead_key for serving latency/throughput rows (the
    fixed and the per-sequence part of a step's host time), and for those of an MoE model
    "moe_serving_rate": the same generation / dtype key (calc.serving.moe.moe_serving_rate); a row whose collectives
    run over a PCIe node link (pcie_collectives) "pcie_collective_factor": "pcie". Memory rows depend on none."""
    keys: dict[str, str] = {}
    if row.kind in TRAINING_KINDS or row.kind in LATENCY_FIELD or row.kind == "serving_throughput":
        key = efficiency.plateau_key(row_gpu(row), _training_dtype(row) if row.kind in TRAINING_KINDS else row.dtype)
        # a generation without its own fitted plateau (Volta, Turing) reads "other", as the engine does
        keys["gemm_plateau"] = key if key in efficiency.GEMM_PLATEAU else "other"
    if row.kind in TRAINING_KINDS:
        keys["stack_efficiency"] = stack.efficiency_key(row.stack.name)
    if row.kind in LATENCY_FIELD or row.kind == "serving_throughput":
        keys["step_overhead_s"] = keys["step_overhead_per_seq_s"] = overhead_key(row)
        m = row_model(row)
        if m.moe:  # the key the engine reads for the routed experts' GEMM (calc.serving.moe.moe_rate_key)
            gpu = row_gpu(row)
            expert_dtype = weight_format(m, gpu, _serving_dtype(row, knobs(row))).gemm(gpu, "experts", 1024)[1]
            key = serving_moe.moe_rate_key(gpu, expert_dtype)
            # a generation the fit has no key for reads "other" (the fit's keys: the plateau's, and W4A16_GENERATIONS')
            keys["moe_serving_rate"] = key if key.split("/")[0] in efficiency.GEMM_PLATEAU else "other"
    if keys and pcie_collectives(row):
        keys["pcie_collective_factor"] = "pcie"
    return keys


def pcie_collectives(row: Any) -> bool:
    """Whether the row's step runs a collective over a PCIe node link (calc.hardware.collectives.pcie_factor): a
    TP or EP group of a serving row, a TP, EP or data-parallel group of a training row, inside a PCIe node
    (SystemSpec.pcie_link, the node type the row names or the GPU's own)."""
    k = knobs(row)
    try:
        system = _system(row, k, row_gpu(row))
    except CannotPredict:  # no node type: nothing to say about its links
        return False
    if not system.pcie_link(system.gpus_per_node):
        return False
    if row.kind in TRAINING_KINDS:
        groups = [k.get("tp", 1) or 1, k.get("ep", 1) or 1, (k.get("dp", 1) or 1) * (k.get("cp", 1) or 1)]
    else:
        try:
            tp, _pp, ep = serving_layout(row, k)
        except CannotPredict:  # an engine serving_layout does not read: its flags as given
            tp, ep = k.get("tp", row.hardware.num_gpus), k.get("ep", 1)
        groups = [tp, ep]
    return any(g > 1 and system.pcie_link(min(g, system.gpus_per_node)) for g in groups)
