"""Measured achievable throughput from `llmcalc bench --save`, replacing default efficiencies."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from calc.errors import LLMCalcError
from calc.hardware.peaks import peak_tflops
from calc.sanity import check_efficiency
from calc.specs import GPUSpec

DEFAULT_COMPUTE_EFFICIENCY = 0.8  # seed 001 section 1.3: an A800 tops out near 80% of 312 TFLOPS
DEFAULT_MEMORY_EFFICIENCY = 0.9  # HBM streaming reaches ~88-92% of peak on NVIDIA parts (HARDWARE.md)


class Calibration(BaseModel):
    """What `bench --save` writes: the GPU, dtype and the achieved GEMM and copy rates."""

    model_config = ConfigDict(allow_inf_nan=False, str_max_length=200)

    gpu: str | None = Field(description="catalog name matched from the device name, None if unknown")
    device_name: str
    dtype: Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8"]
    achieved_tflops: float = Field(gt=0, le=100_000)
    achieved_gb_s: float = Field(gt=0, le=1_000_000)
    date: str
    torch_version: str
    cuda_version: str | None = None
    is_gpu: bool = True


class Efficiency(BaseModel):
    """Fractions of peak FLOPs and of peak bandwidth assumed achievable, and where they came from."""

    compute: float
    memory: float
    source: str


def save_calibration(record: dict, path: str) -> Calibration:
    """Validate a calibration record and write it as YAML (what `bench --save` does)."""
    import yaml

    calibration = Calibration.model_validate(record)
    Path(path).write_text(yaml.safe_dump(calibration.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return calibration


def load_calibration(path: str) -> Calibration:
    from calc.sources.catalog import spec_from_mapping
    from calc.sources.safeload import load_mapping

    return spec_from_mapping(Calibration, load_mapping(Path(path), "--calibration"), path, "--calibration")


def efficiency_for(gpu: GPUSpec, dtype: str, calibration: Calibration | None) -> Efficiency:
    """Default efficiencies, or the measured ones when a calibration of this GPU is given."""
    if calibration is None:
        return Efficiency(
            compute=DEFAULT_COMPUTE_EFFICIENCY, memory=DEFAULT_MEMORY_EFFICIENCY,
            source=f"defaults: {DEFAULT_COMPUTE_EFFICIENCY:.0%} of peak FLOPs (seed 001), "
            f"{DEFAULT_MEMORY_EFFICIENCY:.0%} of peak bandwidth",
        )
    if not calibration.is_gpu:
        raise LLMCalcError("--calibration", "that file was measured on a CPU; it cannot calibrate a GPU")
    if calibration.gpu != gpu.name:
        raise LLMCalcError("--calibration", f"measured on {calibration.gpu or calibration.device_name}, not {gpu.name}")
    compute = check_efficiency(calibration.achieved_tflops / peak_tflops(gpu, calibration.dtype, "--calibration"),
                               f"{calibration.dtype} GEMM rate {calibration.achieved_tflops:g} TFLOPS")
    memory = check_efficiency(calibration.achieved_gb_s / (gpu.hbm_tb_s * 1000),
                              f"copy bandwidth {calibration.achieved_gb_s:g} GB/s")
    return Efficiency(
        compute=compute, memory=memory,
        source=f"calibration {calibration.date}: {calibration.achieved_tflops:.0f} TFLOPS {calibration.dtype} "
        f"({compute:.0%} of peak), {calibration.achieved_gb_s:.0f} GB/s ({memory:.0%})",
    )
