"""`bench`: measured GEMM TFLOPS, copy bandwidth and the fused parallel-layer speedup (needs torch)."""

from __future__ import annotations

from typing import Annotated

import typer

from calc.cli.options import DEFAULT_DTYPE, JsonOpt, ModelArgOptional, OldModelOpt, alias, human_int


def bench(
    model: ModelArgOptional = None,
    dtype: Annotated[str, typer.Option("--dtype", help="bf16, fp16, fp8, tf32, fp32")] = DEFAULT_DTYPE,
    sizes: Annotated[str | None, typer.Option("--sizes", help="square GEMM sizes, e.g. 1024,4096,8192")] = None,
    old_model: OldModelOpt = None,
    batch_tokens: Annotated[int, typer.Option(
        "--batch-tokens", parser=human_int("--batch-tokens"), help="tokens (rows) of the model GEMMs")] = 4096,
    repeats: Annotated[int, typer.Option(
        "--repeats", parser=human_int("--repeats", maximum=10000), help="timed runs per measurement")] = 20,
    save: Annotated[str | None, typer.Option("--save", help="write a calibration YAML for --calibration")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure achievable GEMM TFLOPS, copy bandwidth and, with MODEL, fused vs separate QKV + MLP-in GEMMs."""
    from calc.cli.common import output_path
    from calc.errors import LLMCalcError
    from calc.hardware.bench import calibration_from, run_bench
    from calc.report.render import bench_view, emit

    name = alias(model, old_model, "MODEL", "--model")
    size_list = _int_list(sizes, "--sizes") if sizes else None
    save_path = output_path(save, "--save", (".yaml", ".yml"))
    if name is None and batch_tokens != 4096:
        raise LLMCalcError("--batch-tokens", "sets the rows of the model GEMMs; give a MODEL too")
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True, disable=as_json) as bar:
        task = bar.add_task("bench", total=None)
        result = run_bench(dtype, size_list, name, batch_tokens, repeats,
                           progress=lambda what, n: bar.update(task, description=what, advance=n))
    if save_path is not None:
        from calc.hardware.calibration import save_calibration

        save_calibration(calibration_from(result), str(save_path))
    emit(result, as_json, False, bench_view)


def _int_list(text: str, flag: str) -> list[int]:
    from calc.errors import LLMCalcError

    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise LLMCalcError(flag, f"{text!r} is not a comma-separated list of integers, e.g. 1024,4096") from None
    if not values or any(v < 1 or v > 65536 for v in values):
        raise LLMCalcError(flag, f"sizes must be integers in 1..65536, got {text!r}")
    return values
