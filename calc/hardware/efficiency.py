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

from calc.fitted import parameter
from calc.hardware.calibration import DEFAULT_MEMORY_EFFICIENCY
from calc.hardware.peaks import peak_tflops
from calc.specs import GPUSpec
from calc.units import TERA, dtype_bytes

# Large-GEMM plateau (fraction of dense peak) sustained inside a step, per architecture ("Hopper") and, for
# fp8 GEMMs, per architecture and dtype ("Hopper/fp8": a fraction of the fp8 peak). The values are READ from
# calc/data/fitted_defaults.json, the output of benchmarks/fit_corpus.py: fitted jointly with the stack factors and
# engine overheads (source-balanced mean |log(predicted/measured)|, leave-one-source-out cross-validated), or kept
# at its previous value and marked "unfitted: no data" there. An isolated cuBLAS GEMM reaches ~0.87 of an
# A100's peak, ~0.80 of an H100's (HARDWARE.md); a step sustains less (clocks sag, kernels share the GPU).
# "other": a generation without a key of its own (Volta, Turing), as MOE_SERVING_RATE keeps its own "other".
GEMM_PLATEAU: dict[str, float] = parameter("gemm_plateau")
# The ratio applied to a GEMM efficiency measured in isolation (`llmcalc bench --save`): 0.71 / 0.87 (fitted
# Ampere plateau over the isolated cuBLAS plateau). No corpus row carries a bench calibration: unfitted.
SUSTAINED_FRACTION = parameter("sustained_fraction")["all"]
GEMM_LAUNCH_S = 4e-6  # fixed cost per GEMM kernel (launch + prologue/epilogue), seconds
TILE_MN, TILE_K = 128, 64
MEMORY_EFFICIENCY: dict[str, float] = {"CDNA3": 0.80}  # HBM streaming; NVIDIA parts default to 0.9
COLLECTIVE_EFFICIENCY = 0.80  # achieved NCCL busBW / link bandwidth (NVLink A100 ~240 of 300 GB/s)
# Share of an overlapped transfer that is really hidden: the rest (NCCL kernels take SMs and HBM bandwidth
# from the compute they run beside) still costs time. exposed = max(0, C - window) + (1 - eff) x min(C, window).
OVERLAP_EFFICIENCY = 0.85


def exposed_time(comm_s: float, window_s: float, overlap: float = OVERLAP_EFFICIENCY) -> float:
    """Time a transfer of ``comm_s`` adds when it overlaps ``window_s`` of compute: what sticks out of the
    window, plus (1 - overlap) of the overlapped part (contention)."""
    hidden = min(comm_s, window_s)
    return comm_s - hidden + (1 - overlap) * hidden
# Fused (flash) attention, fraction of dense peak, forward and backward together: FlashAttention-2 (Dao 2023,
# arXiv 2307.08691 sec. 4) reaches ~56-64% of A100 peak fwd+bwd and ~35% of H100; FlashAttention-3 / cuDNN
# (Shah et al. 2024, arXiv 2407.08608) ~55-75% of H100. Defaults sit between; backward does 2.5x the
# forward FLOPs (it recomputes Q K^T).
# Values read from calc/data/fitted_defaults.json (not separable from the GEMM plateau by today's corpus).
_FLASH = parameter("flash_attention_peak")
FLASH_ATTENTION_PEAK: dict[str, float] = {k: v for k, v in _FLASH.items() if k != "other"}
FLASH_ATTENTION_OTHER = _FLASH["other"]
FLASH_BACKWARD_FLOPS_RATIO = 2.5


# Grouped GEMM of the routed experts (one kernel over the E/e local experts, each its own [T_e, k] @ [k, n],
# T_e rows padded to a 128-row tile by gemm_time). DeepGEMM's README (deepseek-ai/DeepGEMM @ 327ec92f, H800 SXM5, fp8,
# "Grouped GEMMs for MoE models") measures, against its contiguous layout at 4096-8192 rows per group (1346 and 1214
# TFLOPS at N 4096 K 7168 and N 7168 K 2048, the rate of a dense GEMM of the same shape: 1410 and 1168 in its dense
# table), the masked layout at fewer rows per group: 1024 rows 1233 / 925 TFLOPS (0.92 / 0.76 of the contiguous rate,
# mean 0.84), 512 rows 1040 / 916 (0.77 / 0.75, mean 0.76), 256 rows 932 / 815 (0.69 / 0.67, mean 0.68). A ramp linear in
# log2(rows) from the named floor at GROUPED_RAMP_ROWS[0] to 1 at GROUPED_RAMP_ROWS[1] reads 0.775 at 512 and 0.85 at
# 1024 with the 0.7 floor: the table's means within 1.5%.
GROUPED_GEMM_EFFICIENCY = 0.7
GROUPED_RAMP_ROWS = (256.0, 4096.0)
GROUPED_GEMM_TILE_ROWS = TILE_MN  # one row tile per expert (serving's decode-sized threshold, calc.serving.moe)


def grouped_gemm_ramp(tokens_per_expert: float, floor: float = GROUPED_GEMM_EFFICIENCY) -> float:
    """Rate of the routed experts' grouped GEMM relative to a dense GEMM of the same per-expert shape (see above):

        r(T_e) = floor                                                    T_e <= 256
               = floor + (1 - floor) log2(T_e / 256) / log2(4096 / 256)   256 < T_e < 4096
               = 1                                                        T_e >= 4096

    ``floor`` the named input (training: Efficiencies.grouped_gemm_efficiency, 0.7: DeepGEMM's 0.68 at 256 rows;
    serving times its fused-MoE kernels from measured tables instead, calc.serving.moe).

    >>> round(grouped_gemm_ramp(1024, 0.7), 3), grouped_gemm_ramp(100, 0.7), grouped_gemm_ramp(8192, 0.7)
    (0.85, 0.7, 1.0)
    """
    lo, hi = GROUPED_RAMP_ROWS
    if tokens_per_expert <= lo:
        return floor
    if tokens_per_expert >= hi:
        return 1.0
    return floor + (1.0 - floor) * math.log2(tokens_per_expert / lo) / math.log2(hi / lo)


def _calibrated(calibration: Any, op_kind: str, size: float) -> float | None:
    interpolate = getattr(calibration, "interpolate", None) if calibration is not None else None
    value = interpolate(op_kind, size) if interpolate is not None else None
    return float(value) if value else None


def plateau_key(gpu: GPUSpec, dtype: str = "bf16") -> str:
    """The fitted-defaults key of a GEMM's plateau: the generation, with "/fp8" for an fp8 GEMM and "/fp4" for an
    fp4 tensor-core GEMM (NVFP4 / MXFP4 weights on a GPU with an fp4 peak, calc.serving.weights)."""
    if dtype.startswith("fp8"):
        return f"{gpu.arch}/fp8"
    fp4 = dtype in ("fp4", "nvfp4", "mxfp4") and "fp4" in gpu.datasheet_peak_tflops
    return f"{gpu.arch}/fp4" if fp4 else gpu.arch


def gemm_plateau(gpu: GPUSpec, dtype: str = "bf16") -> float:
    """e_max: the large-GEMM fraction of the dtype's dense peak for this GPU's generation (GEMM_PLATEAU); a generation
    without its own key (Volta, Turing) reads "other"."""
    return GEMM_PLATEAU.get(plateau_key(gpu, dtype), GEMM_PLATEAU["other"])


def memory_efficiency(gpu: GPUSpec, calibration: Any = None) -> float:
    """Achievable fraction of HBM bandwidth (streaming copy): 0.9 on NVIDIA parts, 0.8 on MI300X."""
    measured = _calibrated(calibration, "memory", gpu.hbm_tb_s * 1e12)
    return measured or MEMORY_EFFICIENCY.get(gpu.arch, DEFAULT_MEMORY_EFFICIENCY)


def collective_efficiency(calibration: Any = None, op_kind: str = "allreduce", size: float = 1e9) -> float:
    """Achieved bus bandwidth / link bandwidth of NCCL-style collectives (default 0.8)."""
    return _calibrated(calibration, op_kind, size) or COLLECTIVE_EFFICIENCY


def measured_pcie_factor(calibration: Any = None) -> float | None:
    """The PCIe collective factor to use with ``calibration``: 1 when it measured this node's all-reduce (`bench`'s
    collectives ran on the user's own link, so the measured efficiency is that link's, PCIe or not, and the corpus
    factor for unmeasured PCIe nodes would count the link's shortfall twice), else None: the fitted factor
    (calc.hardware.collectives.pcie_factor).

    >>> measured_pcie_factor(None) is None
    True
    """
    return 1.0 if _calibrated(calibration, "allreduce", 1e9) else None


def flash_attention_rate(gpu: GPUSpec, dtype: str = "bf16") -> float:
    """FLOP/s of a fused (flash) attention kernel: peak x FLASH_ATTENTION_PEAK[arch]."""
    return peak_tflops(gpu, dtype) * TERA * FLASH_ATTENTION_PEAK.get(gpu.arch, FLASH_ATTENTION_OTHER)


def _quant(x: float, tile: int) -> float:
    return x / (math.ceil(x / tile) * tile)


def gemm_time(
    gpu: GPUSpec, m: float, n: float, k: float, dtype: str = "bf16", calibration: Any = None, batch: int = 1,
    plateau: float | None = None, sustained: float = SUSTAINED_FRACTION,
    compute_rate: float = 1.0, memory_rate: float = 1.0, hbm: float | None = None,
) -> float:
    """Seconds for ``batch`` [m,k] @ [k,n] GEMMs run as one batched/grouped kernel (module docstring);
    ``plateau`` replaces the generation's default e_max (e.g. one fitted to the user's measured step time), ``hbm``
    its HBM efficiency (memory_efficiency; serving's --hbm-efficiency).
    With a calibration that measured GEMMs: batch x F / (P x e(F) x sustained x r_c) + t_launch, e(F) the measured
    fraction of peak interpolated at this GEMM's F = 2 m n k; ``sustained`` derates an isolated measurement to
    what a training step sustains (SUSTAINED_FRACTION); serving, which runs the kernels as measured, passes 1.
    ``compute_rate`` r_c and ``memory_rate`` r_s: a grouped kernel's rate against this dense GEMM on each side of
    the roofline, batch x max(compute / r_c, memory / r_s) + t_launch (calc.serving.moe.expert_gemm_rate)."""
    flops = 2 * m * n * k
    peak = peak_tflops(gpu, dtype) * TERA
    measured = _calibrated(calibration, "gemm", flops)
    if measured:  # an isolated GEMM measured by `bench`, derated by ``sustained``
        return batch * flops / (peak * measured * sustained * compute_rate) + GEMM_LAUNCH_S
    q = _quant(m, TILE_MN) * _quant(n, TILE_MN) * _quant(k, TILE_K)
    compute = flops / (peak * (plateau or gemm_plateau(gpu, dtype)) * q)
    moved = (m * k + k * n + m * n) * float(dtype_bytes(dtype))
    memory = moved / (gpu.hbm_tb_s * 1e12 * (hbm or memory_efficiency(gpu, calibration)))
    return batch * max(compute / compute_rate, memory / memory_rate) + GEMM_LAUNCH_S


def gemm_efficiency(gpu: GPUSpec, m: float, n: float, k: float, dtype: str = "bf16", calibration: Any = None) -> float:
    """Fraction of dense peak one GEMM reaches: large square shapes near the plateau, small or skinny ones below.

    >>> from calc.sources.catalog import load_gpu
    >>> h100 = load_gpu("h100")
    >>> gemm_efficiency(h100, 8192, 8192, 8192) > 0.5 > gemm_efficiency(h100, 8, 8192, 8192)
    True
    """
    flops = 2 * m * n * k
    return flops / (peak_tflops(gpu, dtype) * TERA) / gemm_time(gpu, m, n, k, dtype, calibration)
