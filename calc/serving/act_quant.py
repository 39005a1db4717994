"""The input cast of a serving engine's fp8 (W8A8) linear: its bf16 activations quantized to fp8 before the GEMM.

An fp8 tensor-core GEMM takes both operands in fp8, so every dense fp8 linear of an fp8 checkpoint (weights and
activations, W8A8) first quantizes its [M, K] bf16 input: one memory-bound kernel reading 2 B and writing 1 B per
element (the scale known: the checkpoint's static ``input_scale``, as NVIDIA ModelOpt FP8 checkpoints ship it; or
found inside the same kernel per token / per 1 x 128 group, as block-scaled checkpoints like DeepSeek-V3/R1 quantize):

    t_cast = M x K x ACT_QUANT_BYTES / (HBM x memory efficiency),   ACT_QUANT_BYTES = 3 B

per distinct GEMM input (q/k/v and gate/up are one fused linear each, calc.serving.gemms: one cast each; a row-parallel
linear casts its K/t slice). Measured: aiconfigurator's TensorRT-LLM 1.3.0rc20 H100 SXM quantize tables
(ai-dynamo/aiconfigurator @ 095f58a, aic-core/src/aiconfigurator_core/systems/data/h100_sxm/quantize/trtllm/1.3.0rc20/
scale_matrix_perf.parquet, op "scale_matrix"): 32,768 x 16,384 in 0.5319 ms, which at 0.9 x 3.35 TB/s is
2.99 B per element; 2.95-3.04 B at every K from 3,072 to 65,536. The dynamic per-tensor path (no input_scale) runs
an amax pass first ("compute_scale", the same folder: ~4.6 B-equivalent more); aiconfigurator's collector notes that
its fp8 GEMM table times that dynamic path and derives the static one by subtracting compute_scale
(collector/trtllm/collect_gemm.py). That table shows why the cast matters: at M = 8,192, K = 8,192 the fp8 "GEMM"
reaches 0.26 of the fp8 peak at N = 1,024, 0.52 at 4,096 and 0.67 at 16,384 while bf16 stays at 0.79-0.83: a cost
per input element, not per FLOP, that a narrow TP-sliced projection pays most. Not priced here: the routed experts
(the fused-MoE per-op tables their rates come from time the kernel chain from bf16 hidden states, quantization
included, calc.serving.moe) and the norm-fused quantization some engines compile (RMSNorm writing fp8 directly).
"""

from __future__ import annotations

ACT_QUANT_BYTES = 3.0  # read bf16 (2 B) + write fp8 (1 B) per input element


def act_quant_seconds(rows: float, k: float, bandwidth: float, bytes_per_element: float = ACT_QUANT_BYTES) -> float:
    """Seconds to quantize one fp8 linear's [rows, k] bf16 input at ``bandwidth`` B/s (module docstring).

    >>> round(act_quant_seconds(32768, 16384, 0.9 * 3.35e12) * 1e3, 4)  # aiconfigurator's scale_matrix: 0.5319 ms
    0.5342
    """
    return rows * k * bytes_per_element / bandwidth
