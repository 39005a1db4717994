"""`bench`, `validate`, `calibrate`: measure this machine (needs torch) and fit efficiencies to runs.

`bench` alone: square GEMM sweep + copy bandwidth. `bench MODEL`: the model's own ops at real,
TP-sliced shapes; `--save` writes the calibration every time model reads with `--calibration`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from calc.cli.options import (
    DEFAULT_DTYPE,
    CalibrationOpt,
    Engine,
    EngineOpt,
    ExplainOpt,
    GpuOptional,
    JsonOpt,
    ModelArg,
    ModelArgOptional,
    OldModelOpt,
    alias,
    human_int,
    option_given,
    refuse,
)

SizesOpt = Annotated[str | None, typer.Option(
    "--sizes", help="with MODEL: small (CI speed) or full; without: square GEMM sizes, e.g. 1024,4096,8192")]
RepeatsOpt = Annotated[int | None, typer.Option(
    "--repeats", parser=human_int("--repeats", maximum=10000), help="timed runs per measurement")]
SaveOpt = Annotated[str | None, typer.Option("--save", help="write a calibration YAML for --calibration")]


def _progress(as_json: bool) -> Any:
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    # Off when stderr is not a terminal: a transient bar there leaves a blank line before any error.
    return Progress(console=console, transient=True, disable=as_json or not console.is_terminal)


def bench(
    model: ModelArgOptional = None,
    dtype: Annotated[str | None, typer.Option(
        "--dtype", help="bf16, fp16, fp8, tf32, fp32 (default: bf16 on a GPU; fp32 on a CPU, the dtype its device spec "
                        "and calibration are read back at)")] = None,
    sizes: SizesOpt = None,
    tp: Annotated[int, typer.Option("--tp", parser=human_int("--tp", maximum=4096), help="slice the model's GEMMs as TP would")] = 1,
    batch: Annotated[int | None, typer.Option(
        "--batch", "-b", parser=human_int("--batch", maximum=65536), help="decode batch to measure (default: the --sizes set)")] = None,
    seq: Annotated[int | None, typer.Option(
        "--seq", "-s", parser=human_int("--seq", maximum=1 << 20), help="prefill tokens to measure (default: the --sizes set)")] = None,
    prompt: Annotated[int | None, typer.Option(
        "--prompt", parser=human_int("--prompt", maximum=1 << 20), help="KV-cache tokens the decode step attends to")] = None,
    fused: Annotated[bool, typer.Option("--fused", help="with MODEL: time fused vs separate QKV + MLP-in GEMMs instead")] = False,
    old_model: OldModelOpt = None,
    batch_tokens: Annotated[int, typer.Option(
        "--batch-tokens", parser=human_int("--batch-tokens"), help="rows of the --fused GEMMs")] = 4096,
    repeats: RepeatsOpt = None,
    save: SaveOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure this machine: with MODEL, each op of a layer at real shapes (writes a calibration with
    --save); without, square GEMM TFLOPS and copy bandwidth."""
    from calc.cli.common import output_path
    from calc.errors import LLMCalcError

    name = alias(model, old_model, "MODEL", "--model")
    save_path = output_path(save, "--save", (".yaml", ".yml"))
    # the square GEMM sizes are read before torch is imported (a bad list answers at once)
    if (name is None or fused) and sizes in ("small", "full"):
        raise LLMCalcError("--sizes", f"{sizes} picks the token counts of `bench MODEL` (without --fused); "
                                      "here give square sizes like 1024,4096")
    size_list = _int_list(sizes, "--sizes") if sizes and (name is None or fused) else None
    if dtype is None:
        from calc.hardware.bench import device_info, import_torch

        dtype = DEFAULT_DTYPE if device_info(import_torch()).is_gpu else "fp32"
    if name is not None and not fused:
        refuse("--batch-tokens", batch_tokens if batch_tokens != 4096 else None, "sets the rows of the --fused GEMMs; add --fused")
        return _bench_model(name, dtype, sizes, tp, batch, seq, prompt, repeats, save_path, as_json)
    why = "measures MODEL's ops; give a MODEL" if name is None else "is for `bench MODEL` without --fused"
    for flag, value in (("--tp", tp if tp != 1 else None), ("--batch", batch), ("--seq", seq), ("--prompt", prompt)):
        refuse(flag, value, f"{flag} {why}")
    refuse("--fused", fused and name is None, "compares MODEL's GEMMs; give a MODEL")
    refuse("--batch-tokens", batch_tokens if (batch_tokens != 4096 and name is None) else None, "sets the rows of the --fused GEMMs")
    from calc.hardware.bench import calibration_from, run_bench
    from calc.report.render import bench_view, emit

    with _progress(as_json) as bar:
        task = bar.add_task("bench", total=None)
        result = run_bench(dtype, size_list, name, batch_tokens, repeats or 20,
                           progress=lambda what, n: bar.update(task, description=what, advance=n))
    if save_path is not None:
        from calc.hardware.calibration import save_calibration

        save_calibration(calibration_from(result), str(save_path))
    emit(result, as_json, False, bench_view)


def _bench_model(name: str, dtype: str, sizes: str | None, tp: int, batch: int | None, seq: int | None,
                 prompt: int | None, repeats: int | None, save_path: Any, as_json: bool) -> None:
    import dataclasses

    from calc.errors import LLMCalcError
    from calc.hardware.bench import device_info, import_torch
    from calc.hardware.bench_model import run_model_bench
    from calc.hardware.model_ops import SIZE_PLANS
    from calc.report.bench_views import model_bench_view
    from calc.report.render import emit
    from calc.sources.catalog import load_model

    m = load_model(name, "MODEL")
    if sizes is not None and sizes not in SIZE_PLANS:
        raise LLMCalcError("--sizes", f"with MODEL, give {' or '.join(SIZE_PLANS)} (square sizes are for bench without MODEL)")
    plan = SIZE_PLANS[sizes or ("full" if device_info(import_torch()).is_gpu else "small")]
    plan = dataclasses.replace(plan, prefill_tokens=(seq,) if seq else plan.prefill_tokens,
                               decode_batches=(batch,) if batch else plan.decode_batches, context=prompt or plan.context)
    with _progress(as_json) as bar:
        task = bar.add_task("bench", total=None)
        result = run_model_bench(m, plan, tp, dtype, repeats, progress=lambda what: bar.update(task, description=what))
    if save_path is not None:
        _save_with_device(result, save_path)
    emit(result, as_json, False, model_bench_view)


def _save_with_device(result: Any, save_path: Any) -> None:
    """Write the calibration; on a CPU also the host's device spec beside it (`--gpu` for read-back)."""
    from calc.hardware.calibration import save_calibration

    save_calibration(result.calibration, str(save_path))
    if result.device == "CPU":
        import yaml

        from calc.hardware.bench_model import cpu_device_spec
        from calc.sources.catalog import dump_spec

        device = save_path.with_name(f"{save_path.stem}-device.yaml")
        spec = cpu_device_spec(result.calibration.roofline, result.device_name)
        device.write_text(yaml.safe_dump(dump_spec(spec), sort_keys=False), encoding="utf-8")
        result.notes.append(f"CPU calibration: read it back with --gpu {device} --calibration {save_path} --dtype fp32")


def validate(
    model: ModelArg,
    gpu: GpuOptional = None,
    layers: Annotated[int | None, typer.Option(
        "--layers", parser=human_int("--layers", maximum=1024), help="decoder blocks to build (default 4 on a GPU, 2 on a CPU)")] = None,
    batch: Annotated[int, typer.Option("--batch", "-b", parser=human_int("--batch", maximum=4096), help="sequences")] = 1,
    prompt: Annotated[int | None, typer.Option(
        "--prompt", parser=human_int("--prompt", maximum=1 << 20), help="prompt tokens (default 2048 GPU, 128 CPU)")] = None,
    calibration: CalibrationOpt = None,
    repeats: RepeatsOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Build a few real decoder layers of MODEL in torch, time prefill and a decode step, and print
    measured vs predicted with the error (defaults and, with --calibration, calibrated)."""
    from calc.hardware.validate import run_validate
    from calc.report.bench_views import validate_view
    from calc.report.render import emit
    from calc.sources.catalog import load_gpu, load_model

    m = load_model(model, "MODEL")
    g = load_gpu(gpu) if gpu else None
    import sys

    from calc.serving.phases import predict_phases

    def progress(stage: str) -> None:  # 18-25 s on a CPU: say what it is doing, one line per stage
        sys.stderr.write(f"llmcalc: validate: {stage}\n")
        sys.stderr.flush()

    result = run_validate(m, g, layers, batch, prompt, calibration, repeats, predict=predict_phases, progress=progress)
    emit(result, as_json, explain, validate_view)


def calibrate(
    ctx: typer.Context,
    from_runs: Annotated[str, typer.Option("--from-runs", help="CSV or YAML of runs: settings + ttft_s / tpot_s / step_time_s")],
    engine: EngineOpt = Engine.vllm,
    save: SaveOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Fit the compute and memory efficiencies to your measured runs (least squares); print the fitted
    values and the residual per run; --save writes them as a calibration."""
    from calc.cli.common import output_path
    from calc.hardware.fit import fit_runs, fitted_calibration, read_runs, with_engine
    from calc.report.bench_views import fit_view
    from calc.report.render import emit

    save_path = output_path(save, "--save", (".yaml", ".yml"))
    from calc.serving.phases import phase_terms, run_dtype

    runs = read_runs(from_runs)
    if option_given(ctx, "engine"):  # the engine of every TTFT / TPOT run without its own engine cell
        runs = with_engine(runs, engine.value)
    result = fit_runs(runs, phase_terms, run_dtype)
    if save_path is not None:
        from calc.hardware.calibration import save_calibration

        save_calibration(fitted_calibration(result), str(save_path))
    emit(result, as_json, explain, fit_view)


def _int_list(text: str, flag: str) -> list[int]:
    from calc.cli.options import human_int
    from calc.errors import LLMCalcError

    parse = human_int(flag, maximum=65536)  # human numbers, as every numeric option takes them (1K, 4K)
    try:
        values = [parse(part) for part in text.split(",") if part.strip()]
    except LLMCalcError:
        raise LLMCalcError(flag, f"{text!r} is not a comma-separated list of integers in 1..65536, e.g. 1K,4K") from None
    if not values:  # each value is in 1..65536 already (human_int's bounds)
        raise LLMCalcError(flag, f"sizes must be integers in 1..65536, got {text!r}")
    return values
