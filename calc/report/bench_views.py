"""Rich views of `bench MODEL`, `validate` and `calibrate --from-runs` results."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType

from calc.report.render import Table, kv_table


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def _device(r: Any) -> str:
    return f"{r.device_name} ({r.device}{', CPU figures' if r.device == 'CPU' else ''})"


def model_bench_view(r: Any) -> RenderableType:
    """One row per timed op: shape, median time, roofline time and efficiency against it."""
    table = Table(title=f"bench {r.model} (TP={r.tp}) on {_device(r)}, {r.dtype}, torch {r.torch_version}",
                  title_justify="left")
    for col in ("phase", "tokens", "op", "shape", "median ms", "roofline ms", "of peak", "of roofline"):
        table.add_column(col, justify="left" if col in ("phase", "op", "shape") else "right")
    for o in r.ops:
        table.add_row(o.phase, str(o.tokens or "-"), o.label, o.shape, f"{o.timing.median_s * 1e3:.3f}",
                      f"{o.roofline_s * 1e3:.3f}", f"{o.efficiency:.1%}", f"{o.roofline_efficiency:.0%}")
    rows = [("roofline", f"{r.peak_tflops:,.3g} TFLOPS, {r.peak_gb_s:,.0f} GB/s ({r.roofline_source})"),
            ("of peak", "FLOPs (GEMM, attention) or bytes (memory ops) / (peak rate x measured time): what --calibration uses"),
            ("of roofline", "max(FLOPs / peak, bytes / bandwidth) / measured time")]
    rows += [("note", n) for n in r.notes]
    return Group(table, kv_table("", rows))


def validate_view(r: Any) -> RenderableType:
    """Measured vs predicted per phase, with the default and (when given) calibrated efficiencies."""
    table = Table(title=f"validate {r.model}: {r.layers} of {r.model_layers} layers on {_device(r)}, {r.dtype}, "
                        f"B={r.batch}, prompt {r.prompt}", title_justify="left")
    for col in ("phase", "measured ms", "predicted ms", "error", "calibrated ms", "calibrated error"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for p in r.phases:
        cal = "-" if p.calibrated_predicted_s is None else f"{p.calibrated_predicted_s * 1e3:.2f}"
        cal_err = "-" if p.calibrated_error is None else f"{p.calibrated_error:+.0%}"
        table.add_row(p.name, f"{p.measured_s * 1e3:.2f}", f"{p.predicted_s * 1e3:.2f}", f"{p.error:+.0%}", cal, cal_err)
    rows = [("predicted with", r.default_source)]
    if r.calibration_source:
        rows.append(("calibrated with", r.calibration_source))
    rows += [("note", n) for n in r.notes]
    return Group(table, kv_table("", rows))


def fit_view(r: Any) -> RenderableType:
    """Fitted efficiencies and the residual of every run, beside the defaults'."""
    table = Table(title=f"Efficiencies fitted to {len(r.runs)} runs on {r.gpu} ({r.dtype})", title_justify="left")
    for col in ("run", "model", "measured", "bound", "default pred.", "default err", "fitted pred.", "residual"):
        table.add_column(col, justify="left" if col in ("model", "measured", "bound") else "right")
    for f in r.runs:
        table.add_row(str(f.row), f.model + (f" ({f.engine})" if f.engine else ""), f"{f.measure} {_ms(f.measured_s)}", f.bound,
                      _ms(f.predicted_default_s), f"{f.default_residual:+.1%}", _ms(f.predicted_fitted_s),
                      f"{f.residual:+.1%}")
    rows = [("compute efficiency", f"{r.compute_efficiency:.3f} of peak FLOPs ({r.compute_runs} compute-bound runs)"),
            ("memory efficiency", f"{r.memory_efficiency:.3f} of peak bandwidth ({r.memory_runs} memory-bound runs)"),
            ("RMS residual", f"fitted {r.rms_residual:.1%} (defaults {r.default_rms_residual:.1%})")]
    rows += [("assumption", a) for a in r.assumptions]
    return Group(table, kv_table("", rows))
