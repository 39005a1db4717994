"""Tensor-core peaks derived from first principles (reference section 4, seed 001 section 1.3).

peak [FLOP/s] = FLOPs per clock per tensor core x tensor cores per SM x SMs x clock.
A800: 2*(8*4*8) = 512 FLOPs/clock/TC x 4 x 108 x 1410 MHz = 311.8 TFLOPS (datasheet 312).
"""

from __future__ import annotations

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.specs import GPUSpec
from calc.units import COMPUTE_DTYPE, TERA


def derived_peak_tflops(gpu: GPUSpec) -> dict[str, float]:
    """Dense peak per dtype in TFLOPS from the spec's inputs; empty where they are not published (GPUSpec.derived_peaks)."""
    return gpu.derived_peaks()


def peak_tflops(gpu: GPUSpec, dtype: str, field: str = "--dtype") -> float:
    """The dense peak the performance formulas divide by: the datasheet figure for the dtype the
    matmuls run in (fp32 storage runs TF32, int4 weights dequantise to fp16)."""
    compute = COMPUTE_DTYPE.get(dtype, dtype)
    if compute in gpu.datasheet_peak_tflops:
        return gpu.datasheet_peak_tflops[compute]
    have = ", ".join(gpu.datasheet_peak_tflops)
    raise LLMCalcError(field, f"{gpu.name} has no {compute} tensor peak; it has {have}")


def peak_name(dtype: str) -> str:
    """The peak a dtype is timed at, as printed: the dtype, or "fp32 (TF32 tensor math)" where fp32 storage runs TF32
    matmuls (peak_tflops; calc.cli.options.FP32_NOTE).

    >>> peak_name("bf16"), peak_name("fp32")
    ('bf16', 'fp32 (TF32 tensor math)')
    """
    compute = COMPUTE_DTYPE.get(dtype, dtype)
    return f"{dtype} ({compute.upper()} tensor math)" if compute == "tf32" and dtype != "tf32" else dtype


def ridge_point(gpu: GPUSpec, dtype: str) -> float:
    """Roofline ridge point, FLOPs per byte (Williams, Waterman & Patterson, "Roofline", CACM 2009): the
    dense peak of the dtype the matmuls run in (peak_tflops) over the HBM bandwidth; an op of lower
    arithmetic intensity is memory-bound. T4 fp16: 65e12 / 0.32e12 = 203.1 (its int8 peak would double it)."""
    return peak_tflops(gpu, dtype) * TERA / (gpu.hbm_tb_s * TERA)


def common_dtype(gpu: GPUSpec) -> str:
    """The 16-bit dtype a catalog figure is quoted for: bf16, else fp16 (Turing, Volta), else the first peak."""
    return next((d for d in ("bf16", "fp16") if d in gpu.datasheet_peak_tflops), next(iter(gpu.datasheet_peak_tflops)))


class PeakCheck(BaseModel):
    dtype: str
    derived_tflops: float | None
    datasheet_tflops: float
    diff_pct: float | None


class GPUSummary(BaseModel):
    """A GPU's spec plus its derived peaks, as `llmcalc gpus --json` prints it."""

    name: str
    description: str
    arch: str
    sms: int | None
    tensor_clock_mhz: float | None
    memory_gb: float
    memory_bytes: int
    cuda_total_bytes: int = 0  # the device total torch reports: what every fit is checked against (GPUSpec.cuda_total_bytes)
    hbm_tb_s: float
    interconnect_gb_s: float
    derived_peak_tflops: dict[str, float]
    datasheet_peak_tflops: dict[str, float]
    ridge_point_flops_per_byte: float
    ridge_point_dtype: str
    peak_note: str
    checks: list[PeakCheck]
    explain: list[str]


def summarize_gpu(gpu: GPUSpec) -> GPUSummary:
    """Derive every dtype's peak, compare with the datasheet, and the roofline ridge point at the common
    16-bit dtype (common_dtype: bf16, fp16 where the GPU has no bf16), as `latency --dtype` that dtype prints."""
    derived = derived_peak_tflops(gpu)
    checks = [
        PeakCheck(
            dtype=dtype,
            derived_tflops=derived.get(dtype),
            datasheet_tflops=sheet,
            diff_pct=100 * (derived[dtype] - sheet) / sheet if dtype in derived else None,
        )
        for dtype, sheet in gpu.datasheet_peak_tflops.items()
    ]
    explain = [
        f"{c.dtype}: {gpu.flops_per_clock_per_tensor_core[c.dtype]} FLOPs/clk/TC x "
        f"{gpu.tensor_cores_per_sm} TC/SM x {gpu.sms} SMs x {gpu.tensor_clock_mhz:g} MHz = "
        f"{c.derived_tflops:.1f} TFLOPS (datasheet {c.datasheet_tflops:g}, {c.diff_pct:+.2f}%)"
        for c in checks
        if c.derived_tflops is not None
    ]
    # REFERENCE sec. 4: a derived peak more than 1% off the datasheet says why, where the derivation is read
    explain = [*explain, f"peak note: {gpu.peak_note}"] if explain and gpu.peak_note else \
        explain or [f"peaks not derivable: {gpu.peak_note}"]
    ridge_dtype = common_dtype(gpu)
    return GPUSummary(
        name=gpu.name,
        description=gpu.description,
        arch=gpu.arch,
        sms=gpu.sms,
        tensor_clock_mhz=gpu.tensor_clock_mhz,
        memory_gb=gpu.memory_gb,
        memory_bytes=gpu.memory_bytes,
        cuda_total_bytes=gpu.cuda_total_bytes,
        hbm_tb_s=gpu.hbm_tb_s,
        interconnect_gb_s=gpu.interconnect_gb_s,
        derived_peak_tflops=derived,
        datasheet_peak_tflops=dict(gpu.datasheet_peak_tflops),
        ridge_point_flops_per_byte=ridge_point(gpu, ridge_dtype),
        ridge_point_dtype=ridge_dtype,
        peak_note=gpu.peak_note,
        checks=checks,
        explain=explain,
    )
