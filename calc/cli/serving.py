"""Serving commands: `latency`, `concurrency`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from calc.cli.options import (
    DEFAULT_DTYPE,
    BatchOpt,
    CalibrationOpt,
    CausalOpt,
    DtypeOpt,
    ExplainOpt,
    GpuOpt,
    JsonOpt,
    KvDtypeOpt,
    MaxModelLenOpt,
    ModelArg,
    NumGpusOpt,
    OutputOpt,
    PpOpt,
    PromptOpt,
    ReserveOpt,
    TpOpt,
    alias,
    human_float,
    human_int,
)


def _serving_gpus(num_gpus: int | None, tp: int | None, pp: int | None) -> int:
    """Serving places the model by TP over all GPUs here; --tp is the same number as --num-gpus."""
    from calc.errors import LLMCalcError

    if pp not in (None, 1):
        raise LLMCalcError("--pp", "latency/concurrency model TP only; `llmcalc serve` ranks TP x PP layouts")
    if tp is not None and num_gpus is not None and tp != num_gpus:
        raise LLMCalcError("--tp", f"{tp} != --num-gpus {num_gpus}: here every GPU is a TP rank; give one of them")
    return tp or num_gpus or 1


def _fits(m: Any, gpu: Any, num_gpus: int, dtype: str, kv_dtype: str | None, batch: int, tokens: int,
          reserve_gib: float) -> None:
    from calc.cli.common import require_fit
    from calc.memory import inference_memory
    from calc.specs import Parallelism

    require_fit(inference_memory(m, gpu=gpu, plan=Parallelism(tp=num_gpus), dtype=dtype, kv_dtype=kv_dtype,
                                 batch=batch, seq=tokens, reserve_gib=reserve_gib))


def latency(
    model: ModelArg,
    gpu: GpuOpt,
    prompt: PromptOpt,
    num_gpus: NumGpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    batch: BatchOpt = 1,
    output: OutputOpt = 128,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    kv_dtype: KvDtypeOpt = None,
    causal: CausalOpt = False,
    ttft_ms: Annotated[float | None, typer.Option(
        "--ttft-ms", parser=human_float("--ttft-ms"), help="TTFT target to judge, ms")] = None,
    old_ttft: Annotated[float | None, typer.Option(
        "--target-ttft-ms", parser=human_float("--target-ttft-ms"), hidden=True)] = None,
    reserve_gib: ReserveOpt = 1.0,
    calibration: CalibrationOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Time to first token and per output token for a static batch of identical requests, by roofline
    (TP = number of GPUs). Refused when the batch does not fit in memory."""
    from calc.cli.common import check_context, load_calibration
    from calc.report.render import emit, latency_view
    from calc.serving import latency as engine
    from calc.sources.catalog import load_gpu, load_model

    n = _serving_gpus(num_gpus, tp, pp)
    target = alias(ttft_ms, old_ttft, "--ttft-ms", "--target-ttft-ms")
    m, g = load_model(model), load_gpu(gpu)
    check_context(m, prompt + output, "--prompt")
    engine.check_serving_gpus(m, n)
    _fits(m, g, n, dtype, kv_dtype, batch, prompt + output, reserve_gib)
    result = engine.latency(
        m, g, num_gpus=n, batch=batch, prompt=prompt, output=output, dtype=dtype, kv_dtype=kv_dtype, causal=causal,
        calibration=load_calibration(calibration), target_ttft_s=None if target is None else target / 1e3,
    )
    emit(result, as_json, explain, latency_view)


def concurrency(
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
    reserve_gib: ReserveOpt = 1.0,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Maximum concurrent requests of --max-model-len tokens (default: the model's context window, as
    vLLM does) whose KV cache fits beside the weights, and vs context length."""
    from calc.cli.common import check_context
    from calc.report.render import concurrency_view, emit
    from calc.serving import latency as engine
    from calc.sources.catalog import load_gpu, load_model

    n = _serving_gpus(num_gpus, tp, pp)
    m, g = load_model(model), load_gpu(gpu)
    tokens = alias(max_model_len, old_max_tokens, "--max-model-len", "--max-tokens")
    if tokens is None:
        tokens = getattr(m, "context_window", None) or m.max_position_embeddings
    check_context(m, tokens, "--max-model-len")
    result = engine.concurrency(m, g, num_gpus=n, max_tokens=tokens, dtype=dtype, kv_dtype=kv_dtype,
                                reserve_gib=reserve_gib)
    emit(result, as_json, explain, concurrency_view)
