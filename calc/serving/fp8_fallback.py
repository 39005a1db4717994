"""vLLM's unfused fp8 GEMM on ROCm for per-channel weight / per-token activation scales (Meta's fbgemm_fp8 checkpoints).

vllm/model_executor/layers/quantization/utils/w8a8_utils.py apply_fp8_linear (vllm-project/vllm cb3b2b9b, v0.6.3):
CUTLASS's scaled GEMM takes per-channel / per-token scales, but ``cutlass_fp8_supported()`` is False on ROCm
("cutlass is not supported on Rocm"), and torch._scaled_mm then took per-tensor scales only, so a GEMM with a scale
vector falls back to "unfused DQ":

    output = torch._scaled_mm(qinput, weight, scale_a=1, scale_b=1, out_dtype=torch.float32)   # fp8 GEMM, fp32 out
    output = output * x_scale * weight_scale.t()                                                # two fp32 passes
    return output.to(dtype=input.dtype)                                                        # one cast pass

(fbgemm_fp8.py at the same commit calls it with use_per_token_if_dynamic=True and a (N, 1) weight_scale; on ROCm the
weights are first renormalised to e4m3fnuz once at load, normalize_e4m3fn_to_e4m3fnuz: the GEMM stays fp8.)
Per output element of [M, N] this moves, beyond a fused GEMM's bf16 write: the fp32 write instead (+2 B), two
multiplies reading and writing fp32 (+8 B each), the cast reading fp32 and writing bf16 (+6 B): UNFUSED_DQ_BYTES =
24 B; and launches UNFUSED_DQ_KERNELS = 3 more kernels per GEMM (calc.serving.eager counts them in an eager step).
A decode GEMM's [M, N] is small (the weights dominate); a prefill of many tokens pays the passes at HBM bandwidth.
vLLM PR #12501 (merged 2025-02-08, first in v0.7.3) runs rowwise-scaled torch._scaled_mm (hipBLASLt, ROCm 6.3) on
gfx942 instead (USE_ROWWISE_TORCH_SCALED_MM): from that release the GEMM is fused.
"""

from __future__ import annotations

from calc.specs.serving import version_tuple

UNFUSED_DQ_BYTES = 24.0  # extra HBM bytes per output element (module docstring)
UNFUSED_DQ_KERNELS = 3  # two multiplies and a cast per fp8 GEMM
ROWWISE_SCALED_MM_FROM = (0, 7, 3)  # vLLM PR #12501
CHANNEL_SCALED_METHODS = ("fbgemm_fp8",)  # per-output-channel weight scales, per-token dynamic activation scales


def vllm_fp8_unfused(vendor: str, engine_version: str | None, quant_method: str | None) -> bool:
    """ServingAssumptions.fp8_unfused_dequant for vLLM ``engine_version`` on a ``vendor`` GPU serving a checkpoint
    quantised by ``quant_method``: True on AMD before ROWWISE_SCALED_MM_FROM for channel-scaled checkpoints.

    >>> vllm_fp8_unfused("AMD", "0.6.3.dev109", "fbgemm_fp8"), vllm_fp8_unfused("AMD", "0.6.3", "fp8")
    (True, False)
    >>> vllm_fp8_unfused("NVIDIA", "0.6.3", "fbgemm_fp8"), vllm_fp8_unfused("AMD", "0.8.5", "fbgemm_fp8")
    (False, False)
    """
    v = version_tuple(engine_version)
    return (vendor == "AMD" and quant_method in CHANNEL_SCALED_METHODS and v is not None
            and v < ROWWISE_SCALED_MM_FROM)
