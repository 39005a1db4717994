"""Training-side MoE dispatcher traffic beyond the router and the global permute (calc.model.moe_routing).

Megatron-Core's all-to-all token dispatcher (megatron/core/transformer/moe/token_dispatcher.py,
MoEAlltoAllTokenDispatcher, workflow in its docstring) runs, per MoE layer and micro-batch, on the rank's
sequence-parallel slice of T/t tokens:

    (1) preprocess          routing metadata
    (2) dispatch_preprocess permute: the T/t x k routed copies gathered by destination       (calc.model.moe_routing)
    (3) token_dispatch      all-to-all over EP                                                 (calc.hardware.collectives)
    (4) dispatch_postprocess all-gather over ETP, then sort_chunks_by_idxs "if num_local_experts > 1":
                            the received copies re-ordered by local expert                     <- LOCAL_SORT_BYTES_PER_COPY
    (5) combine_preprocess  sort_chunks_by_idxs back (if num_local_experts > 1), reduce-scatter over ETP
                                                                                               <- LOCAL_SORT_BYTES_PER_COPY
    (6) token_combine       all-to-all over EP
    (7) combine_postprocess unpermute: weighted sum of the k copies of each token             (calc.model.moe_routing)

so a rank holding more than one expert copies every received row twice more than the permute / unpermute
pair of calc.model.moe_routing counts: each sort reads and writes the row (2 + 2 B in bf16), the same again in
backward (the sorts' autograd functions apply the inverse index). The Megatron DeepSeek-V3 GB200 write-up
(docs/discussions/deepseek-v3-gb200-optimization, sec. 2.1.1) names the pair: "The AlltoAll dispatcher using the
NCCL backend requires one global and one local permute before and after EP communication".
"""

from __future__ import annotations

import math
from math import comb

# sort_chunks_by_idxs per received copy of H elements: read 2 B + write 2 B (bf16 activations; fp8 runs dispatch bf16)
LOCAL_SORT_BYTES_PER_COPY = 4.0
LOCAL_SORTS = 2  # dispatch_postprocess sort + combine_preprocess unsort


def local_sort_bytes(received_copies: float, hidden: int, local_experts: int) -> float:
    """HBM bytes, forward, of the two local sorts of one MoE layer on one rank (module docstring):

        LOCAL_SORTS x received_copies x H x LOCAL_SORT_BYTES_PER_COPY    when the rank holds > 1 expert, else 0

    ``received_copies`` the routed rows the rank's experts process (after the EP all-to-all and the ETP all-gather).

    >>> local_sort_bytes(1000, 7168, 8) / 1e6   # 2 x 1000 x 7168 x 4 B
    57.344
    >>> local_sort_bytes(1000, 7168, 1)
    0.0
    """
    if local_experts <= 1:
        return 0.0
    return LOCAL_SORTS * received_copies * hidden * LOCAL_SORT_BYTES_PER_COPY


# The expert-parallel token exchange, one vocabulary for training and serving (`--dispatcher`; Megatron-Core names
# the choice --moe-token-dispatcher-type alltoall | allgather | flex):
#   alltoall   NCCL all-to-all: every (token, routed expert) copy bound for another rank is sent, bf16 both ways
#              (Megatron MoEAlltoAllTokenDispatcher; calc.serving.moe.nccl_alltoall_s)
#   deepep     DeepEP normal kernels (one copy per destination node over the NIC, forwarded over NVLink inside it;
#              Megatron flex / HybridEP, vLLM deepep_high_throughput, SGLang --moe-a2a-backend deepep) and, at decode
#              sizes, its low-latency kernels (vLLM deepep_low_latency; calc.serving.moe.deepep_s)
#   allgather  all-gather of every rank's tokens + reduce-scatter of the experts' partial outputs over the EP group
#              (vLLM allgather_reducescatter, SGLang's DP-attention gather without an a2a backend, TensorRT-LLM on
#              Hopper without MNNVL / DeepEP; calc.serving.moe.allgather_reducescatter_s)
#   naive      vLLM's "naive" backend: one broadcast per DP rank, then an all-reduce of the whole gathered buffer
#              (calc.serving.moe.naive_broadcast_s)
DISPATCHERS = ("alltoall", "deepep", "allgather", "naive")
TRAINING_DISPATCHERS = ("alltoall", "deepep")  # what calc.training.cost prices


def deepep_nic_scale(num_experts: int, top_k: int, nodes: int) -> float:
    """Bytes a DeepEP dispatch (or combine) sends over the NIC relative to Megatron's all-to-all dispatcher, the EP
    group spanning ``nodes`` nodes of num_experts / nodes experts each.

    The all-to-all dispatcher permutes T x k copies (one per routed expert) and sends the (N-1)/N of them bound for
    other nodes over the NIC. DeepEP's normal (internode) kernels send a token once per destination node over RDMA
    and forward it inside that node over NVLink (deepseek-ai/DeepEP docs/legacy.md, "Normal kernels with NVLink and
    RDMA forwarding"; the layout kernel's num_tokens_per_rdma_rank / is_token_in_rank). With the k experts drawn
    uniformly without replacement, a node of E/N experts is missed with probability C(E - E/N, k) / C(E, k), so a
    token reaches N (1 - C(E - E/N, k) / C(E, k)) nodes, (N-1)/N of them remote:

        scale = N (1 - C(E - E/N, k) / C(E, k)) / k        (1 on one node, or when k = 1)

    >>> round(deepep_nic_scale(128, 8, 8), 3)   # Qwen3-235B over 8 nodes: 5.34 nodes per token of 8 copies
    0.667
    >>> deepep_nic_scale(128, 1, 8)
    1.0
    """
    if nodes <= 1 or top_k <= 1:
        return 1.0
    per_node = num_experts / nodes
    missed = comb(num_experts - round(per_node), top_k) / comb(num_experts, top_k)
    return nodes * (1 - missed) / top_k


# How the tokens of a micro-batch reach the experts (Efficiencies.moe_routing), which decides the per-batch load spread
# the most-loaded EP rank waits for (calc.training.cost.ModelCost.ep_imbalance):
#   aux-loss        learned routing kept balanced on average by an auxiliary loss / expert bias: an assumed per-batch
#                   CV of one expert's load (calc.training.cost.EXPERT_LOAD_CV)
#   force-balanced  Megatron-Core --moe-router-force-load-balancing (TopKRouter.forward: "Apply force load balancing
#                   with random logits for benchmark", apply_random_logits), the setting of Megatron-Bridge's MoE
#                   performance recipes: the top-k of i.i.d. random logits, a binomial load (force_balanced_load_cv)
#   token-drop      --moe-expert-capacity-factor cf with --moe-pad-expert-input-to-capacity (NeMo's
#                   MegatronTokenDropCallback: cf 1.0, padded): every expert processes exactly its capacity, cf x the
#                   balanced share, and every rank sends exactly that many rows: no spread
MOE_ROUTINGS = ("aux-loss", "force-balanced", "token-drop")


def force_balanced_load_cv(tokens_per_expert: float, num_experts: int, top_k: int) -> float:
    """Per-batch coefficient of variation of one expert's load when every token picks its k experts as the top-k of
    i.i.d. random logits (module note, "force-balanced"): each of the N tokens the expert can receive picks it with
    probability k/E, so its load is binomial, mean mu = N k / E (``tokens_per_expert``), variance mu (1 - k/E):

        cv = sqrt((1 - k/E) / mu)

    >>> round(force_balanced_load_cv(2048, 128, 8), 5)   # sqrt((1 - 1/16) / 2048)
    0.0214
    >>> force_balanced_load_cv(0, 128, 8)
    0.0
    """
    if tokens_per_expert <= 0:
        return 0.0
    return math.sqrt((1 - top_k / num_experts) / tokens_per_expert)
