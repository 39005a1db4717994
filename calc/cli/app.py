"""The llmcalc command line: declarations, parsing and rendering only; numbers come from the engine.

Engine modules are imported inside each command so `llmcalc --help` stays fast.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from calc.errors import LLMCalcError

app = typer.Typer(
    name="llmcalc",
    help="Exact, explained sizing arithmetic for LLMs: parameters, FLOPs, memory, MFU, latency, concurrency.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}


class Mode(StrEnum):
    infer = "infer"
    train = "train"


class Recompute(StrEnum):
    none = "none"
    selective = "selective"
    full = "full"


ModelArg = Annotated[str, typer.Argument(help="catalog name (see `llmcalc models`), our YAML, or a HF config.json")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
ExplainOpt = Annotated[bool, typer.Option("--explain", help="show the formulas with the numbers substituted")]
GpuOpt = Annotated[str, typer.Option("--gpu", help="GPU name (see `llmcalc gpus`) or a GPU YAML")]
NumGpusOpt = Annotated[int, typer.Option("--num-gpus", help="number of GPUs (TP degree for serving)")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="fp32, bf16, fp16, fp8, int8, int4")]
KvDtypeOpt = Annotated[str | None, typer.Option("--kv-dtype", help="KV-cache dtype (default: --dtype)")]
CausalOpt = Annotated[bool, typer.Option("--causal", help="count only the causal half of the score matrix")]
CalibrationOpt = Annotated[str | None, typer.Option("--calibration", help="YAML from `llmcalc bench --save`")]
PeakDtypeOpt = Annotated[str, typer.Option("--dtype", help="compute dtype of the peak (bf16, fp16, fp8, tf32)")]
ReserveOpt = Annotated[float, typer.Option("--reserve-gib", help="per-GPU reserve for CUDA context and slack, GiB")]


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks on errors")] = False) -> None:
    _state["debug"] = debug


def _calibration(path: str | None):  # noqa: ANN202
    if path is None:
        return None
    from calc.hardware.calibration import load_calibration

    return load_calibration(path)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """List the model catalog with exact parameter counts."""
    from calc.model.params import count_params
    from calc.report.render import console, emit_json, models_view
    from calc.sources.catalog import list_models

    rows = []
    for m in list_models():
        p = count_params(m)
        rows.append({"name": m.name, "aliases": m.aliases, "description": m.description, "num_layers": m.num_layers,
                     "hidden_size": m.hidden_size, "num_heads": m.num_heads, "num_kv_heads": m.kv_heads,
                     "total_params": p.total_params, "active_params": p.active_params})
    if as_json:
        emit_json({"models": rows})
        return
    console.print(models_view(rows))


@app.command()
def gpus(as_json: JsonOpt = False) -> None:
    """List the GPU catalog with derived and datasheet dense peaks."""
    from calc.hardware.peaks import summarize_gpu
    from calc.report.render import console, emit_json, gpus_view
    from calc.sources.catalog import list_gpus

    summaries = [summarize_gpu(g) for g in list_gpus()]
    if as_json:
        emit_json(summaries)
        return
    console.print(gpus_view(summaries))


@app.command()
def show(name: Annotated[str, typer.Argument(help="a model or GPU name, or a spec file")], as_json: JsonOpt = False) -> None:
    """Show one model or GPU spec (GPUs with their peak derivation)."""
    from calc.hardware.peaks import summarize_gpu
    from calc.report.render import console, emit, gpu_detail_view, spec_view
    from calc.sources.catalog import load_gpu, load_model

    try:
        spec = load_model(name, "NAME")
    except LLMCalcError as model_error:
        try:
            gpu = load_gpu(name, "NAME")
        except LLMCalcError:
            raise model_error from None
        emit(summarize_gpu(gpu), as_json, False, gpu_detail_view)
        return
    if as_json:
        from calc.report.render import emit_json

        emit_json(spec)
        return
    console.print(spec_view(spec))


@app.command()
def params(model: ModelArg, as_json: JsonOpt = False, explain: ExplainOpt = False) -> None:
    """Exact parameter count per component, beside the textbook 12*L*H^2 + V*H."""
    from calc.model.params import count_params
    from calc.report.render import emit, params_view
    from calc.sources.catalog import load_model

    emit(count_params(load_model(model)), as_json, explain, params_view)


@app.command()
def flops(
    model: ModelArg,
    batch: Annotated[int, typer.Option("--batch", "-b", help="sequences B")] = 1,
    seq: Annotated[int, typer.Option("--seq", "-s", help="new tokens per sequence S")] = 2048,
    context: Annotated[int | None, typer.Option("--context", help="tokens attended S' (default S)")] = None,
    causal: CausalOpt = False,
    generate: Annotated[int | None, typer.Option("--generate", help="also decode T tokens after the S-token prompt")] = None,
    intensity: Annotated[bool, typer.Option("--intensity", help="per-matmul FLOPs/byte of prefill and one decode step")] = False,
    fused: Annotated[bool, typer.Option("--fused", help="GEMM shapes of separate vs fused QKV + MLP-in (seed 000)")] = False,
    dtype: Annotated[str, typer.Option("--dtype", help="element size for bytes moved")] = "bf16",
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """FLOPs of a forward pass and a training step, per token beside 2N and 6N; optionally decode,
    arithmetic intensity and the fused parallel-layer GEMM."""
    from calc.model import flops as engine
    from calc.report.render import console, emit, emit_json, flops_view, gemm_view
    from calc.sources.catalog import load_model

    m = load_model(model)
    result = engine.forward_flops(m, batch, seq, context, causal)
    extras = {}
    if generate is not None:
        extras["decode"] = engine.decode_flops(m, batch, seq, generate)
    if intensity:
        extras["intensity_prefill"] = engine.arithmetic_intensity(m, batch, seq, result.context, dtype)
        extras["intensity_decode"] = engine.arithmetic_intensity(m, batch, 1, result.context + 1, dtype)
    if fused:
        extras["fused"] = engine.fused_parallel_shapes(m, batch * seq, dtype)
    if as_json:
        emit_json({**result.model_dump(mode="json"), **extras})
        return
    emit(result, False, explain, flops_view)
    for name, extra in extras.items():
        console.print(gemm_view(name, extra))


@app.command()
def memory(
    model: ModelArg,
    mode: Annotated[Mode, typer.Option("--mode", help="infer or train")] = Mode.infer,
    dtype: DtypeOpt = "fp16",
    kv_dtype: KvDtypeOpt = None,
    batch: Annotated[int, typer.Option("--batch", "-b", help="requests (infer) or micro-batch (train)")] = 1,
    seq: Annotated[int, typer.Option("--seq", "-s", help="tokens per sequence (input + output)")] = 2048,
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU to check the fit on")] = None,
    num_gpus: Annotated[int | None, typer.Option("--num-gpus", help="GPUs (default tp*pp*dp*cp)")] = None,
    tp: Annotated[int, typer.Option("--tp", help="tensor-parallel degree")] = 1,
    pp: Annotated[int, typer.Option("--pp", help="pipeline-parallel degree")] = 1,
    dp: Annotated[int, typer.Option("--dp", help="data-parallel degree")] = 1,
    cp: Annotated[int, typer.Option("--cp", help="context-parallel degree")] = 1,
    sequence_parallel: Annotated[bool, typer.Option("--sp", help="Megatron sequence parallelism")] = False,
    zero: Annotated[int, typer.Option("--zero", help="ZeRO stage 0-3")] = 0,
    recipe: Annotated[str, typer.Option("--recipe", help="bf16-adam, bf16-adam-fp32-grads, fp32-adam, sgd-momentum")] = "bf16-adam",
    recompute: Annotated[Recompute, typer.Option("--recompute")] = Recompute.none,
    flash: Annotated[bool, typer.Option("--flash/--no-flash", help="FlashAttention: no stored score matrix")] = True,
    group_size: Annotated[int | None, typer.Option("--group-size", help="int4/int8 quantisation group size")] = None,
    reserve_gib: ReserveOpt = 1.0,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Memory per category and per GPU; with --gpu, whether it fits and the smallest GPU count that does."""
    from calc.memory import inference_memory, training_memory
    from calc.report.render import emit, memory_view
    from calc.sources.catalog import load_gpu, load_model
    from calc.specs import Parallelism

    m = load_model(model)
    g = load_gpu(gpu) if gpu else None
    plan = _plan(tp, pp, dp, cp, sequence_parallel, num_gpus, mode)
    if mode is Mode.infer:
        result = inference_memory(m, gpu=g, plan=Parallelism(tp=plan.tp, pp=plan.pp), dtype=dtype, kv_dtype=kv_dtype,
                                  batch=batch, seq=seq, group_size=group_size, reserve_gib=reserve_gib)
    else:
        result = training_memory(m, gpu=g, plan=plan, recipe=recipe, zero=zero, micro_batch=batch, seq=seq,
                                 recompute=recompute.value, flash=flash, reserve_gib=reserve_gib)
    emit(result, as_json, explain, memory_view)


def _plan(tp: int, pp: int, dp: int, cp: int, sp: bool, num_gpus: int | None, mode: Mode):  # noqa: ANN202
    from calc.specs import Parallelism

    for flag, value in (("--tp", tp), ("--pp", pp), ("--dp", dp), ("--cp", cp)):
        if value < 1:
            raise LLMCalcError(flag, f"must be >= 1, got {value}")
    if num_gpus is not None:
        if num_gpus < 1:
            raise LLMCalcError("--num-gpus", f"must be >= 1, got {num_gpus}")
        if (tp, pp, dp, cp) == (1, 1, 1, 1):
            tp = num_gpus if mode is Mode.infer else 1
            dp = 1 if mode is Mode.infer else num_gpus
        elif tp * pp * dp * cp != num_gpus:
            raise LLMCalcError("--num-gpus", f"{num_gpus} != tp*pp*dp*cp = {tp * pp * dp * cp}; drop one or make them agree")
    return Parallelism(tp=tp, pp=pp, dp=dp, cp=cp, sequence_parallel=sp)


def _number(text: str | None, flag: str) -> float | None:
    from calc.units import parse_human_number

    return None if text is None else parse_human_number(text, flag)


@app.command()
def mfu(
    model: Annotated[str, typer.Option("--model", help="model name or config")],
    gpu: GpuOpt,
    num_gpus: NumGpusOpt = 1,
    seq: Annotated[int, typer.Option("--seq", help="training sequence length")] = 2048,
    tokens: Annotated[str | None, typer.Option("--tokens", help="tokens trained, e.g. 15T")] = None,
    gpu_hours: Annotated[str | None, typer.Option("--gpu-hours", help="GPU-hours used, e.g. 6.4M")] = None,
    tokens_per_s: Annotated[str | None, typer.Option("--tokens-per-s", help="observed cluster tokens/s")] = None,
    step_time: Annotated[float | None, typer.Option("--step-time", help="seconds per optimizer step")] = None,
    global_batch: Annotated[str | None, typer.Option("--global-batch", help="sequences per step")] = None,
    dtype: PeakDtypeOpt = "bf16",
    causal: CausalOpt = False,
    calibration: CalibrationOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Model FLOPs utilisation from a finished run, observed tokens/s, or step time."""
    from calc.report.render import emit, mfu_view
    from calc.sources.catalog import load_gpu, load_model
    from calc.training import mfu as perf

    result = perf.mfu(
        load_model(model, "--model"), load_gpu(gpu), num_gpus=num_gpus, seq=seq, dtype=dtype,
        tokens=_number(tokens, "--tokens"), gpu_hours=_number(gpu_hours, "--gpu-hours"),
        tokens_per_s=_number(tokens_per_s, "--tokens-per-s"), step_time_s=step_time,
        global_batch=_number(global_batch, "--global-batch"), causal=causal, calibration=_calibration(calibration),
    )
    emit(result, as_json, explain, mfu_view)


@app.command("train-time")
def train_time(
    model: ModelArg,
    gpu: GpuOpt,
    num_gpus: NumGpusOpt,
    tokens: Annotated[str, typer.Option("--tokens", help="training tokens D, e.g. 2T")],
    seq: Annotated[int, typer.Option("--seq", help="training sequence length")] = 2048,
    mfu_assumed: Annotated[float, typer.Option("--mfu", help="assumed MFU, a fraction")] = 0.4,
    price: Annotated[float | None, typer.Option("--price-per-gpu-hour", help="price per GPU-hour")] = None,
    dtype: PeakDtypeOpt = "bf16",
    causal: CausalOpt = False,
    calibration: CalibrationOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Days, GPU-hours and cost to train on D tokens at an assumed MFU."""
    from calc.report.render import emit, train_time_view
    from calc.sources.catalog import load_gpu, load_model
    from calc.training import mfu as perf

    result = perf.train_time(
        load_model(model), load_gpu(gpu), num_gpus=num_gpus, tokens=_number(tokens, "--tokens"), seq=seq,
        mfu_assumed=mfu_assumed, dtype=dtype, price_per_gpu_hour=price, causal=causal,
        calibration=_calibration(calibration),
    )
    emit(result, as_json, explain, train_time_view)


@app.command()
def latency(
    model: ModelArg,
    gpu: GpuOpt,
    prompt: Annotated[int, typer.Option("--prompt", help="prompt tokens P per request")],
    num_gpus: NumGpusOpt = 1,
    batch: Annotated[int, typer.Option("--batch", "-b", help="concurrent requests")] = 1,
    output: Annotated[int, typer.Option("--output", help="generated tokens T")] = 128,
    dtype: DtypeOpt = "fp16",
    kv_dtype: KvDtypeOpt = None,
    causal: CausalOpt = False,
    target_ttft_ms: Annotated[float | None, typer.Option("--target-ttft-ms", help="required TTFT to judge")] = None,
    calibration: CalibrationOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Time to first token and per output token, by roofline (TP = number of GPUs)."""
    from calc.report.render import emit, latency_view
    from calc.serving import latency as perf
    from calc.sources.catalog import load_gpu, load_model
    from calc.units import check_positive

    target = None if target_ttft_ms is None else check_positive(target_ttft_ms, "--target-ttft-ms") / 1e3
    result = perf.latency(
        load_model(model), load_gpu(gpu), num_gpus=num_gpus, batch=batch, prompt=prompt, output=output,
        dtype=dtype, kv_dtype=kv_dtype, causal=causal, calibration=_calibration(calibration), target_ttft_s=target,
    )
    emit(result, as_json, explain, latency_view)


@app.command()
def concurrency(
    model: ModelArg,
    gpu: GpuOpt,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="input + output tokens per request")],
    num_gpus: NumGpusOpt = 1,
    dtype: DtypeOpt = "fp16",
    kv_dtype: KvDtypeOpt = None,
    reserve_gib: Annotated[float | None, typer.Option("--reserve-gib", help="non-torch memory per GPU, GiB (default 0.5)")] = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Maximum concurrent requests whose KV cache fits beside the weights, and vs context length."""
    from calc.report.render import concurrency_view, emit
    from calc.serving import latency as perf
    from calc.sources.catalog import load_gpu, load_model

    if max_tokens < 1:
        raise LLMCalcError("--max-tokens", f"must be >= 1, got {max_tokens}")
    from calc.serving.assumptions import ServingAssumptions

    result = perf.concurrency(load_model(model), load_gpu(gpu), num_gpus=num_gpus, max_tokens=max_tokens,
                              dtype=dtype, kv_dtype=kv_dtype,
                              assumptions=ServingAssumptions(**({} if reserve_gib is None else {"cuda_context_gib": reserve_gib})))
    emit(result, as_json, explain, concurrency_view)


class ReportFormat(StrEnum):
    table = "table"
    markdown = "markdown"


@app.command()
def report(
    model: ModelArg,
    gpu: GpuOpt,
    num_gpus: NumGpusOpt = 1,
    mode: Annotated[Mode, typer.Option("--mode", help="infer or train")] = Mode.infer,
    dtype: DtypeOpt = "fp16",
    kv_dtype: KvDtypeOpt = None,
    batch: Annotated[int, typer.Option("--batch", "-b", help="requests (infer) or micro-batch (train)")] = 1,
    prompt: Annotated[int, typer.Option("--prompt", help="prompt tokens (infer)")] = 1024,
    output: Annotated[int, typer.Option("--output", help="generated tokens (infer)")] = 256,
    seq: Annotated[int, typer.Option("--seq", help="sequence length (train)")] = 4096,
    tokens: Annotated[str, typer.Option("--tokens", help="training tokens (train), e.g. 2T")] = "1T",
    mfu_assumed: Annotated[float, typer.Option("--mfu", help="assumed MFU (train)")] = 0.4,
    price: Annotated[float | None, typer.Option("--price-per-gpu-hour", help="price per GPU-hour")] = None,
    zero: Annotated[int, typer.Option("--zero", help="ZeRO stage (train)")] = 1,
    calibration: CalibrationOpt = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="table or markdown")] = ReportFormat.table,
    plot: Annotated[str | None, typer.Option("--plot", help="write the memory chart to FILE.png or FILE.svg")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One page: params, FLOPs, memory bars, fit, concurrency, TTFT/TPOT or training days, assumptions."""
    from calc.report.build import build_report
    from calc.report.views import report_markdown, report_view
    from calc.sources.catalog import load_gpu, load_model

    if num_gpus < 1:
        raise LLMCalcError("--num-gpus", f"must be >= 1, got {num_gpus}")
    result = build_report(
        load_model(model), load_gpu(gpu), num_gpus=num_gpus, mode=mode.value, dtype=dtype, kv_dtype=kv_dtype,
        batch=batch, prompt=prompt, output=output, seq=seq, tokens=_number(tokens, "--tokens"), mfu_assumed=mfu_assumed,
        price_per_gpu_hour=price, zero=zero, calibration=_calibration(calibration),
    )
    if plot:
        if result.chart is None:
            raise LLMCalcError("--plot", "the memory chart is drawn for --mode infer")
        from calc.report.plot import plot_memory_chart

        plot_memory_chart(result.chart, f"{result.model} on {result.num_gpus} x {result.gpu}", plot)
    if as_json:
        from calc.report.render import emit_json

        emit_json(result)
    elif fmt is ReportFormat.markdown:
        sys.stdout.write(report_markdown(result) + "\n")
    else:
        from calc.report.render import console

        console.print(report_view(result))


@app.command()
def compare(
    gpu_names: Annotated[list[str], typer.Argument(help="GPU names to compare", metavar="GPU...")],
    model: Annotated[str, typer.Option("--model", help="model name or config")],
    num_gpus: NumGpusOpt = 1,
    dtype: DtypeOpt = "fp16",
    batch: Annotated[int, typer.Option("--batch", "-b", help="concurrent requests")] = 1,
    prompt: Annotated[int, typer.Option("--prompt", help="prompt tokens")] = 1024,
    output: Annotated[int, typer.Option("--output", help="generated tokens")] = 256,
    prices: Annotated[list[str] | None, typer.Option("--price", help="GPU=price per GPU-hour, repeatable")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The same serving workload on several GPUs side by side (cost per million tokens with --price)."""
    from calc.report.build import compare_gpus
    from calc.sources.catalog import load_gpu, load_model

    gpus = [load_gpu(name, "GPU") for name in gpu_names]
    price_map: dict[str, float] = {}
    for item in prices or []:
        name, _, value = item.partition("=")
        if not value:
            raise LLMCalcError("--price", f"{item!r}: write GPU=PRICE, e.g. h100=2.5")
        price_map[load_gpu(name, "--price").name] = _number(value, "--price")
    rows = compare_gpus(load_model(model, "--model"), gpus, num_gpus=num_gpus, dtype=dtype, batch=batch,
                        prompt=prompt, output=output, prices=price_map)
    if as_json:
        from calc.report.render import emit_json

        emit_json(rows)
        return
    from calc.report.render import console
    from calc.report.views import compare_view

    console.print(compare_view(rows, model, num_gpus))


@app.command()
def bench(
    dtype: Annotated[str, typer.Option("--dtype", help="bf16, fp16, fp8, tf32, fp32")] = "bf16",
    sizes: Annotated[str | None, typer.Option("--sizes", help="square GEMM sizes, e.g. 1024,4096,8192")] = None,
    model: Annotated[str | None, typer.Option("--model", help="also time fused vs separate QKV + MLP-in GEMMs")] = None,
    batch_tokens: Annotated[int, typer.Option("--batch-tokens", help="tokens (rows) of the model GEMMs")] = 4096,
    repeats: Annotated[int, typer.Option("--repeats", help="timed runs per measurement")] = 20,
    save: Annotated[str | None, typer.Option("--save", help="write a calibration YAML for --calibration")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure achievable GEMM TFLOPS, copy bandwidth and the fused parallel-layer speedup (needs torch)."""
    from calc.hardware.bench import calibration_from, run_bench
    from calc.report.render import bench_view, emit

    size_list = _int_list(sizes, "--sizes") if sizes else None
    if repeats < 1:
        raise LLMCalcError("--repeats", f"must be >= 1, got {repeats}")
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True, disable=as_json) as bar:
        task = bar.add_task("bench", total=None)
        result = run_bench(dtype, size_list, model, batch_tokens, repeats,
                           progress=lambda what, n: bar.update(task, description=what, advance=n))
    if save:
        from calc.hardware.calibration import save_calibration

        save_calibration(calibration_from(result), save)
    emit(result, as_json, False, bench_view)


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise LLMCalcError(flag, f"{text!r} is not a comma-separated list of integers, e.g. 1024,4096") from None
    if not values or any(v < 1 or v > 65536 for v in values):
        raise LLMCalcError(flag, f"sizes must be integers in 1..65536, got {text!r}")
    return values


def _fail(message: str) -> None:
    sys.stderr.write(f"llmcalc: error: {message}\n")
    sys.exit(2)


def main() -> None:
    """Console entry point: every user error is one line on stderr and exit code 2."""
    try:  # typer >= 0.2x vendors click; older typer uses click itself
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click import ClickException  # type: ignore[no-redef]

    try:
        code = app(standalone_mode=False)
    except LLMCalcError as exc:
        if _state["debug"]:
            raise
        _fail(str(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted")
    except ClickException as exc:
        if _state["debug"]:
            raise
        _fail(exc.format_message().replace("\n", " "))
    except (ValueError, OverflowError, ArithmeticError, RecursionError) as exc:
        if _state["debug"]:
            raise
        _fail(f"{type(exc).__name__}: {exc}".replace("\n", " "))
    sys.exit(code if isinstance(code, int) else 0)
