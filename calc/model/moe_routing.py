"""HBM traffic of one MoE layer's router and token permutation (memory-bound kernels around the expert GEMMs).

    bytes = T x E x ROUTER_BYTES_PER_LOGIT          router: fp32 logits [T, E] written, read by softmax / top-k,
                                                    probabilities written (3 x 4 B per element)
          + T x k x cf x H x PERMUTE_BYTES_PER_COPY  permute: read + write each routed copy (2 x 2 B); unpermute
                                                    reads the copies again (2 B)
          + T x H x COMBINE_BYTES_PER_TOKEN          combine: write the weighted sum of each token (2 B)
T tokens, E experts (router slots: E+Z with LongCat-Flash zero experts), k experts per token, cf the capacity
factor (1: dropless, as serving engines and Megatron-Core's dropless MoE run), H the hidden size.
Kernels: Megatron-Core moe_permute / moe_unpermute and TE's fused permute (training); vLLM's fused_moe
moe_align_block_size + gather/scatter and topk_softmax (vllm/model_executor/layers/fused_moe/), SGLang's and
TensorRT-LLM's fused MoE routing (serving): separate memory-bound passes beside the grouped GEMM. One formula for
training (calc.training.cost) and serving (calc.serving.step).
"""

from __future__ import annotations

from calc.specs import ModelSpec

ROUTER_BYTES_PER_LOGIT = 12.0
PERMUTE_BYTES_PER_COPY = 6.0
COMBINE_BYTES_PER_TOKEN = 2.0


def moe_routing_bytes(m: ModelSpec, tokens: float, capacity_factor: float = 1.0,
                      copy_bytes: float = PERMUTE_BYTES_PER_COPY) -> float:
    """HBM bytes of one MoE layer's router + permute / unpermute for ``tokens`` tokens (module docstring); 0 for a
    dense model. ``copy_bytes``: bytes per element of each routed copy (PERMUTE_BYTES_PER_COPY when this rank moves
    every copy; a serving rank fed by an all-gather moves some copies only for its local experts:
    calc.serving.step.moe_routing_s).
    """
    if not m.moe:
        return 0.0
    copies = tokens * m.moe.experts_per_token * capacity_factor
    return (tokens * m.moe.router_slots * ROUTER_BYTES_PER_LOGIT + copies * m.hidden_size * copy_bytes
            + tokens * m.hidden_size * COMBINE_BYTES_PER_TOKEN)
