"""`memory`: weights, KV cache, activations and training states per GPU, with the fit verdict."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from calc.cli.finetune import (
    ActivationsOpt,
    AdapterInputsOpt,
    CompileOpt,
    ContextOpt,
    DoubleQuantOpt,
    DropoutOpt,
    FragOpt,
    GradAccumOpt,
    LoraAlphaOpt,
    LoraDropoutOpt,
    LoraRankOpt,
    LoraTargetsOpt,
    LossChunksOpt,
    LossOpt,
    MethodOpt,
    OffloadOpt,
    OptimizerOpt,
    OptInBwdOpt,
    PrecisionOpt,
    PrepareKbitOpt,
    QuantOpt,
    RepeatKvOpt,
)
from calc.cli.groups import takes
from calc.cli.options import (
    DEFAULT_BATCH,
    DEFAULT_DTYPE,
    DEFAULT_SEQ,
    FINETUNE_4BIT,
    WEIGHT_FORMAT_NAMES,
    Attention,
    CpOpt,
    DpOpt,
    DtypeOpt,
    ExplainOpt,
    GlobalBatchOpt,
    GlobalBatchTokensOpt,
    GpuOptional,
    JsonOpt,
    KvDtypeOpt,
    MemoryAttentionOpt,
    MemoryBatchOpt,
    Mode,
    ModelArg,
    NumGpusOpt,
    OldFlashOpt,
    PpOpt,
    RecipeOpt,
    Recompute,
    RecomputeOpt,
    ReserveOpt,
    SeqOpt,
    SpOpt,
    StackOpt,
    TpOpt,
    ZeroOpt,
    attention_choice,
    given_weights,
    human_int,
    refuse,
    refuse_switch,
    refuse_weight_format,
)
from calc.cli.training import DEFAULT_LAYOUT_FLAGS, Fp8RecipeOpt, LayoutFlags


@takes("flags", LayoutFlags)
def memory(
    ctx: typer.Context,
    model: ModelArg,
    mode: Annotated[Mode, typer.Option("--mode", help="infer, train or finetune")] = Mode.infer,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    kv_dtype: KvDtypeOpt = None,
    batch: MemoryBatchOpt = DEFAULT_BATCH,
    seq: SeqOpt = DEFAULT_SEQ,
    gpu: GpuOptional = None,
    num_gpus: NumGpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    dp: DpOpt = None,
    cp: CpOpt = None,
    sequence_parallel: SpOpt = False,
    flags: LayoutFlags = DEFAULT_LAYOUT_FLAGS,
    stack: StackOpt = None,
    fp8_recipe: Fp8RecipeOpt = None,
    global_batch: GlobalBatchOpt = None,
    global_batch_tokens: GlobalBatchTokensOpt = None,
    zero: ZeroOpt = 0,
    recipe: RecipeOpt = None,
    recompute: RecomputeOpt = Recompute.none,
    attention: MemoryAttentionOpt = None,
    old_flash: OldFlashOpt = None,
    group_size: Annotated[int | None, typer.Option(
        "--group-size", parser=human_int("--group-size"), help="int4/int8 quantisation group size")] = None,
    reserve_gib: ReserveOpt = None,
    mtp: Annotated[bool, typer.Option("--mtp", help="also load the multi-token-prediction layers (DeepSeek-V3, GLM-4.5, "
                                                    "Qwen3-Next speculative decoding)")] = False,
    method: MethodOpt = None,
    lora_rank: LoraRankOpt = None,
    lora_alpha: LoraAlphaOpt = None,
    lora_targets: LoraTargetsOpt = None,
    lora_dropout: LoraDropoutOpt = None,
    adapter_inputs: AdapterInputsOpt = None,
    optimizer: OptimizerOpt = None,
    precision: PrecisionOpt = None,
    quant: QuantOpt = None,
    no_double_quant: DoubleQuantOpt = False,
    prepare_kbit: PrepareKbitOpt = False,
    repeat_kv: RepeatKvOpt = False,
    grad_accum: GradAccumOpt = None,
    compile_: CompileOpt = None,
    loss: LossOpt = None,
    loss_chunks: LossChunksOpt = None,
    dropout: DropoutOpt = None,
    offload: OffloadOpt = None,
    optimizer_in_backward: OptInBwdOpt = False,
    cuda_context_gib: ContextOpt = None,
    fragmentation: FragOpt = None,
    activations: ActivationsOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Memory per category and per GPU; with --gpu, whether it fits and the smallest GPU count that does.

    --mode infer: --batch requests of --seq tokens (input + output) each; without --dtype the weights are
    priced as the checkpoint ships (fp8 / MXFP4 / GPTQ / AWQ / bnb from its quantization_config, else bf16). --mode train: --batch is the
    micro-batch, --seq the training sequence length, the layout flags (--ep, --etp, --vpp, --pp-embedding, --sharding,
    --stack ...) train-step's, and the per-GPU peak train-step's for the same plan (--global-batch sets the
    micro-batches per step; default: enough to fill the pipeline), --dtype the compute dtype (fp8: quantized saved GEMM
    inputs on a Transformer Engine stack). --mode finetune: full / LoRA / QLoRA / DoRA memory tensor
    by tensor (--method, --lora-*, --optimizer, --precision, --recompute, --offload ...), the peak per GPU, what
    fits instead, and the largest micro-batch per sequence length on --gpu."""
    from calc.cli.common import emit_outcome, memory_refusal, placement
    from calc.errors import LLMCalcError
    from calc.report.render import memory_view
    from calc.sources.catalog import load_gpu, load_model
    from calc.specs import Parallelism

    if gpu is not None and not gpu.strip():
        raise LLMCalcError("--gpu", "is empty; name a GPU (see `llmcalc gpus`) or leave --gpu out")
    attention = attention_choice(attention, old_flash)
    if attention not in (Attention.flash, Attention.unfused):
        raise LLMCalcError("--attention", f"{attention.value} keeps what flash keeps (no s x s score) and its rate is "
                                          "train-step's: give flash or unfused here")
    flash = attention is Attention.flash
    g = load_gpu(gpu) if gpu else None
    if g is not None and reserve_gib is not None and reserve_gib * 2**30 >= g.cuda_total_bytes:
        raise LLMCalcError("--reserve-gib", f"{reserve_gib:g} GiB is all of {g.name}'s {g.cuda_total_bytes / 2**30:.1f} GiB "
                                            "or more: nothing is left for the model on any GPU count; give less")
    finetune_only = {"--method": method, "--lora-rank": lora_rank, "--lora-alpha": lora_alpha, "--lora-targets": lora_targets,
                     "--lora-dropout": lora_dropout, "--adapter-inputs": adapter_inputs, "--optimizer": optimizer,
                     "--precision": precision, "--quant": quant, "--no-double-quant": no_double_quant,
                     "--prepare-kbit": prepare_kbit, "--repeat-kv": repeat_kv,
                     "--grad-accum": grad_accum, "--compile": compile_, "--loss": loss,
                     "--loss-chunks": loss_chunks, "--dropout": dropout, "--offload": offload,
                     "--optimizer-in-backward": optimizer_in_backward, "--cuda-context-gib": cuda_context_gib,
                     "--fragmentation": fragmentation}
    train_only = (*flags.given(), ("--fp8-recipe", fp8_recipe, None), ("--global-batch", global_batch, None),
                  ("--global-batch-tokens", global_batch_tokens, None))
    if mode is not Mode.train:
        for flag, value, default in train_only:
            refuse(flag, value, "is a train-step layout option; use --mode train" + (
                " (fine-tuning prices one model replica per data-parallel rank: --tp, --pp, --dp, --cp, --zero)"
                if mode is Mode.finetune else
                " (a serving EP layout's memory: `concurrency --ep` / `latency --ep`, the engine's accounting)"
                if flag == "--ep" else ""), default)
        refuse("--activations", activations, "picks the training activation model; use --mode train (finetune is per-tensor)")
    if mode is Mode.infer:
        refuse("--stack", stack, "is a training stack; use --mode train or finetune")
    if mode is not Mode.infer:
        refuse("--mtp", mtp, "loads MTP layers for speculative decoding, a serving option; use --mode infer", False)
        refuse_weight_format(dtype, FINETUNE_4BIT if mode is Mode.finetune else "training memory uses --recipe for its dtypes")
    if mode is Mode.train:  # the bytes follow --recipe; --dtype fp8 alone changes them (fp8 GEMM inputs saved)
        no_bf16 = g is not None and "bf16" not in g.datasheet_peak_tflops and "fp16" in g.datasheet_peak_tflops
        if no_bf16 and dtype in (DEFAULT_DTYPE, "fp16"):  # train-step's plan: an fp16 run (the same bytes) or refused
            if dtype == DEFAULT_DTYPE:
                raise LLMCalcError("--dtype", f"{g.name} has no bf16 tensor peak (train-step refuses the plan): give "
                                              "--dtype fp16, which trains with the same bytes (fp16 mixed precision)")
        elif dtype not in (DEFAULT_DTYPE, "fp8", "fp32", "tf32"):
            raise LLMCalcError("--dtype", f"training memory follows --recipe (weights, gradients, optimizer states); "
                                          f"--dtype {dtype} changes no byte here (train-step times it): give --recipe "
                                          "or drop --dtype")
        if fp8_recipe is not None and dtype != "fp8":
            raise LLMCalcError("--fp8-recipe", f"scales fp8 GEMMs; --dtype {dtype} runs none: give --dtype fp8 or drop it")
    if mode is Mode.finetune:
        from calc.cli.finetune import finetune_result
        from calc.report.finetune import finetune_view

        for flag, value, default in (("--kv-dtype", kv_dtype, None), ("--group-size", group_size, None),
                                     ("--recipe", recipe, None)):
            refuse(flag, value, "is not a fine-tuning option (use --method, --optimizer, --precision)", default)
        if reserve_gib is not None:  # the CUDA context per GPU, as --mode train and train-step read it
            refuse("--cuda-context-gib", finetune_only.get("--cuda-context-gib"),
                   "is --reserve-gib under its fine-tuning name: give one of them")
            finetune_only = {**finetune_only, "--cuda-context-gib": reserve_gib}
        result = finetune_result(model, gpu=gpu, dtype=dtype, batch=batch, seq=seq, recompute=recompute.value, flash=flash,
                                 plan=placement(tp, pp, dp, cp, sequence_parallel, num_gpus, spread="dp"), zero=zero,
                                 options={**finetune_only, "--stack": stack and stack.value})
        emit_outcome(result, as_json, explain, finetune_view, memory_refusal(result))
        return
    for flag, value in finetune_only.items():
        if flag not in TRAIN_MEMORY_FLAGS or mode is Mode.infer:
            why = ("is a fine-tuning option; use --mode finetune" if flag not in TRAIN_MEMORY_FLAGS else
                   "is a training option; use --mode train or finetune")
            if flag == "--compile":  # a --compile/--no-compile switch: refused either way
                refuse_switch(flag, value, why)
            refuse(flag, value, why)
    if mode is Mode.infer:
        why = "is a training option; drop it or use --mode train"
        for flag, value, default in (("--dp", dp, None), ("--cp", cp, None), ("--sp", sequence_parallel, False),
                                     ("--zero", zero, 0), ("--recipe", recipe, None),
                                     ("--recompute", recompute.value, "none"), ("--attention", attention.value, "flash")):
            refuse(flag, value, why, default)
    else:
        why = "is a serving option; training memory uses --recipe for its dtypes"
        for flag, value, default in (("--kv-dtype", kv_dtype, None), ("--group-size", group_size, None)):
            refuse(flag, value, why, default)
    from calc.memory import DEFAULT_RESERVE_GIB, inference_memory

    m = load_model(model)
    if mode is Mode.infer and num_gpus is not None and (tp or pp) and not (dp or cp):
        # one replica's TP x PP, read as latency / concurrency / serve read it (TP = GPUs / PP unless --tp is given)
        from calc.serving.latency import serving_plan

        layout = serving_plan(m, num_gpus, tp, pp or 1)
        tp, pp, num_gpus = layout.tp, layout.pp, None
    plan = placement(tp, pp, dp, cp, sequence_parallel, num_gpus) if mode is Mode.infer else None
    if mode is Mode.infer and num_gpus is not None and tp is None and pp is None:
        from calc.model.parallel import inference_layout

        # --num-gpus alone: the layout min_gpus is searched over (TP n, else a TP of a node x a PP the serving search
        # tries, else TP 8 x PP n/8), so the count `memory --gpu` answers is one it accepts
        layout = inference_layout(m, num_gpus)
        if layout is None:
            tried = f"TP {num_gpus}, a TP of a node x PP 2, 3, 4 or 8" + (
                f" or TP 8 x PP {num_gpus // 8}" if num_gpus > 8 and num_gpus % 8 == 0 else "")
            raise LLMCalcError("--num-gpus", f"{num_gpus} GPUs alone are laid out as {tried}, which does not split "
                               f"{m.name} ({m.num_heads} heads, {m.kv_heads} KV heads); give --tp and --pp (TP dividing the "
                               "heads, TP x PP the GPUs) or another count")
        plan = layout
    if mode is Mode.infer:
        # Without --dtype the weights are priced as the checkpoint ships (its quantization_config, else bf16);
        # --dtype nvfp4 / mxfp4 / awq / gptq as that 4-bit checkpoint (calc.memory.weights.requantize).
        refuse("--group-size", group_size if dtype in WEIGHT_FORMAT_NAMES else None,
               f"{dtype} fixes its own scale blocks (nvfp4 16, mxfp4 32, awq / gptq 128 weights); drop --group-size "
               "(or give --dtype int4 --group-size G)")
        m, weights = given_weights(ctx, m, dtype)
        explicit = weights is not None or group_size is not None
        result = inference_memory(m, gpu=g, plan=Parallelism(tp=plan.tp, pp=plan.pp), dtype=(weights or dtype) if explicit else None,
                                  kv_dtype=kv_dtype, batch=batch, seq=seq, group_size=group_size,
                                  reserve_gib=DEFAULT_RESERVE_GIB if reserve_gib is None else reserve_gib,
                                  with_mtp=mtp)
        if g is not None and not mtp and group_size is None:  # the serving commands' verdict on the same batch
            from calc.serving.capacity import with_engine_fit

            result = with_engine_fit(result, m, g, Parallelism(tp=plan.tp, pp=plan.pp),
                                     (weights or dtype) if explicit else None, kv_dtype, seq, batch)
    else:
        result = _train_memory(m, g, dtype=dtype, recipe=recipe, seq=seq, flash=flash, reserve_gib=reserve_gib,
                               activations=activations, loss=loss, stack=stack, fp8_recipe=fp8_recipe,
                               fused=compile_, fragmentation=fragmentation,
                               global_batch=global_batch, global_batch_tokens=global_batch_tokens, layout=dict(
                                   num_gpus=num_gpus, tp=tp, pp=pp, dp=dp, cp=cp, sp=sequence_parallel,
                                   micro_batch=batch, zero=zero, recompute=recompute, flags=flags))
    emit_outcome(result, as_json, explain, memory_view, memory_refusal(result) if mode is Mode.train else _infer_refusal(result))


def _infer_refusal(result: Any) -> str | None:
    """memory --mode infer's refusal: the tensors of one unchunked forward of the whole batch (fit_refusal), unless the
    serving engine's own verdict on the same batch (result.engine_fit, the figure latency / concurrency / serve admit
    with) holds it: engines prefill in chunks, so the answer then stands with a warning instead of exit 2."""
    from calc.cli.common import fit_refusal

    refusal = fit_refusal(result)
    engine = getattr(result, "engine_fit", None) or {}
    if refusal is not None and engine and not engine.get("fits"):  # neither fits: name the engine's count too
        return refusal + (f" (the tensors of one unchunked forward); {engine['engine']} {engine['version']} prefills in "
                          f"chunks and holds the batch on {engine['min_gpus']} GPUs" if engine.get("min_gpus") else "")
    if refusal is None or not engine.get("fits"):
        return refusal
    from calc.sanity import warn
    from calc.units import gib

    warn("--batch", f"one unchunked forward of the whole batch (as HF generate runs it) needs "
                    f"{gib(result.per_gpu_bytes):.2f} GiB per GPU, over the {gib(result.gpu_memory_bytes):.2f} GiB; "
                    f"the serving engine prefills in chunks and holds it: {engine.get('line', '')}")
    return None


# fine-tuning flags `memory --mode train` takes too: they override the stack's memory settings (calc.training.stack.MEMORY)
TRAIN_MEMORY_FLAGS = ("--loss", "--compile", "--fragmentation")


def _train_memory(m: Any, g: Any, *, dtype: str, recipe: str, seq: int, flash: bool, reserve_gib: float | None,
                  activations: str | None, loss: str | None, stack: Any, fp8_recipe: Any, global_batch: int | None,
                  global_batch_tokens: float | None, layout: dict[str, Any], fused: bool | None = None,
                  fragmentation: float | None = None) -> Any:
    """`memory --mode train`: the plan the layout flags name, built as train-step builds it (calc.cli.training
    .training_layout), checked by its rule (check_training_layout) and priced by the function that prices train-step's
    memory (calc.training.step.layout_memory: one engine, one per-GPU figure). Without --global-batch the step has
    calc.training.step.steady_state_microbatches micro-batches per DP rank (1 without PP), so the first stage holds its
    most, and no gradient accumulation (as `--mode finetune --grad-accum 1`): train-step's default global batch
    accumulates, and a note gives its figure where the two differ (_note_train_step_batch)."""
    from dataclasses import replace

    from calc.cli.options import global_batch_sequences, training_recipe
    from calc.cli.training import _training_dtype, refuse_fp8_recipe_on_gpu, training_layout
    from calc.memory.training import DEFAULT_CUDA_CONTEXT_GIB
    from calc.training.cost import Efficiencies
    from calc.training.layout import check_training_layout
    from calc.training.stack import check_stack_runs, check_tp
    from calc.training.step import stacked_layout_memory, steady_state_microbatches

    refuse_fp8_recipe_on_gpu(fp8_recipe, g)
    plan = training_layout(**layout)
    if plan.ep > 1 and m.moe is None:
        from calc.errors import LLMCalcError

        raise LLMCalcError("--ep", f"{m.name} has no experts; expert parallelism needs a MoE model")
    given_batch = global_batch_sequences(global_batch, global_batch_tokens, seq)
    batch = given_batch if given_batch is not None else steady_state_microbatches(plan) * plan.dp * plan.micro_batch
    micro = check_training_layout(m, plan, layout["num_gpus"], batch, seq)
    overrides = {k: v for k, v in {"stack": stack and stack.value, "fp8_recipe": fp8_recipe and fp8_recipe.value,
                                   "loss": loss and loss.lower(), "fused": fused, "fragmentation": fragmentation}.items()
                 if v is not None}
    eff = replace(Efficiencies(flash=flash, activations=activations or "per-tensor", recipe=training_recipe(recipe, dtype)),
                  **overrides)
    check_stack_runs(eff.stack, zero=plan.zero, offload=plan.offload_flag(), pp=plan.pp)
    check_tp(eff.stack, m, plan.tp)
    compute = _training_dtype(dtype)
    if g is not None and compute != "bf16":  # a compute dtype the GPU lacks, as train-step refuses it
        from calc.hardware.peaks import peak_tflops

        peak_tflops(g, compute)
    kwargs = dict(seq=seq, dtype=compute,
                  reserve_gib=DEFAULT_CUDA_CONTEXT_GIB if reserve_gib is None else reserve_gib)
    result = stacked_layout_memory(m, plan, micro, gpu=g, eff=eff,  # min_gpus: a DP the given global batch splits
                                   global_batch=given_batch, **kwargs)
    if given_batch is None:  # the default differs from train-step's (module note): say so, with train-step's figure
        _note_train_step_batch(m, plan, seq, g, eff, kwargs, result)
    return result


def _note_train_step_batch(m: Any, plan: Any, seq: int, g: Any, eff: Any, kwargs: dict[str, Any], result: Any) -> None:
    """`memory --mode train` without --global-batch prices one step of the fewest micro-batches the schedule runs (no
    gradient accumulation, as `--mode finetune --grad-accum 1`), where train-step takes its default global batch
    (calc.training.plan.default_global_batch), whose accumulation keeps the gradients across micro-batches: when the two
    figures differ, one note names train-step's and the flag that gives it here."""
    from calc.sanity import note
    from calc.training.layout import num_microbatches
    from calc.training.plan import default_global_batch
    from calc.training.step import stacked_layout_memory
    from calc.units import gib

    default = default_global_batch(seq, plan.num_gpus)
    if default % (plan.dp * plan.micro_batch):
        return
    theirs = stacked_layout_memory(m, plan, num_microbatches(plan, default), gpu=g, eff=eff, global_batch=default,
                                   **kwargs)
    if theirs.per_gpu_bytes != result.per_gpu_bytes:
        note("--global-batch", f"--global-batch not given: one step of the fewest micro-batches its schedule runs, no gradient "
                               f"accumulation ({gib(result.per_gpu_bytes):.2f} GiB per GPU); "
                               f"train-step's default of {default:,} sequences accumulates and keeps the gradients: "
                               f"{gib(theirs.per_gpu_bytes):.2f} GiB (give --global-batch {default} for that figure)")
