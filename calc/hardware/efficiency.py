"""Default efficiencies: the fraction of a peak that a kernel reaches, per GPU generation.

GEMM (an [m,k] @ [k,n] matmul, F = 2 m n k FLOPs, bytes = (m k + k n + m n) x dtype):
    t = max(F / (P x e_max x q), bytes / (HBM x e_mem)) + t_launch,     efficiency = F / P / t
with q = m/ceil128(m) x n/ceil128(n) x k/ceil64(k) the tile quantisation of a 128 x 128 x 64 CTA tile
(NVIDIA "Matrix Multiplication Background User's Guide", tile and wave quantisation), so small or
skinny shapes (after TP slicing) fall further below peak: the roofline term for skinny ones, the
launch term for small ones. e_max is the large-GEMM plateau measured on each generation (HARDWARE.md:
A100 ~87% of dense peak, H100 ~80%, Blackwell ~75%, MI300X ~50%).

A calibration (``llmcalc bench --save``) may replace a default: ``calibration.interpolate(op_kind, size)``
returns a measured efficiency or None (op_kind "gemm" with size = 2 m n k; "memory" with size = bytes;
"allreduce", "all_gather", ... with size = bytes).
"""

from __future__ import annotations

import math
from typing import Any

from calc.hardware.calibration import DEFAULT_MEMORY_EFFICIENCY
from calc.hardware.peaks import peak_tflops
from calc.specs import GPUSpec
from calc.units import TERA, dtype_bytes

# Large-GEMM plateau (fraction of dense peak) per architecture; fitted once (benchmarks/validate_training.py).
GEMM_PLATEAU: dict[str, float] = {"Ampere": 0.85, "Hopper": 0.80, "Ada": 0.80, "Blackwell": 0.75, "CDNA3": 0.55}
GEMM_PLATEAU_OTHER = 0.75
GEMM_LAUNCH_S = 4e-6  # fixed cost per GEMM kernel (launch + prologue/epilogue), seconds
TILE_MN, TILE_K = 128, 64
MEMORY_EFFICIENCY: dict[str, float] = {"CDNA3": 0.80}  # HBM streaming; NVIDIA parts default to 0.9
COLLECTIVE_EFFICIENCY = 0.80  # achieved NCCL busBW / link bandwidth (NVLink A100 ~240 of 300 GB/s)
OVERLAP_EFFICIENCY = 0.85  # share of an overlappable communication actually hidden under compute


def _calibrated(calibration: Any, op_kind: str, size: float) -> float | None:
    interpolate = getattr(calibration, "interpolate", None) if calibration is not None else None
    value = interpolate(op_kind, size) if interpolate is not None else None
    return float(value) if value else None


def gemm_plateau(gpu: GPUSpec) -> float:
    """e_max: the large-GEMM fraction of dense peak for this GPU's generation."""
    return GEMM_PLATEAU.get(gpu.arch, GEMM_PLATEAU_OTHER)


def memory_efficiency(gpu: GPUSpec, calibration: Any = None) -> float:
    """Achievable fraction of HBM bandwidth (streaming copy): 0.9 on NVIDIA parts, 0.8 on MI300X."""
    measured = _calibrated(calibration, "memory", gpu.hbm_tb_s * 1e12)
    return measured or MEMORY_EFFICIENCY.get(gpu.arch, DEFAULT_MEMORY_EFFICIENCY)


def collective_efficiency(calibration: Any = None, op_kind: str = "allreduce", size: float = 1e9) -> float:
    """Achieved bus bandwidth / link bandwidth of NCCL-style collectives (default 0.8)."""
    return _calibrated(calibration, op_kind, size) or COLLECTIVE_EFFICIENCY


def _quant(x: float, tile: int) -> float:
    return x / (math.ceil(x / tile) * tile)


def gemm_time(gpu: GPUSpec, m: float, n: float, k: float, dtype: str = "bf16", calibration: Any = None) -> float:
    """Seconds for one [m,k] @ [k,n] GEMM (formula in the module docstring)."""
    flops = 2 * m * n * k
    peak = peak_tflops(gpu, dtype) * TERA
    measured = _calibrated(calibration, "gemm", flops)
    if measured:
        return flops / (peak * measured)
    q = _quant(m, TILE_MN) * _quant(n, TILE_MN) * _quant(k, TILE_K)
    compute = flops / (peak * gemm_plateau(gpu) * q)
    moved = (m * k + k * n + m * n) * float(dtype_bytes(dtype))
    memory = moved / (gpu.hbm_tb_s * 1e12 * memory_efficiency(gpu, calibration))
    return max(compute, memory) + GEMM_LAUNCH_S


def gemm_efficiency(gpu: GPUSpec, m: float, n: float, k: float, dtype: str = "bf16", calibration: Any = None) -> float:
    """Fraction of dense peak one GEMM reaches: large square shapes near the plateau, small or skinny ones below.

    >>> from calc.sources.catalog import load_gpu
    >>> h100 = load_gpu("h100")
    >>> gemm_efficiency(h100, 8192, 8192, 8192) > 0.75 > gemm_efficiency(h100, 8, 8192, 8192)
    True
    """
    flops = 2 * m * n * k
    return flops / (peak_tflops(gpu, dtype) * TERA) / gemm_time(gpu, m, n, k, dtype, calibration)
