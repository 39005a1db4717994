"""`memory`: weights, KV cache, activations and training states per GPU, with the fit verdict."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from calc.cli.options import (
    DEFAULT_DTYPE,
    BatchOpt,
    CpOpt,
    DpOpt,
    DtypeOpt,
    ExplainOpt,
    GpuOptional,
    JsonOpt,
    KvDtypeOpt,
    ModelArg,
    NumGpusOpt,
    PpOpt,
    Recompute,
    RecomputeOpt,
    ReserveOpt,
    SeqOpt,
    SpOpt,
    TpOpt,
    ZeroOpt,
    human_float,
    human_int,
    refuse,
)


class MemoryMode(StrEnum):
    infer = "infer"
    train = "train"
    finetune = "finetune"


def _opt(flag: str, help_text: str, parser=None, **kw):  # noqa: ANN001, ANN202
    return typer.Option(flag, help=help_text, parser=parser, **kw)


MethodOpt = Annotated[str | None, _opt("--method", "finetune: full, lora, qlora or dora (default lora)")]
LoraRankOpt = Annotated[int | None, _opt("--lora-rank", "finetune: adapter rank r (default 8)", human_int("--lora-rank"))]
LoraAlphaOpt = Annotated[float | None, _opt("--lora-alpha", "finetune: adapter scale alpha (shown; no memory effect)",
                                            human_float("--lora-alpha"))]
LoraTargetsOpt = Annotated[str | None, _opt("--lora-targets", "finetune: q,k,v,o,gate,up,down,experts or all-linear (default q,v)")]
LoraDropoutOpt = Annotated[float | None, _opt("--lora-dropout", "finetune: dropout on the adapter input (default 0)",
                                              human_float("--lora-dropout", allow_zero=True, maximum=1))]
OptimizerOpt = Annotated[str | None, _opt(
    "--optimizer", "finetune: adamw, adamw8bit, paged-adamw8bit, paged-adamw, adafactor, sgd, lion (default adamw)")]
PrecisionOpt = Annotated[str | None, _opt("--precision", "finetune: mixed (bf16 + fp32 master), bf16 (pure) or fp32 (default mixed)")]
QuantOpt = Annotated[str | None, _opt("--quant", "qlora: base in nf4 (default) or int8")]
DoubleQuantOpt = Annotated[bool, _opt("--no-double-quant", "qlora: keep fp32 absmax per 64 weights (no double quantisation)")]
GradAccumOpt = Annotated[int | None, _opt("--grad-accum", "finetune: micro-batches per step; gradients persist (default 1)",
                                          human_int("--grad-accum"))]
CompileOpt = Annotated[bool, _opt("--compile", "finetune: torch.compile fuses elementwise ops (norm upcast, silu kept out)")]
LossOpt = Annotated[str | None, _opt("--loss", "finetune: fp32 (plain cross-entropy), chunked or fused (default fp32)")]
LossChunksOpt = Annotated[int | None, _opt("--loss-chunks", "finetune: chunks of a chunked/fused loss (default 8)",
                                           human_int("--loss-chunks"))]
DropoutOpt = Annotated[float | None, _opt("--dropout", "finetune: hidden/attention dropout of the config (default 0)",
                                          human_float("--dropout", allow_zero=True, maximum=1))]
OffloadOpt = Annotated[str | None, _opt("--offload", "finetune: CPU offload of optimizer, params and/or activations (comma list)")]
OptInBwdOpt = Annotated[bool, _opt("--optimizer-in-backward", "finetune: step each parameter as its gradient arrives")]
ContextOpt = Annotated[float | None, _opt("--cuda-context-gib", "finetune: CUDA context per GPU, GiB (default 0.5)",
                                          human_float("--cuda-context-gib", allow_zero=True, maximum=100))]
ActivationsOpt = Annotated[str | None, _opt("--activations", "train: per-tensor (default) or textbook (Korthikanti et al. 2022)")]
FragOpt = Annotated[float | None, _opt("--fragmentation", "finetune: allocator reserved/allocated - 1 (default 0.05)",
                                       human_float("--fragmentation", allow_zero=True, maximum=10))]


def memory(
    model: ModelArg,
    mode: Annotated[MemoryMode, typer.Option("--mode", help="infer, train or finetune")] = MemoryMode.infer,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    kv_dtype: KvDtypeOpt = None,
    batch: BatchOpt = 1,
    seq: SeqOpt = 2048,
    gpu: GpuOptional = None,
    num_gpus: NumGpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    dp: DpOpt = None,
    cp: CpOpt = None,
    sequence_parallel: SpOpt = False,
    zero: ZeroOpt = 0,
    recipe: Annotated[str, typer.Option("--recipe", help="bf16-adam, bf16-adam-fp32-grads, fp32-adam, sgd-momentum")] = "bf16-adam",
    recompute: RecomputeOpt = Recompute.none,
    flash: Annotated[bool, typer.Option("--flash/--no-flash", help="FlashAttention: no stored score matrix")] = True,
    group_size: Annotated[int | None, typer.Option(
        "--group-size", parser=human_int("--group-size"), help="int4/int8 quantisation group size")] = None,
    reserve_gib: ReserveOpt = 1.0,
    method: MethodOpt = None,
    lora_rank: LoraRankOpt = None,
    lora_alpha: LoraAlphaOpt = None,
    lora_targets: LoraTargetsOpt = None,
    lora_dropout: LoraDropoutOpt = None,
    optimizer: OptimizerOpt = None,
    precision: PrecisionOpt = None,
    quant: QuantOpt = None,
    no_double_quant: DoubleQuantOpt = False,
    grad_accum: GradAccumOpt = None,
    compile_: CompileOpt = False,
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

    --mode infer: --batch requests of --seq tokens (input + output) each. --mode train: --batch is the
    micro-batch, --seq the training sequence length."""
    from calc.cli.common import placement
    from calc.report.render import emit, memory_view
    from calc.sources.catalog import load_gpu, load_model
    from calc.specs import Parallelism

    finetune_only = {"--method": method, "--lora-rank": lora_rank, "--lora-alpha": lora_alpha, "--lora-targets": lora_targets,
                     "--lora-dropout": lora_dropout, "--optimizer": optimizer, "--precision": precision, "--quant": quant,
                     "--no-double-quant": no_double_quant, "--grad-accum": grad_accum, "--compile": compile_, "--loss": loss,
                     "--loss-chunks": loss_chunks, "--dropout": dropout, "--offload": offload,
                     "--optimizer-in-backward": optimizer_in_backward, "--cuda-context-gib": cuda_context_gib,
                     "--fragmentation": fragmentation}
    if mode is not MemoryMode.train:
        refuse("--activations", activations, "picks the training activation model; use --mode train (finetune is per-tensor)")
    if mode is MemoryMode.finetune:
        from calc.cli.finetune import finetune_memory_command

        for flag, value, default in (("--kv-dtype", kv_dtype, None), ("--group-size", group_size, None),
                                     ("--recipe", recipe, "bf16-adam")):
            refuse(flag, value, "is not a fine-tuning option (use --method, --optimizer, --precision)", default)
        refuse("--reserve-gib", reserve_gib, "fine-tuning splits the reserve: use --cuda-context-gib and --fragmentation", 1.0)
        finetune_memory_command(model, gpu=gpu, dtype=dtype, batch=batch, seq=seq, recompute=recompute.value, flash=flash,
                                plan=placement(tp, pp, dp, cp, sequence_parallel, num_gpus, spread="dp"), zero=zero,
                                options=finetune_only, as_json=as_json, explain=explain)
        return
    for flag, value in finetune_only.items():
        refuse(flag, value, "is a fine-tuning option; use --mode finetune")
    if mode is MemoryMode.infer:
        why = "is a training option; drop it or use --mode train"
        for flag, value, default in (("--dp", dp, None), ("--cp", cp, None), ("--sp", sequence_parallel, False),
                                     ("--zero", zero, 0), ("--recipe", recipe, "bf16-adam"),
                                     ("--recompute", recompute.value, "none"), ("--no-flash", not flash, False)):
            refuse(flag, value, why, default)
    else:
        why = "is a serving option; training memory uses --recipe for its dtypes"
        for flag, value, default in (("--kv-dtype", kv_dtype, None), ("--group-size", group_size, None),
                                     ("--dtype", dtype, DEFAULT_DTYPE)):
            refuse(flag, value, why, default)
    from calc.memory import inference_memory, training_memory

    m = load_model(model)
    g = load_gpu(gpu) if gpu else None
    plan = placement(tp, pp, dp, cp, sequence_parallel, num_gpus, spread="tp" if mode is MemoryMode.infer else "dp")
    if mode is MemoryMode.infer:
        result = inference_memory(m, gpu=g, plan=Parallelism(tp=plan.tp, pp=plan.pp), dtype=dtype, kv_dtype=kv_dtype,
                                  batch=batch, seq=seq, group_size=group_size, reserve_gib=reserve_gib)
    else:
        result = training_memory(m, gpu=g, plan=plan, recipe=recipe, zero=zero, micro_batch=batch, seq=seq,
                                 recompute=recompute.value, flash=flash, reserve_gib=reserve_gib,
                                 activations_model=activations or "per-tensor")
    emit(result, as_json, explain, memory_view)
