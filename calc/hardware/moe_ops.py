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


# Grouped GEMM of the routed experts in training (one kernel over the E/e local experts, each its own [T_e, k] @ [k, n],
# T_e rows padded to a 128-row tile by gemm_time). DeepGEMM's README (deepseek-ai/DeepGEMM @ 327ec92f, H800 SXM5, fp8,
# "Grouped GEMMs for MoE models") measures, against its contiguous layout at 4096-8192 rows per group (1346 and 1214
# TFLOPS at N 4096 K 7168 and N 7168 K 2048, the rate of a dense GEMM of the same shape: 1410 and 1168 in its dense
# table), the masked layout at fewer rows per group: 1024 rows 1233 / 925 TFLOPS (0.92 / 0.76 of the contiguous rate,
# mean 0.84), 512 rows 1040 / 916 (0.77 / 0.75, mean 0.76), 256 rows 932 / 815 (0.69 / 0.67, mean 0.68). A ramp linear in
# log2(rows) from the named floor at GROUPED_RAMP_ROWS[0] to 1 at GROUPED_RAMP_ROWS[1] reads 0.775 at 512 and 0.85 at
# 1024 with the 0.7 floor: the table's means within 1.5%.
GROUPED_RAMP_ROWS = (256.0, 4096.0)


def grouped_gemm_ramp(tokens_per_expert: float, floor: float) -> float:
    """Rate of the routed experts' grouped GEMM relative to a dense GEMM of the same per-expert shape (see above):

        r(T_e) = floor                                               T_e <= 256
               = floor + (1 - floor) log2(T_e / 256) / log2(4096 / 256)   256 < T_e < 4096
               = 1                                                   T_e >= 4096

    ``floor`` the named input (training: Efficiencies.grouped_gemm_efficiency, 0.7: DeepGEMM's 0.68 at 256 rows).

    >>> round(grouped_gemm_ramp(1024, 0.7), 3), grouped_gemm_ramp(100, 0.7), grouped_gemm_ramp(8192, 0.7)
    (0.85, 0.7, 1.0)
    """
    lo, hi = GROUPED_RAMP_ROWS
    if tokens_per_expert <= lo:
        return floor
    if tokens_per_expert >= hi:
        return 1.0
    return floor + (1.0 - floor) * math.log2(tokens_per_expert / lo) / math.log2(hi / lo)
