"""Serving commands: `latency`, `concurrency` and `serve`, all views of the engine model in
calc.serving (engine memory as vLLM/SGLang allocate it, step time, layouts)."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import typer

from calc.cli.groups import takes
from calc.cli.options import (
    DEFAULT_BATCH,
    DEFAULT_DTYPE,
    DEFAULT_LAUNCH,
    DEFAULT_OUTPUT,
    DEFAULT_PROMPT,
    DEFAULT_SERVING_KNOBS,
    DEFAULT_TRAFFIC,
    WEIGHT_FORMAT_NAMES,
    AcceptanceOpt,
    AttentionWindowsOpt,
    BatchOpt,
    CalibrationOpt,
    CausalPrefillOpt,
    CommBufferOpt,
    DisaggOpt,
    DraftOpt,
    DtypeOpt,
    EmitOpt,
    Engine,
    EngineLaunch,
    EngineOpt,
    EngineVersionOpt,
    EpOpt,
    ExplainOpt,
    Fp8MoeScalesOpt,
    GpuOpt,
    JsonOpt,
    KvDtypeOpt,
    MaxModelLenOpt,
    ModelArg,
    NumGpusOpt,
    OutputOpt,
    PlotOpt,
    PpOpt,
    PromptOpt,
    ReserveOpt,
    SchedulerStepsOpt,
    ServingKnobs,
    SharedPrefixOpt,
    SpecMethod,
    SpecMethodOpt,
    SpecTokensOpt,
    TpOpt,
    TpotMsOpt,
    Traffic,
    TtftMsOpt,
    alias,
    given_dtype,
    given_weights,
    human_float,
    human_int,
    note_fp32,
    option_given,
    refuse,
    refuse_all,
)
from calc.errors import LLMCalcError

# A release as --engine-version takes it: 0.11, v0.6.3, 0.6.3.post1, 0.11.0rc2, 0.6.3.dev114 (not -0.5 or 1e30).
RELEASE = re.compile(r"v?\d+\.\d+(?:\.\d+){0,2}(?:[.+-]?[A-Za-z][A-Za-z0-9.]*)?")  # vLLM 0.10.1.1: a fourth part

DEFAULT_NON_TORCH_GIB = 0.5  # calc.serving.assumptions.ServingAssumptions.cuda_context_gib


VLLM_BLOCK_SIZES = (1, 8, 16, 32, 64, 128)  # vLLM CacheConfig.block_size: BlockSize = Literal[1, 8, 16, 32, 64, 128]


def engine_settings(engine: Engine, launch: EngineLaunch = DEFAULT_LAUNCH, max_model_len: int | None = None,
                    version: str | None = None) -> Any:
    """EngineSettings from the options (every serving command's, report's and compare's); an option of another engine
    is refused, not ignored."""
    from calc.specs.serving import CURRENT_VERSION, NEWEST_READ, EngineSettings, version_tuple

    util, batched, seqs, block = (launch.gpu_memory_utilization, launch.max_num_batched_tokens, launch.max_num_seqs,
                                  launch.block_size)
    fraction, chunk = launch.mem_fraction_static, launch.chunked_prefill_size
    if engine == Engine.sglang:
        for flag, value in (("--gpu-memory-utilization", util), ("--max-num-batched-tokens", batched),
                            ("--block-size", block)):
            refuse(flag, value, "is a vLLM setting; SGLang takes --mem-fraction-static / --chunked-prefill-size")
    else:
        for flag, value in (("--mem-fraction-static", fraction), ("--chunked-prefill-size", chunk)):
            refuse(flag, value, "is an SGLang setting; give --engine sglang")
    if engine in (Engine.vllm, Engine.vllm_v0):
        if block is not None and block not in VLLM_BLOCK_SIZES:
            raise LLMCalcError("--block-size", f"vLLM takes a block size of {', '.join(map(str, VLLM_BLOCK_SIZES))} "
                                               f"tokens (vllm/config/cache.py BlockSize), not {block}")
    if engine == Engine.trtllm:
        refuse("--gpu-memory-utilization", util, "is a vLLM setting; TRT-LLM keeps 0.9 of the memory free after "
                                                 "weights and activations for its KV cache")
    if version is not None and (version_tuple(version) is None or not RELEASE.fullmatch(version.strip())):
        raise LLMCalcError("--engine-version", f"{version!r} is not a release number; give one such as 0.8 or 0.11")
    # V0 ran to 0.10 behind VLLM_USE_V1=0 and was removed in 0.11 ("the V0 engine has been completely removed from
    # vLLM starting with version 0.11.0", huggingface/optimum-neuron PR 1027; vllm-project/vllm PR 25033 "[V0
    # Deprecation] Remove LLMEngine")
    if engine.value == "vllm-v0" and version is not None and version_tuple(version)[:2] >= (0, 11):
        raise LLMCalcError("--engine-version", f"vllm-v0 {version}: vLLM removed its V0 engine in 0.11; give a release "
                                               "up to 0.10 for V0, or --engine vllm")
    newest = NEWEST_READ.get(engine.value) if engine.value != "vllm-v0" else None
    if version is not None and newest and version_tuple(version)[:2] > version_tuple(newest)[:2]:
        raise LLMCalcError("--engine-version", f"{engine.value} {version} is newer than the newest release whose sources "
                                               f"llmcalc has read ({newest}); give <= {newest}, or leave it out (the "
                                               f"default is {CURRENT_VERSION[engine.value]})")
    given = {"gpu_memory_utilization": util, "max_model_len": max_model_len, "max_num_batched_tokens": batched,
             "max_num_seqs": seqs, "block_size": block, "mem_fraction_static": fraction, "chunked_prefill_size": chunk,
             "engine_version": version}
    return EngineSettings(engine=engine.value, **{k: v for k, v in given.items() if v is not None})


def check_step_budget(s: Any, m: Any, g: Any) -> None:
    """The launch settings vLLM refuses to start with. Its per-step token budget below its request cap (SchedulerConfig:
    max_num_batched_tokens must be >= max_num_seqs), whichever of the two is the engine's default on this GPU
    (EngineSettings.batched_tokens / seqs): only given flags get here, so the one given is named. V1 from 0.9.1, a
    --gpu-memory-utilization asking for more than the memory free at startup, the device total less the process's
    own CUDA context (vllm/v1/worker/gpu_worker.py init_device: "Free memory on device ... on startup is less than
    desired GPU memory utilization"; the context DEFAULT_NON_TORCH_GIB, 0.5 GiB, on an otherwise idle GPU). V1's
    FlashAttention backend on CUDA, a --block-size not a multiple of 16 (its supported kernel block sizes); an MLA
    model on Hopper, one not a multiple of the 64 FlashMLA forces (EngineSettings.forced_page_tokens). A release
    before the first to run the model's architecture (calc.serving.support), named by --engine-version."""
    from calc.serving.support import vllm_release_problem

    if s.engine.startswith("vllm") and (problem := vllm_release_problem(m, s.version())) is not None:  # V0 too
        raise LLMCalcError("--engine-version", problem)
    forced = s.forced_page_tokens(m, g)
    if forced and s.block_size is not None and s.block_size % forced:
        raise LLMCalcError("--block-size", f"{s.block_size} tokens: vLLM forces {forced}-token KV blocks for FlashMLA, "
                                           f"{m.name}'s attention backend on {g.name} (vllm/platforms/cuda.py), so it "
                                           f"would change nothing; give a multiple of {forced} or drop it")
    if s.accounting() == "vllm-v1" and s.block_size is not None and s.block_size % 16 and g.vendor == "NVIDIA":
        raise LLMCalcError("--block-size", f"{s.block_size} tokens: vLLM V1's FlashAttention backend on CUDA takes "
                                           "block sizes that are multiples of 16 (16, 32, 64, 128)")
    util = s.gpu_memory_utilization if "gpu_memory_utilization" in s.model_fields_set else None
    if util is not None and s.accounting() == "vllm-v1" and s.version() >= (0, 9, 1):
        free = 1 - DEFAULT_NON_TORCH_GIB * 2**30 / g.cuda_total_bytes
        if util > free:
            most = math.floor(free * 1000) / 1000
            raise LLMCalcError("--gpu-memory-utilization", f"{util:g} asks for more than the {free:.4f} of {g.name}'s "
                                                           f"memory free at startup (its CUDA context takes "
                                                           f"{DEFAULT_NON_TORCH_GIB:g} GiB): vLLM refuses to start; give "
                                                           f"<= {most:.3f}")
    if s.accounting() not in ("vllm-v1", "vllm-v0") or (s.max_num_batched_tokens is None and s.max_num_seqs is None):
        return
    device = g.cuda_total_bytes
    batched, seqs = s.batched_tokens(m.max_position_embeddings, device, g.name), s.seqs(device, g.name)
    if batched < seqs:
        flag = "--max-num-batched-tokens" if s.max_num_batched_tokens is not None else "--max-num-seqs"
        default = " (the engine's default)"
        budget = f"{batched:,} tokens" + (default if s.max_num_batched_tokens is None else "")
        cap = f"{seqs:,}" + (default if s.max_num_seqs is None else "")
        raise LLMCalcError(flag, f"the step budget {budget} is below the request cap {cap}: vLLM "
                                 "refuses to start (SchedulerConfig: max_num_batched_tokens must be >= max_num_seqs); "
                                 "raise --max-num-batched-tokens or lower --max-num-seqs")


def _speculation(method: SpecMethod | None, draft: str | None, tokens: int | None, acceptance: float | None,
                 target: Any = None) -> Any:
    """Speculative decoding from its options; its settings without --speculative are refused, and so is a draft model
    with at least the target's active parameters (a draft proposes tokens cheaply; one as large as the target makes
    every step slower than plain decoding)."""
    if method is None:
        for flag, value in (("--draft", draft), ("--spec-tokens", tokens), ("--acceptance", acceptance)):
            refuse(flag, value, "applies to speculative decoding; add --speculative ngram|draft")
        return None
    if (method == SpecMethod.draft) != (draft is not None):
        raise LLMCalcError("--draft", "--speculative draft needs --draft MODEL, and only it takes one")
    from calc.serving.speculative import Speculation
    from calc.sources.catalog import load_model

    given = {"tokens": tokens, "acceptance": acceptance}
    drafted = load_model(draft, "--draft") if draft else None
    if drafted is not None and target is not None:
        from calc.model.params import count_params

        small, big = count_params(drafted).active_params, count_params(target).active_params
        if small >= big:
            raise LLMCalcError("--draft", f"{drafted.name} ({small / 1e9:,.2f}B active parameters) is not smaller than the "
                                          f"target {target.name} ({big / 1e9:,.2f}B): a draft proposes tokens for the "
                                          "target to check and must be cheaper to run; give a smaller model")
    return Speculation(method=method.value, draft=drafted, **{k: v for k, v in given.items() if v is not None})


def _gpus(num_gpus: int | None, tp: int | None, pp: int | None, ep: int = 1) -> int:
    """GPUs of the replica: --num-gpus, else --ep for an expert-parallel replica, else --tp x --pp (TP then takes what
    PP leaves)."""
    return num_gpus or (ep if ep > 1 else (tp or 1) * (pp or 1))


def refuse_ep_options(**given: Any) -> None:
    """The expert-parallel options (``given`` as flag name without dashes -> value) refused on a layout without EP
    (latency / concurrency without --ep): the busiest EP rank, the token exchange and its permute apply to none."""
    refuse_all("applies to an expert-parallel layout; give --ep, or drop it", **given)


def refuse_moe_options(m: Any, **given: Any) -> None:
    """The MoE-only serving options (``given`` as flag name without dashes -> value) refused for a model without
    routed experts: they would change nothing."""
    refuse_all(f"applies to routed experts; {m.name} has none", **given)


def no_fit_error(problem: str, gpu_memory_utilization: float | None, default_fits: Any,
                 field: str = "--num-gpus") -> LLMCalcError:
    """A does-not-fit refusal: naming --gpu-memory-utilization, with what the fraction leaves and the fix, when the user
    lowered it below vLLM's 0.9 and the default fraction would fit (``default_fits()``, called only then), else
    ``field`` (--num-gpus, or the flag that makes it fit: calc.serving.capacity.FitProblem)."""
    from calc.specs.serving import DEFAULT_GPU_MEMORY_UTILIZATION

    if gpu_memory_utilization is not None and gpu_memory_utilization < DEFAULT_GPU_MEMORY_UTILIZATION and default_fits():
        return LLMCalcError("--gpu-memory-utilization", f"{gpu_memory_utilization:g} leaves the engine that share of each "
                                                        f"GPU, and {problem}; at vLLM's default "
                                                        f"{DEFAULT_GPU_MEMORY_UTILIZATION:g} it fits: raise it")
    return LLMCalcError(field, problem)


def fits_at_default_utilization(m: Any, g: Any, s: Any, dtype: str | None, kv_dtype: str | None, tokens: int, a: Any,
                                batch: int = 1, num_gpus: int | None = None) -> Any:
    """A callable: whether some layout (up to ``num_gpus``, else 64 GPUs) admits ``batch`` requests at vLLM's default
    gpu_memory_utilization (calc.serving.capacity.smallest_fitting_gpus)."""
    from calc.serving.capacity import smallest_fitting_gpus
    from calc.specs.serving import DEFAULT_GPU_MEMORY_UTILIZATION

    def check() -> bool:
        need = smallest_fitting_gpus(m, g, s.model_copy(update={"gpu_memory_utilization": DEFAULT_GPU_MEMORY_UTILIZATION}),
                                     dtype, kv_dtype, tokens, a, batch)
        return need is not None and (num_gpus is None or need <= num_gpus)

    return check


def check_weight_values(m: Any, gpus: list[Any], dtype: str | None, knobs: ServingKnobs = DEFAULT_SERVING_KNOBS,
                        engine: Engine = Engine.vllm, kv_dtype: str | None = None, gpu_field: str = "--gpu") -> None:
    """The weights and KV formats the engine runs on these GPUs (refuse_engine_formats), and the MoE serving flags whose
    value the model bounds (after refuse_moe_options): --expert-imbalance is the busiest
    expert-parallel rank's tokens over the mean, at most the EP degree, which is at most the routed experts (all tokens
    on one rank); --fp8-moe-scales picks the scaling of fp8 expert GEMMs, so experts that run in another dtype on every
    GPU given would ignore it (calc.serving.step: only an fp8 compute dtype reads it)."""
    from calc.serving.weights import weight_format

    refuse_engine_formats(engine, m, gpus, dtype, kv_dtype, gpu_field)
    expert_imbalance, fp8_moe_scales = knobs.expert_imbalance, knobs.fp8_moe_scales
    if m.moe is None:
        return
    if expert_imbalance is not None and expert_imbalance > m.moe.num_experts:
        raise LLMCalcError("--expert-imbalance", f"is the busiest expert-parallel rank's tokens over the mean, at most the "
                                                 f"EP degree (<= {m.moe.num_experts} experts: all tokens on one rank); got "
                                                 f"{expert_imbalance:g}")
    if fp8_moe_scales is not None:
        computes = {weight_format(m, g, dtype).compute_dtype for g in gpus}
        if not any(c.startswith("fp8") for c in computes):
            raise LLMCalcError("--fp8-moe-scales", f"sets how fp8 expert GEMMs are scaled; {m.name}'s experts run in "
                                                   f"{', '.join(sorted(computes))} here: give --dtype fp8 (on a GPU with "
                                                   "fp8 tensor cores) or drop it")


def refuse_engine_formats(engine: Engine, m: Any, gpus: list[Any], dtype: str | None, kv_dtype: str | None,
                          gpu_field: str = "--gpu") -> None:
    """The weights and KV formats the engine would not run on these GPUs, refused naming the flag that fixes it:
    every engine's load_problem (calc.serving.weights: vLLM's fp32 Gemma 2 / 3 on a GPU without bf16, a quantized
    format without a kernel on the GPU, a checkpoint no TP loads), for one GPU or when no GPU of several runs it
    (compare shows the others' rows); and TensorRT-LLM's fp8, which it builds only on GPUs with fp8 tensor cores (its
    support matrix: Ampere SM80 / SM86 FP32, FP16, BF16, INT8, INT4; FP8 from Ada SM89 and Hopper; no fp8 weight-only
    kernel such as vLLM's FP8 Marlin): fp8 weights (given or as shipped) or an fp8 KV cache there."""
    from calc.serving.weights import load_problem, weight_format

    problems = [load_problem(m, g, dtype, engine.value) for g in gpus]
    # a GPU the engine would not run it on, among several compared where another runs it, is that GPU's row
    # (calc.report.build.compare_gpus); one GPU, or none that runs it: refused, naming the flag that fixes it
    problem = next((p for p in problems if p is not None), None)
    if problem is not None and (len(gpus) == 1 or all(problems)):
        raise LLMCalcError(gpu_field if problem[0] == "--gpu" else problem[0], problem[1])
    if engine is not Engine.trtllm:
        return
    for g in gpus:
        if "fp8" in g.datasheet_peak_tflops:
            continue
        if kv_dtype is not None and kv_dtype.startswith("fp8"):
            raise LLMCalcError("--kv-dtype", f"TensorRT-LLM has no fp8 KV cache on {g.name} (no fp8 tensor cores; FP8 "
                                             "from Ada / Hopper): give --kv-dtype bf16, or --engine vllm")
        if "fp8" in weight_format(m, g, dtype).storage.values():
            raise LLMCalcError("--dtype", f"TensorRT-LLM has no fp8 weights on {g.name} (no fp8 tensor cores; FP8 from "
                                          f"Ada / Hopper){'' if dtype else f'; {m.name} ships fp8'}: give --dtype bf16, "
                                          "int8 or int4, or --engine vllm (FP8 Marlin, weight-only)")


def refuse_unused_knobs(m: Any, knobs: ServingKnobs, num_gpus: int | None) -> None:
    """The serving assumptions that would change nothing for this model on ``num_gpus`` (None: a count the plan
    sizes): the MoE-only ones for a model without routed experts, the expert-parallel ones on one GPU, the
    communication buffers of an unsplit model (serve, report, compare: one rule)."""
    if m.moe is None:
        refuse_moe_options(m, **knobs.moe_only())
    refuse_ep_options_on_one_gpu(num_gpus, **knobs.expert_parallel())
    refuse_unsplit_comm_buffer(num_gpus, knobs.comm_buffer_gib)


def refuse_ep_options_on_one_gpu(num_gpus: int | None, **given: Any) -> None:
    """The expert-parallel serving options (``given`` as flag name without dashes -> value) refused when --num-gpus 1
    leaves no expert-parallel layout to apply to (calc.serving.plan._candidates: EP needs >= 2 GPUs)."""
    if num_gpus == 1:
        refuse_all("applies to expert-parallel layouts; --num-gpus 1 has none", **given)


def refuse_engine_on_gpu(engine: Engine, g: Any, flag: str = "--engine") -> None:
    """An engine refused on a GPU it does not run on (calc.specs.serving.engine_gpu_problem), naming ``flag`` (the
    option that chose the engine)."""
    from calc.specs.serving import engine_gpu_problem

    problem = engine_gpu_problem(engine.value, g)
    if problem:
        raise LLMCalcError(flag, f"{problem}: give --engine vllm or sglang")


def refuse_unloadable(m: Any, dtype: str | None, tp: int, ep: int, engine: Engine, tp_given: bool,
                      fp8_moe_scales: str = "block") -> None:
    """A fixed layout whose TP slices cut the checkpoint's fp8 scale blocks or AWQ / GPTQ groups (or, at --dtype fp8
    on a 16-bit MoE with ``fp8_moe_scales`` "block", its block-fp8 checkpoint's): the engine refuses to load it
    (calc.serving.shards), so no figure is given; named by --tp when typed, else --num-gpus."""
    from calc.serving.shards import shard_problem

    problem = shard_problem(m, dtype, tp, ep, engine.value, fp8_moe_scales)
    if problem is not None:  # named by the checkpoint itself where no TP loads it (a group that cuts a whole matrix)
        anywhere = tp > 1 and shard_problem(m, dtype, 1, ep, engine.value, fp8_moe_scales) is not None
        raise LLMCalcError("MODEL" if tp == 1 or anywhere else "--tp" if tp_given else "--num-gpus", problem)


def check_serving_tp(m: Any, tp: int | None, dtype: str | None, ep: int, engine: Engine,
                     fp8_moe_scales: str = "block") -> None:
    """A typed --tp the model's matrices cannot be split by (calc.model.parallel.tp_split_problem), refused naming
    the degrees that split them and that the engine loads the checkpoint at (refuse_unloadable's rule): DeepSeek-V3's
    128 x 128 fp8 scale blocks rule out TP 32 and beyond, though its 128 heads split."""
    from calc.model.parallel import splittable_tps, tp_split_problem
    from calc.serving.shards import shard_problem

    if tp is None or (problem := tp_split_problem(m, tp)) is None:
        return
    loadable = [t for t in splittable_tps(m) if shard_problem(m, dtype, t, ep, engine.value, fp8_moe_scales) is None]
    if not loadable:  # the checkpoint loads at no TP: that is the refusal (refuse_unloadable's, naming MODEL)
        raise LLMCalcError("MODEL", shard_problem(m, dtype, 1, ep, engine.value, fp8_moe_scales) or problem)
    raise LLMCalcError("--tp", f"{problem}; try {', '.join(map(str, loadable))}")


def refuse_unsplit_comm_buffer(gpus: int | None, comm_buffer_gib: float | None) -> None:
    """--comm-buffer-gib on one GPU: no communicator is built (calc.serving.engine_memory counts the buffers only
    when the model is split), so it would change nothing."""
    if gpus == 1:
        refuse("--comm-buffer-gib", comm_buffer_gib, "is the NCCL / all-reduce memory of a model split over GPUs; "
                                                     "on 1 GPU there is none: drop it or give --num-gpus > 1")


def attention_windows_of(m: Any, given: str | None, settings: Any) -> str:
    """--attention-windows, else the engine release's (calc.serving.assumptions.engine_attention_windows); refused
    for a model without sliding-window layers, where it would change nothing."""
    from calc.serving.assumptions import engine_attention_windows
    from calc.serving.windows import has_sliding_layers

    if given is not None and not has_sliding_layers(m):
        raise LLMCalcError("--attention-windows", f"{m.name} has no sliding-window layers; drop it")
    return str(given) if given is not None else engine_attention_windows(settings.engine, settings.version())


def serving_assumptions(knobs: ServingKnobs = DEFAULT_SERVING_KNOBS, settings: Any = None, *, moe: bool = False,
                        num_scheduler_steps: int | None = None, max_utilization: float | None = None,
                        router: str | None = None, attention_windows: str | None = None) -> Any:
    """The serving assumptions the flags override (calc.serving.assumptions); refused in the flag's own terms.

    --reserve-gib: the per-GPU non-torch memory. Given, it is what the engine subtracts whatever the release (the
    CUDA context where the release counts it, else the workspaces above its snapshot: calc.serving.engine_memory
    non_torch_bytes); at its default each release keeps its own (ServingAssumptions).
    --step-overhead-ms: the per-step overhead; else the fitted value of the engine ``settings`` name (--engine and
    --engine-version: calc.serving.assumptions.engine_overhead, an MoE model's (``moe``) apart; vLLM V1
    without settings).
    --step-overhead-per-seq-us: the part per scheduled sequence, the same way (calc.serving.assumptions.engine_overhead).
    --enforce-eager: every step without a CUDA / HIP graph (calc.serving.eager).
    --num-scheduler-steps: vLLM V0's multi-step scheduling (calc.serving.step.step_overhead); refused for an engine
    that has none (vLLM V1 from 0.8, SGLang, TensorRT-LLM).
    --comm-buffer-gib: the per-GPU communication memory of a split model, replacing calc.serving.comm_memory's
    formula.
    --dispatcher: the expert-parallel token exchange (calc.hardware.moe_ops.DISPATCHERS); else the engine's by release
    (calc.serving.assumptions.engine_dispatcher: vLLM before 0.11 naive, else all-gather + reduce-scatter).
    --moe-permute-scope: which routed copies an all-gather-fed rank permutes; else the engine's
    (calc.serving.assumptions.engine_permute_scope).
    --moe-serving-rate: the routed experts' whole-step rate; else the fitted one (calc.serving.moe.moe_serving_rate).
    --attention-windows (``attention_windows``, attention_windows_of): whether sliding-window layers run over their
    window; else the engine's (calc.serving.assumptions.engine_attention_windows).
    --gemm-plateau / --hbm-efficiency: the large-GEMM fraction of peak and the HBM efficiency every step is timed at;
    else the GPU generation's (calc.hardware.efficiency), refused beside a calibration that measured them."""
    from calc.fitted import describe
    from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions, engine_defaults, overhead_family

    reserve_gib, expert_imbalance, dispatcher = knobs.reserve_gib, knobs.expert_imbalance, knobs.exchange
    if expert_imbalance is not None and expert_imbalance < 1:
        raise LLMCalcError("--expert-imbalance", f"is max / mean tokens per expert-parallel rank, >= 1; got {expert_imbalance:g}")
    # --reserve-gib, when given, is the non-torch memory whichever way the engine counts it (calc.serving.engine_memory:
    # the whole CUDA context, or what appears above its baseline snapshot); not given, each keeps its default. A given
    # value equal to a default is still given (it was read as "not given", so 0.5 reserved less than 0.3).
    given = {} if settings is None else engine_defaults(settings, moe)  # the release's own, then the flags over them
    if reserve_gib is not None:
        given["profile_non_torch_gib"] = reserve_gib
    if knobs.fp8_moe_scales is not None:
        given["fp8_moe_scales"] = str(knobs.fp8_moe_scales)
    if knobs.moe_serving_rate is not None:
        if knobs.moe_serving_rate <= 0:
            raise LLMCalcError("--moe-serving-rate", f"is a rate against the kernel tables, > 0; got {knobs.moe_serving_rate:g}")
        given["moe_serving_rate"] = knobs.moe_serving_rate
    if knobs.comm_buffer_gib is not None:
        given["comm_buffer_gib"] = knobs.comm_buffer_gib
    for name in ("gemm_plateau", "hbm_efficiency"):  # the GEMM and HBM rates --explain names (calibrated_gpu)
        if getattr(knobs, name) is not None:
            given[name] = getattr(knobs, name)
    if max_utilization is not None:
        given["max_utilization"] = max_utilization
    if router is not None:
        given["router"] = str(router)
    if dispatcher is not None:
        given["dispatcher"] = str(dispatcher)
    if knobs.moe_permute_scope is not None:
        exchange = given.get("dispatcher", DEFAULT_ASSUMPTIONS.dispatcher)
        if exchange not in ("allgather", "naive"):  # only a gathered exchange hands a rank copies that are not its own
            raise LLMCalcError("--moe-permute-scope", f"sets which gathered copies a rank permutes under an all-gather "
                                                      f"exchange; --dispatcher {exchange} sends each rank only its own: "
                                                      "drop it, or give --dispatcher allgather")
        given["moe_permute_scope"] = str(knobs.moe_permute_scope)
    if attention_windows is not None:
        given["attention_windows"] = attention_windows
    sources = []  # each overhead part from its flag, else the engine's value for this model (--explain names which)
    family = overhead_family(settings, moe) if settings is not None else None
    for name, flag_value, per_second, flag_source, engine_prefix in (
            ("step_overhead_s", knobs.step_overhead_ms, 1e3, "--step-overhead-ms", f"{family}: "),
            ("step_overhead_per_seq_s", knobs.step_overhead_per_seq_us, 1e6, "per sequence: --step-overhead-per-seq-us",
             "per sequence: ")):
        if flag_value is not None:
            given[name] = flag_value / per_second
            sources.append(flag_source)
        elif settings is not None:
            sources.append(engine_prefix + describe(name, family))
    if sources:
        given["step_overhead_from"] = "; ".join(sources)
    if num_scheduler_steps is not None and num_scheduler_steps > 1:
        if not given.get("eager_prefill"):  # vLLM V0 (engine_defaults), the one engine with multi-step scheduling
            raise LLMCalcError("--num-scheduler-steps", "multi-step scheduling is vLLM V0's (--engine vllm-v0, or "
                                                        "--engine vllm with --engine-version below 0.8)")
        given["scheduler_steps"] = num_scheduler_steps
    return ServingAssumptions(cuda_context_gib=DEFAULT_NON_TORCH_GIB if reserve_gib is None else reserve_gib,
                              eager=knobs.enforce_eager,
                              expert_imbalance=expert_imbalance or DEFAULT_ASSUMPTIONS.expert_imbalance, **given)


def refuse_rate_options(max_utilization: float | None, router: str | None, rate: float | None,
                        num_gpus: int | None) -> None:
    """The options that only shape a --rate: --router says how its requests queue at the replicas
    (calc.serving.queueing), refused without a rate; --max-utilization sizes the replicas for it
    (calc.serving.plan.utilization_cap), refused without a rate and with --num-gpus, which fixes the replicas instead."""
    if router is not None and not rate:
        raise LLMCalcError("--router", "says how --rate's requests queue at the replicas; give --rate, or drop it")
    if max_utilization is None:
        return
    if not rate:
        raise LLMCalcError("--max-utilization", "caps how busy --rate keeps each replica; give --rate, or drop it")
    if num_gpus:
        raise LLMCalcError("--max-utilization", "sizes the replicas for --rate, and --num-gpus fixes them; drop one")


def unmet_target_flag(num_gpus: int | None, rate: float | None, users: int | None, ttft_ms: float | None,
                      tpot_ms: float | None) -> str:
    """The flag a serving plan that meets no target is refused by (serve, report): the GPU budget when one was given
    for a rate or users, else the tightest target given."""
    return ("--num-gpus" if num_gpus is not None and (rate or users) else "--tpot-ms" if tpot_ms is not None
            else "--ttft-ms" if ttft_ms is not None else "--rate")


@takes("launch", EngineLaunch)
@takes("knobs", ServingKnobs)
def latency(
    ctx: typer.Context,
    model: ModelArg,
    gpu: GpuOpt,
    prompt: PromptOpt = DEFAULT_PROMPT,
    num_gpus: NumGpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    ep: EpOpt = None,
    batch: BatchOpt = DEFAULT_BATCH,
    output: OutputOpt = DEFAULT_OUTPUT,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    kv_dtype: KvDtypeOpt = None,
    causal: CausalPrefillOpt = True,
    ttft_ms: TtftMsOpt = None,
    old_ttft: Annotated[float | None, typer.Option(
        "--target-ttft-ms", parser=human_float("--target-ttft-ms"), hidden=True)] = None,
    tpot_ms: TpotMsOpt = None,
    engine: EngineOpt = Engine.vllm,
    engine_version: EngineVersionOpt = None,
    attention_windows: AttentionWindowsOpt = None,
    launch: EngineLaunch = DEFAULT_LAUNCH,
    max_model_len: MaxModelLenOpt = None,
    knobs: ServingKnobs = DEFAULT_SERVING_KNOBS,
    num_scheduler_steps: SchedulerStepsOpt = None,
    calibration: CalibrationOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """TTFT, TPOT and end-to-end time of a static batch of identical requests (TP = GPUs unless
    --tp/--pp; --ep: experts over EP GPUs, attention in EP / TP data-parallel groups, as serve's EP layouts). Refused
    when the engine's KV cache cannot hold the batch; --ttft-ms / --tpot-ms: whether this deployment meets them
    (serve's ``meets_targets``), exit 2 when it misses one, as serve when no layout meets them."""
    from calc.cli.common import emit_outcome, load_calibration, window_output
    from calc.report.render import latency_view
    from calc.serving import latency as engine_mod
    from calc.sources.catalog import load_gpu, load_model

    ttft_ms = alias(ttft_ms, old_ttft, "--ttft-ms", "--target-ttft-ms")
    m, g = load_model(model), load_gpu(gpu)
    refuse_engine_on_gpu(engine, g)
    if m.moe is None:
        refuse_moe_options(m, **knobs.given("fp8_moe_scales", "moe_serving_rate"),
                           ep=ep if ep != 1 else None)  # --ep 1: no expert parallelism, as without it
    ep = ep or 1
    if ep == 1:
        refuse_ep_options(**knobs.expert_parallel())
    elif knobs.expert_imbalance is not None and knobs.expert_imbalance > ep:
        raise LLMCalcError("--expert-imbalance", f"is the busiest expert-parallel rank's tokens over the mean, at most "
                                                 f"the EP degree ({ep}: every token on one rank); got "
                                                 f"{knobs.expert_imbalance:g}")
    output = window_output(m, prompt, output, option_given(ctx, "output"), max_model_len)
    s = engine_settings(engine, launch, max_model_len, engine_version)
    check_step_budget(s, m, g)
    a = serving_assumptions(knobs, s, moe=m.moe is not None, num_scheduler_steps=num_scheduler_steps,
                            attention_windows=attention_windows_of(m, attention_windows, s))
    gpus = _gpus(num_gpus, tp, pp, ep)
    m, dtype = given_weights(ctx, m, dtype)
    check_serving_tp(m, tp, dtype, ep, engine, a.fp8_moe_scales)
    plan = engine_mod.expert_plan(m, gpus, tp, pp or 1, ep) if ep > 1 else engine_mod.serving_plan(m, gpus, tp, pp or 1)
    refuse_unsplit_comm_buffer(gpus, knobs.comm_buffer_gib)
    check_weight_values(m, [g], dtype, knobs, engine, kv_dtype)
    refuse_unloadable(m, dtype, plan.tp, ep, engine, tp is not None, a.fp8_moe_scales)
    note_fp32(dtype)
    from calc.hardware.peaks import peak_tflops
    from calc.serving.weights import weight_format

    peak_tflops(g, weight_format(m, g, dtype).compute_dtype)  # a dtype the GPU has no peak for, before the fit (as serve)
    from calc.serving.capacity import batch_fit_problem, deployment_memory, engine_latency
    from calc.serving.engine_kernels import engine_kernels
    from calc.serving.moe import attention_ranks

    a = engine_kernels(a, m, g, s, prompt + output - 1, dtype)  # the release's ROCm kernels (decode attention, fp8)

    # one capacity call for fit and band (EP: one data-parallel attention group's, d of them in the replica)
    mem = deployment_memory(m, g, plan, s, dtype, kv_dtype, prompt + output, a, ep=ep)
    d = attention_ranks(plan.tp, ep)
    # the engine runs at most max_num_seqs requests at once: not one static batch (SGLang's follows from its KV pool:
    # 0 when the pool holds no request, which the fit check below names as "does not fit")
    if 1 <= mem.max_num_seqs * d < batch:
        raise LLMCalcError("--batch", f"{batch:,} requests exceed {engine.value}'s max_num_seqs {mem.max_num_seqs * d:,} on "
                                      f"{g.name}" + (f" ({mem.max_num_seqs:,} in each of {d} attention groups)" if d > 1 else "")
                                      + ": the engine runs at most that many at once, not one static batch; give "
                                      f"--batch <= {mem.max_num_seqs * d:,}")
    problem = batch_fit_problem(m, g, plan, s, dtype, kv_dtype, batch, prompt + output, a, mem=mem)
    if problem and not as_json:  # fit first: no time figure for a deployment that does not fit
        raise no_fit_error(problem.message, launch.gpu_memory_utilization,
                           fits_at_default_utilization(m, g, s, dtype, kv_dtype, prompt + output, a, batch, gpus),
                           problem.flag)
    result = engine_latency(m, g, plan, s, a, batch=batch, prompt=prompt, output=output, dtype=dtype, kv_dtype=kv_dtype,
                            mem=mem, causal=causal, calibration=load_calibration(calibration),
                            target_ttft_s=None if ttft_ms is None else ttft_ms / 1e3,
                            target_tpot_s=None if tpot_ms is None else tpot_ms / 1e3)
    at_len = _max_model_len_concurrency(m, g, plan, s, dtype, kv_dtype, a, max_model_len, ep)
    result = result.model_copy(update={"max_concurrency": mem.max_concurrency * d, "engine": engine.value,  # the band's engine
                                       "max_model_len": max_model_len or prompt + output,
                                       "max_concurrency_at_max_model_len": at_len,
                                       **({"fits": False, "verdict": problem.message} if problem else {})})
    missed = _missed_target(result, ttft_ms, tpot_ms)
    emit_outcome(result, as_json, explain, latency_view, problem.message if problem else missed and missed[1],
                 problem.flag if problem else missed[0] if missed else "--num-gpus")  # the answer, then exit 2


def _missed_target(result: Any, ttft_ms: float | None, tpot_ms: float | None) -> tuple[str, str] | None:
    """latency's refusal when the deployment misses a target it was given: (the flag, the line), naming every target
    missed and the serve command that searches layouts for all the targets given; None when every target is met."""
    if result.meets_targets is not False:
        return None
    from calc.units import duration

    missed = [(flag, f"{name} {duration(got)} > {duration(want / 1e3)}")
              for flag, name, got, want in (("--ttft-ms", "TTFT", result.ttft_s, ttft_ms),
                                            ("--tpot-ms", "TPOT", result.tpot_s, tpot_ms))
              if want is not None and got * 1e3 > want]
    targets = " ".join(f"{flag} {want:g}" for flag, want in (("--ttft-ms", ttft_ms), ("--tpot-ms", tpot_ms))
                       if want is not None)
    return missed[0][0], (f"misses the target{'s' if len(missed) > 1 else ''}: {' and '.join(t for _, t in missed)} "
                          f"on this deployment; try serve {targets} for a layout that meets "
                          f"{'them' if targets.count('--') > 1 else 'it'}")


def _max_model_len_concurrency(m: Any, g: Any, plan: Any, s: Any, dtype: str | None, kv_dtype: str | None, a: Any,
                               max_model_len: int | None, ep: int = 1) -> int | None:
    """latency --max-model-len: the engine's "Maximum concurrency for max_model_len tokens per request" (the same
    capacity call as `concurrency --max-model-len`), None when not given. Refused where the engine will not start
    with a KV cache that holds not one request of that length (EngineSettings.refuses_short_cache: vLLM)."""
    if max_model_len is None:
        return None
    from calc.serving.capacity import deployment_memory
    from calc.serving.moe import attention_ranks

    at_len = deployment_memory(m, g, plan, s, dtype, kv_dtype, max_model_len, a, ep=ep)
    d = attention_ranks(plan.tp, ep)
    # EP: every attention group's cache must hold one, each is its own engine; an engine that starts anyway caps a
    # request at its pool (0 requests of that length at once)
    if at_len.max_concurrency < 1 and s.refuses_short_cache():
        raise LLMCalcError("--max-model-len", f"{max_model_len:,} tokens exceed the {at_len.engine} KV cache on "
                                              f"{plan.tp * plan.pp * d} x {g.name} ({at_len.kv_cache_tokens:,} tokens"
                                              + (f" in each of {d} attention groups" if d > 1 else "") + "): the "
                                              f"engine would not start; give --max-model-len <= {at_len.kv_cache_tokens:,} "
                                              "or more GPUs")
    return at_len.max_concurrency * d


@takes("launch", EngineLaunch)
def concurrency(
    ctx: typer.Context,
    model: ModelArg,
    gpu: GpuOpt,
    max_model_len: MaxModelLenOpt = None,
    old_max_tokens: Annotated[int | None, typer.Option(
        "--max-tokens", parser=human_int("--max-tokens"), hidden=True)] = None,
    num_gpus: NumGpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    kv_dtype: KvDtypeOpt = None,
    engine: EngineOpt = Engine.vllm,
    engine_version: EngineVersionOpt = None,
    attention_windows: AttentionWindowsOpt = None,
    launch: EngineLaunch = DEFAULT_LAUNCH,
    shared_prefix: SharedPrefixOpt = 0,
    reserve_gib: ReserveOpt = None,
    comm_buffer_gib: CommBufferOpt = None,
    ep: EpOpt = None,
    fp8_moe_scales: Fp8MoeScalesOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Requests of --max-model-len tokens (default: the model's context window, as vLLM does) the
    engine's KV cache holds at once, in the engine's own terms (# GPU blocks, KV cache tokens)."""
    from calc.cli.common import emit_outcome, engine_window
    from calc.report.render import concurrency_view
    from calc.serving import capacity as engine_mod
    from calc.sources.catalog import load_gpu, load_model

    m, g = load_model(model), load_gpu(gpu)
    refuse_engine_on_gpu(engine, g)
    tokens = alias(max_model_len, old_max_tokens, "--max-model-len", "--max-tokens")
    tokens = tokens or m.context_window
    engine_window(m, tokens)
    if m.moe is None:  # --ep 1: no expert parallelism, as without it
        refuse_moe_options(m, ep=ep if ep != 1 else None, fp8_moe_scales=fp8_moe_scales)
    ep = ep or 1
    refuse_unsplit_comm_buffer(_gpus(num_gpus, tp, pp, ep), comm_buffer_gib)
    s = engine_settings(engine, launch, tokens, engine_version)
    check_step_budget(s, m, g)
    m, dtype = given_weights(ctx, m, dtype)
    refuse_engine_formats(engine, m, [g], dtype, kv_dtype)
    from calc.serving.shards import fp8_moe_scales_matter

    if fp8_moe_scales is not None and not fp8_moe_scales_matter(m, dtype):
        raise LLMCalcError("--fp8-moe-scales", "here says how --dtype fp8 loads a 16-bit MoE (block: as its block-fp8 "
                                               "checkpoint, whose 128 x 128 blocks bound the TP; tensor: online fp8, "
                                               f"per-tensor scales); {m.name} loads as given here: drop it")
    a = serving_assumptions(ServingKnobs(reserve_gib=reserve_gib, comm_buffer_gib=comm_buffer_gib,
                                         fp8_moe_scales=fp8_moe_scales),
                            attention_windows=attention_windows_of(m, attention_windows, s))
    check_serving_tp(m, tp, dtype, ep, engine, a.fp8_moe_scales)
    result = engine_mod.concurrency(m, g, num_gpus=_gpus(num_gpus, tp, pp, ep), tp=tp, pp=pp or 1, max_tokens=tokens,
                                    dtype=dtype, kv_dtype=kv_dtype, settings=s, shared_prefix=shared_prefix, assumptions=a,
                                    ep=ep)
    refuse_unloadable(m, dtype, result.tp, ep, engine, tp is not None, a.fp8_moe_scales)
    if shared_prefix and result.hybrid is not None and result.hybrid.has_state:
        raise LLMCalcError("--shared-prefix", f"{m.name}'s state layers run without prefix caching in vLLM's hybrid "
                                              "allocator (its default for hybrid models): no token is stored once, so "
                                              "it changes nothing; drop it")
    refusal = None
    if result.max_concurrency < 1:  # exit 2 as `memory`, naming the flag whose change makes it fit (the engine's)
        refusal = no_fit_error(f"does not fit: {result.verdict}", launch.gpu_memory_utilization,
                               fits_at_default_utilization(m, g, s, dtype, kv_dtype, tokens, a, 1, result.num_gpus),
                               result.fix_flag or "--num-gpus")
    emit_outcome(result, as_json, explain, concurrency_view, refusal.problem if refusal else None,
                 refusal.field if refusal else "--num-gpus")


@takes("launch", EngineLaunch)
@takes("knobs", ServingKnobs)
@takes("traffic", Traffic)
def serve(
    ctx: typer.Context,
    model: ModelArg,
    gpu: GpuOpt,
    prompt: PromptOpt = DEFAULT_PROMPT,
    output: OutputOpt = DEFAULT_OUTPUT,
    num_gpus: NumGpusOpt = None,
    traffic: Traffic = DEFAULT_TRAFFIC,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    kv_dtype: KvDtypeOpt = None,
    engine: EngineOpt = Engine.vllm,
    engine_version: EngineVersionOpt = None,
    attention_windows: AttentionWindowsOpt = None,
    launch: EngineLaunch = DEFAULT_LAUNCH,
    max_model_len: MaxModelLenOpt = None,
    knobs: ServingKnobs = DEFAULT_SERVING_KNOBS,
    emit_engine: EmitOpt = None,
    speculative: SpecMethodOpt = None,
    draft: DraftOpt = None,
    spec_tokens: SpecTokensOpt = None,
    acceptance: AcceptanceOpt = None,
    disaggregated: DisaggOpt = False,
    calibration: CalibrationOpt = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Layouts (replica x TP x PP) meeting --ttft-ms/--tpot-ms, ranked by the fewest GPUs for --rate
    requests/s or --users concurrent users (else by output tokens/s per GPU); says which resource binds."""
    ttft_ms, tpot_ms, rate, users, max_utilization, router = traffic.unpack()
    from calc.cli.common import emit_outcome, load_calibration, output_path, window_output
    from calc.report.render import serve_view
    from calc.serving.plan import serve_plan
    from calc.sources.catalog import load_gpu, load_model

    if output < 1:
        raise LLMCalcError("--output", "serve needs >= 1 generated token per request")
    if emit_engine is not None and emit_engine.value != engine.value.removesuffix("-v0"):
        if option_given(ctx, "engine"):
            raise LLMCalcError("--emit", f"the plan is sized for --engine {engine.value}; emit {engine.value} or size for "
                                         f"--engine {emit_engine.value}")
        engine = Engine(emit_engine.value)  # --emit sglang alone: size the plan as SGLang does, and say so
        from calc.sanity import note

        note("--emit", f"the plan is sized for {engine.value} (--emit {engine.value} without --engine: the engine whose "
                       "line is emitted); give --engine vllm --emit vllm for vLLM's plan")
    m, g = load_model(model), load_gpu(gpu)
    weight_format_given = given_dtype(ctx, dtype)
    m, dtype = given_weights(ctx, m, dtype)
    check_weight_values(m, [g], dtype, knobs, engine, kv_dtype)
    note_fp32(dtype)
    refuse_engine_on_gpu(engine, g, "--engine" if emit_engine is None or option_given(ctx, "engine") else "--emit")
    refuse_unused_knobs(m, knobs, num_gpus)
    output = window_output(m, prompt, output, option_given(ctx, "output"), max_model_len)
    refuse_rate_options(max_utilization, router, rate, num_gpus)
    plot_path = output_path(plot, "--plot", (".png", ".svg"))
    s = engine_settings(engine, launch, max_model_len, engine_version)
    check_step_budget(s, m, g)
    from calc.serving.engine_kernels import engine_kernels

    a = engine_kernels(serving_assumptions(knobs, s, moe=m.moe is not None, max_utilization=max_utilization, router=router,
                                           attention_windows=attention_windows_of(m, attention_windows, s)),
                       m, g, s, prompt + output - 1, dtype)
    result = serve_plan(m, g, prompt=prompt, output=output, ttft_ms=ttft_ms, tpot_ms=tpot_ms, rate=rate, users=users,
                        num_gpus=num_gpus, dtype=dtype, kv_dtype=kv_dtype, settings=s,
                        calibration=load_calibration(calibration),
                        assumptions=a,
                        emit=emit_engine.value if emit_engine else None,
                        speculation=_speculation(speculative, draft, spec_tokens, acceptance, m),
                        disaggregated=disaggregated)
    if disaggregated and result.layouts and not any(x.prefill_gpus for x in result.layouts):
        raise LLMCalcError("--disaggregated", f"no prefill + decode split fits on {num_gpus or 'these'} x {g.name} "
                                              "(it needs at least one prefill and one decode instance); drop it or give more GPUs")
    from calc.sanity import check_gpus_needed, warn

    for line in check_gpus_needed(result.gpus_needed, "--rate" if rate else "--users" if users else "--num-gpus"):
        warn(*line.split(": ", 1))
    if emit_engine is not None and (weight_format_given in WEIGHT_FORMAT_NAMES or weight_format_given in ("int8", "int4")
                                    or (weight_format_given and emit_engine.value == "trtllm")):
        warn("--emit", f"the line names {m.hf_id or m.name}, the checkpoint the catalog records; the plan is sized "
                       f"for {weight_format_given} weights, which no flag of the line makes: put a {weight_format_given} "
                       "checkpoint of it in its place")
    if emit_engine is not None and speculative is not None and emit_engine.value != "vllm":
        warn("--emit", f"the {emit_engine.value} line does not carry the speculative decoding the plan is timed with "
                       "(--emit vllm writes it as --speculative-config); add the engine's own speculative options")
    if plot_path is not None:
        from calc.report.plot import plot_serve_frontier

        plot_serve_frontier(result, str(plot_path))
    if not result.fits and not as_json:
        raise no_fit_error(result.verdict, launch.gpu_memory_utilization,
                           fits_at_default_utilization(m, g, s, dtype, kv_dtype, prompt + output, a, 1, num_gpus))
    if result.fits and result.best is None:  # fits in memory, meets no target: the table, then one line naming a target
        target = unmet_target_flag(num_gpus, rate, users, ttft_ms, tpot_ms)
        emit_outcome(result, as_json, explain, serve_view, result.verdict + (
            f"; no launch line (--emit {emit_engine.value})" if emit_engine is not None else ""), target)
    emit_outcome(result, as_json, explain, serve_view, None if result.fits else result.verdict)  # JSON, then exit 2
    if result.launch and not as_json:
        print(result.launch, flush=True)  # plain: a command line to paste must not wrap at the terminal width
        best = result.best
        if best is not None and result.launch_kv_cache_tokens not in (None, best.kv_cache_tokens):
            from calc.sanity import note
            from calc.units import plural

            note("--emit", f"the engine this line starts holds {result.launch_kv_cache_tokens:,} KV tokens, up to "
                           f"{plural(result.launch_max_concurrency or 0, 'request')} (its profile run at the line's "
                           f"request cap; the table's {best.kv_cache_tokens:,} are at the fewer of the engine's "
                           "default max_num_seqs and the requests its cache admits)")
