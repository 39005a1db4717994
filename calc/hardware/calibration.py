"""Measured efficiencies from `llmcalc bench MODEL --save` (or `calibrate --from-runs --save`).

A calibration records, per op kind, points measured on one device: the op's size, its median time,
and two efficiencies against the device's roofline (Williams, Waterman, Patterson 2009, "Roofline"):

    efficiency          = size / (peak rate x measured time)     (the fraction of peak the op reached)
    roofline_efficiency = max(FLOPs / peak, bytes / bandwidth) / measured time

Sizes and peak rates: "gemm" and "attention" in FLOPs (2*m*n*k for a GEMM) against peak FLOP/s;
"memory", "allreduce", "allgather", "alltoall" in bytes against peak bandwidth. So a time model
gets an op's time as size / (peak rate x efficiency), for compute- and memory-bound shapes alike (a
decode GEMM's low FLOP efficiency is its memory-bound time). For a compute-bound GEMM the two
efficiencies are equal. `Calibration.interpolate(kind, size)` interpolates ``efficiency`` linearly
in log(size) between measured points and holds the end values outside them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from calc.errors import LLMCalcError
from calc.hardware.peaks import peak_tflops
from calc.sanity import check_efficiency
from calc.specs import GPUSpec

DEFAULT_COMPUTE_EFFICIENCY = 0.8  # seed 001 section 1.3: an A800 tops out near 80% of 312 TFLOPS
DEFAULT_MEMORY_EFFICIENCY = 0.9  # HBM streaming reaches ~88-92% of peak on NVIDIA parts (HARDWARE.md)
CPU_DEVICE = "cpu"  # the `gpu` name a CPU calibration and its device spec carry
OP_KINDS = ("gemm", "attention", "memory", "allreduce", "allgather", "alltoall")
OpKind = Literal["gemm", "attention", "memory", "allreduce", "allgather", "alltoall"]
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=200)


def _kind(op_kind: str) -> str:
    """'all_gather', 'all-gather' and 'allgather' name one kind."""
    return op_kind.lower().replace("_", "").replace("-", "")


class OpPoint(BaseModel):
    """One measured op: its size (FLOPs or bytes), median time and efficiency vs the roofline."""

    model_config = _STRICT

    label: str = ""
    size: float = Field(gt=0, allow_inf_nan=False)
    measured_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="None for a fitted value")
    efficiency: float = Field(gt=0, le=1.5, allow_inf_nan=False, description="size / (peak rate x measured time)")
    roofline_efficiency: float | None = Field(None, gt=0, le=1.5, allow_inf_nan=False,
                                              description="max(FLOPs/peak, bytes/bandwidth) / measured time")


class Roofline(BaseModel):
    """The peaks the efficiencies are fractions of."""

    model_config = _STRICT

    peak_tflops: float = Field(gt=0, le=100_000)
    peak_gb_s: float = Field(gt=0, le=1_000_000)
    source: str


class Calibration(BaseModel):
    """What `bench --model --save` and `calibrate --from-runs --save` write (format 2)."""

    model_config = _STRICT

    format: Literal[2] = 2
    gpu: str = Field(min_length=1, description="catalog name of the device measured ('cpu' for a CPU run)")
    device_name: str
    is_gpu: bool
    dtype: Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8"]
    date: str
    torch_version: str | None = None
    cuda_version: str | None = None
    model: str | None = Field(None, description="the model whose shapes were measured")
    tp: int = Field(1, ge=1, le=4096)
    roofline: Roofline
    ops: dict[OpKind, Annotated[list[OpPoint], Field(max_length=10_000)]] = Field(default_factory=dict)
    time_model: Literal["per_op", "roofline"] = Field(
        "per_op", description="per_op (bench): each op at its measured efficiency by size; roofline (calibrate "
        "--from-runs): a whole step is max(FLOPs / (peak x e_c), bytes / (bandwidth x e_m)) + communication + "
        "overhead, the model its two efficiencies were fitted to (calc.hardware.fit)")
    notes: list[str] = Field(default_factory=list)

    def interpolate(self, op_kind: str, size: float) -> float | None:
        """Efficiency of an op of this kind and size, log-linear between measured sizes.

        Points of equal size are averaged; below the smallest or above the largest size the end
        value holds (no extrapolation). None when the calibration has no point of this kind (or
        the kind is unknown), so callers fall back to their defaults.

        >>> c = Calibration(gpu="x", device_name="x", is_gpu=True, dtype="bf16", date="d",
        ...     roofline=Roofline(peak_tflops=1, peak_gb_s=1, source="s"), ops={"gemm": [
        ...     OpPoint(size=1e9, measured_s=1, efficiency=0.4), OpPoint(size=1e11, measured_s=1, efficiency=0.8)]})
        >>> round(c.interpolate("gemm", 1e10), 6)   # halfway in log(size): (0.4 + 0.8) / 2
        0.6
        """
        if not (size > 0 and math.isfinite(size)):
            raise LLMCalcError("size", f"must be a positive finite number, got {size}")
        points = self.ops.get(_kind(op_kind))  # type: ignore[call-overload]
        if not points:
            return None
        by_size: dict[float, list[float]] = {}
        for p in points:
            by_size.setdefault(p.size, []).append(p.efficiency)
        curve = sorted((s, sum(e) / len(e)) for s, e in by_size.items())
        if size <= curve[0][0]:
            return curve[0][1]
        if size >= curve[-1][0]:
            return curve[-1][1]
        for (s0, e0), (s1, e1) in zip(curve, curve[1:], strict=False):
            if s0 <= size <= s1:
                t = (math.log(size) - math.log(s0)) / (math.log(s1) - math.log(s0))
                return e0 + t * (e1 - e0)
        raise AssertionError("unreachable: size lies inside the curve")

    def largest(self, op_kind: str) -> float | None:
        """Efficiency at the largest measured size: the plateau a single-number model uses."""
        points = self.ops.get(_kind(op_kind))  # type: ignore[call-overload]
        return self.interpolate(op_kind, max(p.size for p in points)) if points else None


def roofline_seconds(flops: float, nbytes: float, roofline: Roofline) -> float:
    """max(FLOPs / peak, bytes / bandwidth): the op's time at the device's peaks."""
    return max(flops / (roofline.peak_tflops * 1e12), nbytes / (roofline.peak_gb_s * 1e9))


def measured_point(kind: str, label: str, flops: float, nbytes: float, seconds: float, roofline: Roofline) -> OpPoint:
    """The calibration point of one timed op (formulas in the module docstring)."""
    size, rate = (flops, roofline.peak_tflops * 1e12) if kind in ("gemm", "attention") else (nbytes, roofline.peak_gb_s * 1e9)
    roof = roofline_seconds(flops, nbytes, roofline)
    return OpPoint(label=label, size=size, measured_s=seconds, efficiency=min(size / rate / seconds, 1.5),
                   roofline_efficiency=min(roof / seconds, 1.5))


class Efficiency(BaseModel):
    """Fractions of peak FLOPs and of peak bandwidth assumed achievable, and where they came from."""

    compute: float
    memory: float
    source: str


def save_calibration(calibration: Calibration | dict, path: str) -> Calibration:
    """Validate a calibration and write it as YAML (what `bench --save` does)."""
    import yaml

    calibration = Calibration.model_validate(calibration)
    text = yaml.safe_dump(calibration.model_dump(mode="json", exclude_none=True), sort_keys=False)
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LLMCalcError("--save", f"cannot write {path}: {exc.strerror or exc}") from None
    return calibration


def load_calibration(path: str, gpu: GPUSpec | None = None) -> Calibration:
    """Read a calibration file; with ``gpu``, refuse one measured on another device."""
    from calc.sources.catalog import spec_from_mapping
    from calc.sources.safeload import load_mapping

    calibration = spec_from_mapping(Calibration, load_mapping(Path(path), "--calibration"), path, "--calibration")
    plateaus(calibration)  # every command that reads the file holds it to the physical bounds, not only some
    if gpu is not None:
        check_device(calibration, gpu)
    return calibration


def plateaus(calibration: Calibration) -> tuple[float | None, float | None]:
    """(GEMM, memory) efficiency at the largest measured size, each held to the physical bounds
    (calc.sanity.check_efficiency: a GPU cannot beat its peak at a size too large for its caches; smaller points may,
    a memory op that fits in L2). A CPU calibration is relative to the best rates that same run measured (no
    published peak), and CPU timings on a busy host swing widely: only a GPU's file is checked, a CPU's clamped."""
    check = check_efficiency if calibration.is_gpu else (lambda fraction, _what: min(max(fraction, 1e-9), 1.0))
    gemm, copy = calibration.largest("gemm"), calibration.largest("memory")
    return (None if gemm is None else check(gemm, f"{calibration.dtype} largest-GEMM rate"),
            None if copy is None else check(copy, "largest memory-op bandwidth"))


def check_device(calibration: Calibration, gpu: GPUSpec) -> None:
    """A calibration describes one device: refuse it for any other."""
    if calibration.gpu == gpu.name:
        return
    if not calibration.is_gpu:
        raise LLMCalcError("--calibration", f"that file was measured on a CPU; it cannot calibrate a GPU ({gpu.name})")
    raise LLMCalcError("--calibration", f"measured on {calibration.gpu} ({calibration.device_name}), not {gpu.name}; "
                                        f"run `llmcalc bench MODEL --save FILE` on the {gpu.name}")


def check_calibration(calibration: Calibration, gpu: GPUSpec, dtype: str) -> None:
    """The one check every command applies to a calibration: measured on this GPU, at the tensor peak ``dtype``
    runs at (an fp8 file's GEMM rates are not a bf16 plan's: the fp8 peak is twice the bf16 one on Hopper)."""
    check_device(calibration, gpu)
    if peak_tflops(gpu, dtype) != peak_tflops(gpu, calibration.dtype, "--calibration"):
        raise LLMCalcError("--calibration", f"measured in {calibration.dtype}; --dtype {dtype} runs at another tensor peak "
                                            f"on {gpu.name}: run `llmcalc bench --dtype {dtype} ... --save FILE`")


def default_efficiency() -> Efficiency:
    return Efficiency(
        compute=DEFAULT_COMPUTE_EFFICIENCY, memory=DEFAULT_MEMORY_EFFICIENCY,
        source=f"defaults (no calibration): {DEFAULT_COMPUTE_EFFICIENCY:.0%} of peak FLOPs (seed 001), "
        f"{DEFAULT_MEMORY_EFFICIENCY:.0%} of peak bandwidth",
    )


def efficiency_for(gpu: GPUSpec, dtype: str, calibration: Calibration | None) -> Efficiency:
    """Default efficiencies, or the measured plateaus (largest GEMM, largest memory op) of a
    calibration of this GPU at the same tensor peak as ``dtype``. Shape-aware callers use
    ``Calibration.interpolate`` instead."""
    if calibration is None:
        return default_efficiency()
    check_calibration(calibration, gpu, dtype)
    gemm, copy = plateaus(calibration)
    compute = DEFAULT_COMPUTE_EFFICIENCY if gemm is None else gemm
    memory = DEFAULT_MEMORY_EFFICIENCY if copy is None else copy
    return Efficiency(
        compute=compute, memory=memory,
        source=f"calibration {calibration.date} ({calibration.device_name}, {calibration.dtype}): GEMM efficiency "
        f"interpolated by shape ({compute:.0%} of peak FLOPs at the largest GEMM), {memory:.0%} of peak bandwidth",
    )
