"""Training commands: `mfu`, `train-time`."""

from __future__ import annotations

from typing import Annotated

import typer

from calc.cli.options import (
    DEFAULT_DTYPE,
    CalibrationOpt,
    CausalOpt,
    ExplainOpt,
    GlobalBatchOpt,
    GpuOpt,
    GpuOptional,
    JsonOpt,
    MfuOpt,
    ModelArg,
    ModelArgOptional,
    NumGpusOpt,
    OldModelOpt,
    OldPriceOpt,
    PriceOpt,
    SeqOpt,
    TokensOpt,
    human_float,
)

PeakDtypeOpt = Annotated[str, typer.Option("--dtype", help="compute dtype of the peak: bf16, fp16, fp8, tf32")]


def mfu(
    model: ModelArgOptional = None,
    gpu: GpuOptional = None,
    num_gpus: NumGpusOpt = None,
    seq: SeqOpt = 2048,
    tokens: TokensOpt = None,
    gpu_hours: Annotated[float | None, typer.Option(
        "--gpu-hours", parser=human_float("--gpu-hours"), help="GPU-hours the run took, e.g. 6.4M")] = None,
    tokens_per_s: Annotated[float | None, typer.Option(
        "--tokens-per-s", parser=human_float("--tokens-per-s"), help="observed tokens/s of all GPUs together")] = None,
    step_time: Annotated[float | None, typer.Option(
        "--step-time", parser=human_float("--step-time"), help="seconds per optimizer step (with --global-batch)")] = None,
    global_batch: GlobalBatchOpt = None,
    dtype: PeakDtypeOpt = DEFAULT_DTYPE,
    causal: CausalOpt = False,
    calibration: CalibrationOpt = None,
    old_model: OldModelOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Model FLOPs utilisation from a finished run (--tokens --gpu-hours), observed --tokens-per-s, or
    --step-time with --global-batch: exactly one of the three."""
    from calc.cli.common import load_calibration, model_arg, warn
    from calc.errors import LLMCalcError
    from calc.report.render import emit, mfu_view
    from calc.sources.catalog import load_gpu
    from calc.training import mfu as engine

    sources = {"--tokens/--gpu-hours": tokens is not None or gpu_hours is not None,
               "--tokens-per-s": tokens_per_s is not None,
               "--step-time/--global-batch": step_time is not None or global_batch is not None}
    chosen = [name for name, given in sources.items() if given]
    if gpu is None:
        raise LLMCalcError("--gpu", "missing; name the GPU the run used (see `llmcalc gpus`)")
    if len(chosen) != 1:
        raise LLMCalcError("--tokens", "give exactly one of: --tokens with --gpu-hours, --tokens-per-s, "
                           "or --step-time with --global-batch" + (f" (got {' and '.join(chosen)})" if chosen else ""))
    for a, b in (("--tokens", "--gpu-hours"), ("--step-time", "--global-batch")):
        values = {"--tokens": tokens, "--gpu-hours": gpu_hours, "--step-time": step_time, "--global-batch": global_batch}
        if (values[a] is None) != (values[b] is None):
            missing = a if values[a] is None else b
            raise LLMCalcError(missing, f"{a} and {b} go together; give both")
    if tokens is not None and num_gpus is not None:
        raise LLMCalcError("--num-gpus", "a finished run's MFU needs only --tokens and --gpu-hours; drop --num-gpus")
    result = engine.mfu(
        model_arg(model, old_model), load_gpu(gpu), num_gpus=num_gpus or 1, seq=seq, dtype=dtype, tokens=tokens,
        gpu_hours=gpu_hours, tokens_per_s=tokens_per_s, step_time_s=step_time, global_batch=global_batch,
        causal=causal, calibration=load_calibration(calibration),
    )
    if result.mfu_with_attention > 1:
        warn(chosen[0], f"implies MFU {result.mfu_with_attention:.1%} > 100% of {result.gpu} peak: "
             "the throughput or GPU count is not physically possible; check the inputs")
    emit(result, as_json, explain, mfu_view)


def train_time(
    model: ModelArg,
    gpu: GpuOpt,
    num_gpus: NumGpusOpt,
    tokens: TokensOpt,
    seq: SeqOpt = 2048,
    mfu_assumed: MfuOpt = None,
    price: PriceOpt = None,
    old_price: OldPriceOpt = None,
    dtype: PeakDtypeOpt = DEFAULT_DTYPE,
    causal: CausalOpt = False,
    calibration: CalibrationOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Days, GPU-hours and cost to train on D tokens at an MFU (default 0.4, or --mfu)."""
    from calc.cli.common import check_context, load_calibration, price_for, training_fit, warn
    from calc.errors import LLMCalcError
    from calc.report.render import emit, train_time_view
    from calc.sources.catalog import load_gpu, load_model
    from calc.units import check_fraction

    if num_gpus is None:
        raise LLMCalcError("--num-gpus", "missing; how many GPUs train the model?")
    if tokens is None:
        raise LLMCalcError("--tokens", "missing; give the training tokens, e.g. 2T")
    m, g = load_model(model), load_gpu(gpu)
    try:
        check_context(m, seq, "--seq")
    except LLMCalcError as exc:
        warn("--seq", exc.problem + " (training beyond it extends the context)")
    training_fit(m, g, num_gpus, seq)
    from calc.training import mfu as engine

    result = engine.train_time(
        m, g, num_gpus=num_gpus, tokens=tokens, seq=seq, mfu_assumed=check_fraction(mfu_assumed or 0.4, "--mfu"),
        dtype=dtype, price_per_gpu_hour=price_for(price, g.name, old_price), causal=causal,
        calibration=load_calibration(calibration),
    )
    emit(result, as_json, explain, train_time_view)
