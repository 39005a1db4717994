"""Fused (flash) attention kernel rates for training, by kernel, GPU, direction, head dim, sequence length and mask.

A training step's attention core runs one fused kernel per layer; its rate (FLOP/s, FLOPs counted as the kernels'
own benchmarks count them: forward 4 s^2 d h b, halved under a causal mask; backward 2.5 x the forward) is read from
published kernel benchmark tables rather than a flat fraction of peak, because it rises steeply with the sequence
length (tile occupancy, the masked diagonal blocks) and the backward is slower than the forward.

Tables (TFLOP/s, bf16, H100 80GB SXM5, sequence lengths 512, 1k, 2k, 4k, 8k, 16k with batch x seq = 16k tokens and
heads x head dim = 2048): Shah et al. 2024, "FlashAttention-3", arXiv 2407.08608, Fig. 5 (forward; (a)-(c) without,
(d)-(f) with the causal mask, head dim 64 / 128 / 256) and Fig. 6 (backward, without causal mask, head dim 128), the
bars of FlashAttention-2, cuDNN and FlashAttention-3.

    forward(k, d, s, causal)  = T_k[fwd, causal][d](s)  interpolated linearly in log2 s (clamped to 512 .. 16k: the
                                 rate has plateaued by 16k in every table) and in log2 d (clamped to 64 .. 256)
    backward(k, d, s, causal) = forward(k, d, s, causal) x B_k(s),  B_k(s) = T_k[bwd, non-causal][128](s) /
                                 T_k[fwd, non-causal][128](s)   (the kernel's own backward/forward ratio at head dim 128;
                                 the causal backward assumed to lose to the mask what its forward loses)

Other kernels and GPUs:
  triton   llm-foundry's ``attn_impl: triton`` (the FlashAttention-1-era Triton kernel its benchmark sweep runs by default,
           scripts/train/benchmarking/submit_benchmarks.py ``--attn_impl`` default 'triton'): FlashAttention-2 / 1.8, the
           geometric middle of "FlashAttention-2 is 1.3-2.5x faster than FlashAttention in Triton" (Dao 2023, arXiv
           2307.08691 sec. 4.1).
  A100     FlashAttention-2 only (FA3 and the Hopper cuDNN kernels need sm90): the H100 FlashAttention-2 curves scaled to
           the A100 maxima Dao 2023 reports (sec. 4.1: forward up to 73%, backward up to 63% of the 312 TFLOP/s peak =
           228 and 197 TFLOP/s, against the H100 FlashAttention-2 maxima 370 forward and 322 backward at head dim 128).
  others   the same fraction of the dtype's dense peak as the nearest tabled generation (Blackwell: Hopper's;
           Ada and unknown parts: Ampere's; CDNA3 (CK FlashAttention-2 port): Hopper's FlashAttention-2) -- an
           assumption stated in --explain, no table of their own.
"""

from __future__ import annotations

import math

from calc.hardware.peaks import peak_tflops
from calc.specs import GPUSpec
from calc.units import TERA

SEQS = (512, 1024, 2048, 4096, 8192, 16384)
HEAD_DIMS = (64, 128, 256)
# FlashAttention-3 paper (arXiv 2407.08608) Fig. 5: forward TFLOP/s on H100 SXM5, bf16, by kernel, mask, head dim.
H100_FORWARD: dict[str, dict[bool, dict[int, tuple[float, ...]]]] = {
    "fa2": {False: {64: (282, 306, 318, 321, 322, 324), 128: (309, 350, 362, 368, 370, 370),
                    256: (275, 313, 321, 323, 324, 326)},
            True: {64: (180, 229, 262, 284, 295, 299), 128: (191, 260, 298, 319, 333, 335),
                   256: (208, 251, 278, 293, 297, 298)}},
    "cudnn": {False: {64: (335, 373, 395, 408, 412, 413), 128: (497, 574, 617, 609, 600, 595),
                      256: (470, 546, 580, 581, 580, 581)},
              True: {64: (225, 288, 334, 363, 379, 388), 128: (315, 410, 484, 518, 529, 539),
                     256: (308, 391, 450, 483, 497, 509)}},
    "fa3": {False: {64: (333, 392, 460, 476, 496, 497), 128: (467, 565, 625, 638, 646, 648),
                    256: (482, 617, 707, 736, 746, 756)},
            True: {64: (197, 265, 371, 420, 460, 473), 128: (292, 423, 521, 579, 602, 616),
                   256: (286, 427, 537, 612, 628, 642)}},
}
# Fig. 6: backward TFLOP/s, H100 SXM5, bf16, without causal mask, head dim 128.
H100_BACKWARD_128: dict[str, tuple[float, ...]] = {
    "fa2": (214, 260, 291, 310, 318, 322),
    "cudnn": (305, 408, 465, 499, 518, 516),
    "fa3": (316, 424, 501, 542, 559, 561),
}
H100_BF16_PEAK = 989.0  # TFLOP/s dense (the tables' GPU)
# Dao 2023 sec. 4.1: FlashAttention-2 on A100 reaches up to 73% (forward) / 63% (backward) of 312 TFLOP/s.
A100_FA2_MAX = {"fwd": 0.73 * 312.0, "bwd": 0.63 * 312.0}
H100_FA2_MAX = {"fwd": 370.0, "bwd": 322.0}
TRITON_SLOWDOWN = 1.8  # FlashAttention-2 is 1.3-2.5x faster than the Triton FlashAttention (Dao 2023 sec. 4.1)
KERNELS = ("fa2", "fa3", "cudnn", "triton")
# The generation whose measured fractions of peak stand in for a generation without a table of its own.
PROXY_ARCH = {"Hopper": "Hopper", "Ampere": "Ampere", "Blackwell": "Hopper", "CDNA3": "Hopper", "Ada": "Ampere"}
HOPPER_ONLY = ("fa3", "cudnn")  # kernels built for sm90 (cuDNN's fused attention also runs on Ampere, at FA2's rate)


def _interp(xs: tuple[float, ...], ys: tuple[float, ...], x: float) -> float:
    """Linear interpolation of ys over log2(xs) at log2(x), clamped to the ends."""
    lx = [math.log2(v) for v in xs]
    t = math.log2(min(max(x, xs[0]), xs[-1]))
    for i in range(len(xs) - 1):
        if t <= lx[i + 1]:
            w = (t - lx[i]) / (lx[i + 1] - lx[i])
            return ys[i] + w * (ys[i + 1] - ys[i])
    return ys[-1]


def _table_forward(kernel: str, head_dim: float, seq: float, causal: bool) -> float:
    by_dim = H100_FORWARD[kernel][causal]
    at_dims = tuple(_interp(SEQS, by_dim[d], seq) for d in HEAD_DIMS)
    return _interp(HEAD_DIMS, at_dims, head_dim)


def h100_rate(kernel: str, direction: str, head_dim: float, seq: float, causal: bool = True) -> float:
    """TFLOP/s of a tabled kernel ("fa2", "fa3", "cudnn") on an H100 SXM5 in bf16 (module docstring)."""
    base = "fa2" if kernel == "triton" else kernel
    fwd = _table_forward(base, head_dim, seq, causal)
    if direction == "bwd":
        fwd *= _interp(SEQS, H100_BACKWARD_128[base], seq) / _interp(SEQS, H100_FORWARD[base][False][128], seq)
    return fwd / TRITON_SLOWDOWN if kernel == "triton" else fwd


# Where each kernel runs (its own build targets), for a kernel the user names (--attention): FlashAttention-3 is built
# for sm90 only (Dao-AILab/flash-attention hopper/: "FlashAttention-3 is optimized for Hopper GPUs (e.g. H100)");
# cuDNN's fused attention for NVIDIA Ampere and newer; FlashAttention-2 for NVIDIA Ampere and newer ("Ampere, Ada,
# or Hopper GPUs", its README; Turing and Volta are FlashAttention 1.x) and AMD CDNA (its ROCm Composable Kernel
# port, "MI200 or MI300"); the Triton kernel wherever Triton runs.
KERNEL_ARCHS: dict[str, frozenset[str] | None] = {
    "fa3": frozenset({"Hopper"}),
    "cudnn": frozenset({"Ampere", "Ada", "Hopper", "Blackwell"}),
    "fa2": frozenset({"Ampere", "Ada", "Hopper", "Blackwell", "CDNA2", "CDNA3", "CDNA4"}),
    "triton": None,
}


def kernel_unavailable(kernel: str, arch: str) -> str | None:
    """Why ``kernel`` does not run on a GPU of generation ``arch`` (KERNEL_ARCHS), or None when it does.

    >>> kernel_unavailable("fa3", "Ampere")
    'fa3 runs on Hopper only'
    >>> kernel_unavailable("cudnn", "Hopper") is None
    True
    """
    archs = KERNEL_ARCHS[kernel]
    if archs is None or arch in archs:
        return None
    return f"{kernel} runs on {', '.join(sorted(archs))} only"


def kernel_fraction(arch: str, kernel: str, direction: str, head_dim: float, seq: float, causal: bool = True) -> float:
    """Fraction of the bf16 dense peak the kernel reaches on this generation (module docstring, "Other kernels")."""
    proxy = PROXY_ARCH.get(arch, "Ampere")
    if arch == "CDNA3" or (proxy == "Ampere" and kernel in HOPPER_ONLY):
        kernel = "fa2" if kernel != "triton" else kernel
    if proxy == "Ampere":
        fa2 = h100_rate(kernel, direction, head_dim, seq, causal)
        return fa2 * A100_FA2_MAX[direction] / H100_FA2_MAX[direction] / 312.0
    return h100_rate(kernel, direction, head_dim, seq, causal) / H100_BF16_PEAK


def attention_rate(gpu: GPUSpec, kernel: str, direction: str, head_dim: float, seq: float, causal: bool = True,
                   dtype: str = "bf16") -> float:
    """FLOP/s of the fused attention ``direction`` ("fwd" or "bwd") on ``gpu``: the kernel's fraction of the bf16
    peak on the GPU's generation x this GPU's peak in ``dtype`` (bf16 / fp16 attention in training).

    >>> from calc.sources.catalog import load_gpu
    >>> round(attention_rate(load_gpu("h100"), "fa3", "fwd", 128, 16384) / 1e12)  # FA3 paper Fig. 5(d): 616
    616
    """
    return kernel_fraction(gpu.arch, kernel, direction, head_dim, seq, causal) * peak_tflops(gpu, dtype) * TERA
