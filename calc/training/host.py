"""Host (CPU) launch time of one layer's forward and backward pass in an eager PyTorch training step.

Every kernel of an eager step is issued by the host: Python, the PyTorch dispatcher and the CUDA launch, several
microseconds of CPU work per op however small the kernel (Megatron-LM docs/discussions/deepseek-v3-gb200-optimization,
sec. 2: "a simple torch.empty will not call any CUDA kernel, but it will generate a few microseconds of overhead on
the host side"; the eager dispatch chain Python -> pybind11 -> autograd -> ATen -> backend -> cudaLaunchKernel is
~5-25 us per op, jiahuanglin.xyz gpu_kernel_serving lesson 18 "From PyTorch op to kernel launch"). The host runs
ahead of the GPU while the GPU is busy, so a pass costs

    max(GPU time of the pass, host ops of the pass x host_op_s)

and only the excess over the GPU time is exposed (Megatron-Core MoE README, "CPU Overhead Bottleneck": gaps between
GPU kernels where the CPU cannot launch kernels fast enough; its remedies "Decrease TP size or increase micro-batch
size" shrink the GPU time per op, not the op count). Fine-grained MoE layers are where it binds: many router,
dispatcher and per-expert GEMM launches on few tokens each.

Ops of one layer, forward (Megatron-Core with Transformer Engine modules, fused kernels where the stack fuses):
    weight GEMMs     one launch per weight GEMM; a routed-expert weight one per local expert (TE's grouped GEMM loops
                     one cuBLAS GEMM per expert: transformer_engine/common/gemm/cublaslt_gemm.cu,
                     multi_stream_cublas_gemm); Megatron-Core fuses q/k/v (linear_qkv) and gate/up (linear_fc1) into
                     one GEMM each (calc.training.cost.ModelCost.gemm_launches)
    layer ops        norms_per_layer norms + 2 residual adds + 2 rotary embeddings (q, k) + 1 activation, and the
                     attention core: 1 fused kernel, or UNFUSED_ATTENTION_OPS (QK^T, softmax, dropout, PV)
    TP               4 collectives with TP > 1 (2 all-reduces, or with SP 2 all-gathers + 2 reduce-scatters)
    MoE              ROUTER_OPS (Megatron's router before --moe-router-fusion) + DISPATCHER_OPS
Backward: 2 per weight GEMM (dgrad, wgrad), 1 per other op (its autograd function), and with SP the 2 re-gathers.
Not counted: optimizer and DP ops (per step, not per layer), the D2H sync of the all-to-all dispatcher (which stops
the host from running ahead across it) and CUDA Graphs (which replace the captured ops' launches by one).
"""

from __future__ import annotations

# Host seconds per launched op: the middle of the ~5-25 us eager dispatch + launch chain (module docstring).
HOST_OP_S = 15e-6
# Megatron-Core's MoE router before kernel fusion: "reducing the total number of kernels in the router part from
# 72 to 31" (Megatron-LM deepseek-v3-gb200-optimization, sec. 2.1.4, --moe-router-fusion).
ROUTER_OPS = 72
# MoEAlltoAllTokenDispatcher per layer (calc.hardware.moe_ops workflow): tokens-per-expert count and its D2H copy,
# permute, all-to-all, local sort, local unsort, all-to-all, unpermute.
DISPATCHER_OPS = 8
# Fixed ops of a layer outside its weight GEMMs, forward: 2 residual adds, 2 rotary embeddings, 1 activation
LAYER_FIXED_OPS = 5
UNFUSED_ATTENTION_OPS = 4  # QK^T batched GEMM, scale-mask-softmax, dropout, PV batched GEMM
TP_COLLECTIVES = 4  # per layer forward with TP > 1
SP_REGATHERS = 2  # all-gathers the backward repeats under sequence parallelism


def layer_host_ops(gemm_launches: int, norms: int, flash: bool, tp: int, sp: bool, moe: bool) -> tuple[int, int]:
    """(forward, backward) host ops of one layer (module docstring):

        other    = norms + LAYER_FIXED_OPS + (1 if flash else UNFUSED_ATTENTION_OPS) + (TP_COLLECTIVES if t > 1)
                   + (ROUTER_OPS + DISPATCHER_OPS if MoE)
        forward  = gemm_launches + other
        backward = 2 x gemm_launches + other + (SP_REGATHERS if SP and t > 1)

    >>> layer_host_ops(7, 2, True, 1, False, False)   # a dense Llama layer on one GPU: 7 + (2 + 5 + 1)
    (15, 22)
    """
    other = norms + LAYER_FIXED_OPS + (1 if flash else UNFUSED_ATTENTION_OPS) + (TP_COLLECTIVES if tp > 1 else 0)
    if moe:
        other += ROUTER_OPS + DISPATCHER_OPS
    return gemm_launches + other, 2 * gemm_launches + other + (SP_REGATHERS if sp and tp > 1 else 0)


def exposed_host_s(host_s: float, gpu_s: float) -> float:
    """Host time a pass adds to the step: max(host, GPU) - GPU = max(0, host - GPU).

    >>> exposed_host_s(0.75, 0.5), exposed_host_s(0.25, 0.5)
    (0.25, 0.0)
    """
    return max(0.0, host_s - gpu_s)
