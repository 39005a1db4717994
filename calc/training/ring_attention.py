"""Context-parallel (ring) attention as the training stacks run it: what the ring moves, what of it hides under the
attention, and the memory traffic of merging the partial results.

Both engines shard a sequence into 2c chunks and give rank r chunks r and 2c-1-r (load-balanced causal sharding), so
each of the c ring steps of a rank carries 1/c of its attention FLOPs: step 0 the local causal block ((s/c)^2/2 pairs),
steps 1..c-1 one unmasked (s/c) x (s/2c) block each (together s^2/2c pairs per rank).

Implementations (Efficiencies.cp_comm, `--cp-comm`; the default by named stack, ``RING_IMPL``, calc.training.stack):

  p2p          Megatron-Core / Transformer Engine (AttnFuncWithCPAndKVP2P): before each step's compute the next K/V
               block (the g/t KV heads, bf16) is sent on, so c-1 block transfers in forward and 2(c-1) in backward
               (the K/V again and their gradients), hidden under the attention they overlap:
                   forward  exposed_time((c-1) x p2p(B), attention forward)
                   backward exposed_time(2(c-1) x p2p(B), attention backward)
               with B = b (s/c) (g/t) 2 d_h bytes (MLA: b (s/c) (h/t) (d_qk + d_v)), p2p(B) on the ring's slowest hop:
               every rank sends to its successor at once and the next step waits for all, so once the c ranks (t
               apart) span nodes (c t > GPUs per node) every step runs at the NIC, not NVLink
               (calc.hardware.collectives "p2p" over the CP group).
  torch-allgather
               PyTorch's experimental context_parallel as torchtitan runs it (torchtitan 9dec370, the 2024-12 H100
               benchmark commit; torch/distributed/tensor/experimental/_attention.py, read in pytorch/pytorch
               0123248 and in an earlier copy of the same loop; options unchanged between them):
               - K and V reach SDPA after ``repeat_kv`` (torchtitan/models/llama/model.py Attention.forward), so a
                 block holds the h/t query heads, not the g/t KV heads: B = b (s/c) (h/t) (d_qk + d_v) bytes.
               - forward: ``--experimental.context_parallel_rotate_method`` default 'allgather'
                 (torchtitan/config_manager.py): _AllGatherRotater all-gathers the c blocks once, issued before step
                 0 and waited at step 1, so only step 0 (1/c of the forward attention) hides it:
                     forward  exposed_time(all_gather(c B, c), attention forward / c)
               - backward: the same all-gather of K/V (under step 0's backward), and the K/V gradients sent on
                 after every step by all-to-all permute (dkv_rotater, _RotateMethod.ALL_TO_ALL) in fp32
                 (_ContextParallelOptions.convert_to_f32 = True: accum_dtype float32), each waited after the next
                 step's compute; the last (i = c-1) is waited after the loop, nothing left to hide it:
                     backward exposed_time(all_gather(c B, c), A_b / c) + (c-1) exposed_time(p2p(G), A_b / c) + p2p(G)
                 with G = B x 4 / bytes per element (fp32), A_b the attention backward.
               - merge (_SDPAMerger, convert_to_f32): every step's output is upcast and folded into an fp32 running
                 output, and the backward accumulates dQ, dK, dV in fp32 (torch.cat partial updates). torchtitan
                 compiles every TransformerBlock with fullgraph=True (parallelize_llama.py apply_compile), so the ring
                 is traced into the graph and each step's merge is one fused pointwise pass; RING_MERGE_BYTES counts
                 its HBM traffic per element of the rank's attention output [b, s/c, h/t, d] (d = (d_qk + d_v)/2), on
                 the rank whose steps all use its full query (the last: every step i <= rank; it sets the pace):
                   forward, per step 1..c-1: read the fp32 running output 4 and the bf16 step output 2, write the
                     fp32 output 4 (the torch.cat of K/V for a send the all-gather rotater ignores is dead code)  = 10 B
                   forward, once: step 0's upcast 2+4, the final downcast 4+2                                = 12 B
                   backward, per step 1..c-1: dQ += 4+2+4; dK, dV: the received fp32 gradient 4 + the bf16 step
                     gradient 2, written into the send buffer 4 (torch.cat fused), 2 x 10                      = 30 B
                   backward, once: step 0's dQ, dK, dV upcast 3 x (2+4), the final downcasts 3 x (4+2)        = 36 B
                 (lse terms are per row, d times fewer: left out; an eager run executes each op apart, about
                 46 and 60 B per step). These run at the HBM rate.
  allgather    Llama 3 405B's CP (arXiv 2407.21783 sec. 3.3.2: "our CP implementation adopts an all-gather based
               method where we first all-gather the key (K) and value (V) tensors, and then compute attention output
               for the local query (Q) tensor chunk. Although the all-gather communication latency is exposed in the
               critical path ..."): forward one all-gather of the c blocks (KV heads), exposed whole; backward the
               same all-gather again (the gathered K/V is not kept: the activation memory holds the local block only)
               and a reduce-scatter of their gradients dK, dV, exposed whole:
                   forward all_gather(c B, c); backward all_gather(c B, c) + reduce_scatter(c B, c)
The Transformer Engine ring corrects its output in fused kernels, and the paper does not describe a separate merge:
their merge traffic is not counted (p2p, allgather: 0).

Not modelled: the kernel rate of the unmasked steps. calc.training.cost prices all of a rank's attention at the causal
rate for query length s/c, while steps 1..c-1 run unmasked (s/c) x (s/2c) blocks, which the FlashAttention-3 paper's
tables (Fig. 5) put higher (FA2, head dim 128, 16k: 370 TFLOP/s unmasked vs 335 causal; cuDNN 595 vs 539). Pricing
them so would make every CP run faster still (torchtitan Llama 3.1 8B CP8 at 256K: about +8%), against measurements
that are already slower than predicted; it waits until that loss is understood.
"""

from __future__ import annotations

from calc.hardware.efficiency import exposed_time

RING_IMPLS = ("p2p", "torch-allgather", "allgather")
# ring implementation per named stack (calc.training.stack.STACKS); a stack not listed runs the p2p ring
RING_IMPL = {"megatron": "p2p", "fsdp": "torch-allgather"}
# what each exchange is, in the words --explain prints
CP_COMM_WORDS = {
    "p2p": "K/V blocks of the KV heads sent on every step, hidden under the attention (Transformer Engine p2p)",
    "torch-allgather": "K/V after repeat_kv all-gathered once, hidden under step 0's attention; fp32 K/V gradients sent "
                       "on after every backward step; fp32 merge of the partial results (PyTorch context_parallel, "
                       "torchtitan)",
    "allgather": "all-gather of K/V forward, all-gather + reduce-scatter of dK/dV backward, exposed (Llama 3, arXiv "
                 "2407.21783 sec. 3.3.2)",
}
# HBM bytes of merging per element of the rank's attention output, compiled: (per ring step after the first, once)
RING_MERGE_BYTES = {"p2p": {"fwd": (0.0, 0.0), "bwd": (0.0, 0.0)},
                    "torch-allgather": {"fwd": (10.0, 12.0), "bwd": (30.0, 36.0)},
                    "allgather": {"fwd": (0.0, 0.0), "bwd": (0.0, 0.0)}}
FP32_BYTES = 4.0


def ring_impl(stack: str) -> str:
    """The ring implementation a named stack runs (module docstring): torch-allgather for fsdp (torchtitan), else
    p2p."""
    return RING_IMPL.get(stack, "p2p")


def ring_block_heads(impl: str, heads: float, kv_heads: float) -> float:
    """Heads one K/V block carries per rank: the h/t query heads after torchtitan's repeat_kv (allgather), else the
    g/t KV heads (Transformer Engine rings, and Llama 3 gathers, GQA K/V as they are)."""
    return heads if impl == "torch-allgather" else kv_heads


def ring_merge_bytes(impl: str, cp: int, elements: float) -> tuple[float, float]:
    """(forward, backward) HBM bytes of merging a rank's ring results: (c-1) x per-step + once, per element of its
    attention output (module docstring, RING_MERGE_BYTES); 0 without CP."""
    if cp <= 1:
        return 0.0, 0.0
    table = RING_MERGE_BYTES[impl]
    return tuple((cp - 1) * table[d][0] * elements + table[d][1] * elements for d in ("fwd", "bwd"))  # type: ignore[return-value]


def ring_comm_s(impl: str, cp: int, step_s: float, gather_s: float, grad_step_s: float, attn_fwd: float,
                attn_bwd: float, overlap: float, scatter_s: float = 0.0) -> tuple[float, float, float]:
    """(forward exposed, backward exposed, total) seconds of one layer's ring transfers (module docstring):
    ``step_s`` one K/V block's p2p, ``gather_s`` the all-gather of all c blocks, ``grad_step_s`` one fp32 K/V
    gradient block's p2p, ``scatter_s`` the reduce-scatter of all c gradient blocks (allgather), ``attn_fwd`` /
    ``attn_bwd`` the layer's attention kernel seconds they overlap."""
    if cp <= 1:
        return 0.0, 0.0, 0.0
    if impl == "allgather":  # exposed in the critical path
        return gather_s, gather_s + scatter_s, 2 * gather_s + scatter_s
    if impl == "torch-allgather":
        fwd = exposed_time(gather_s, attn_fwd / cp, overlap)
        bwd = (exposed_time(gather_s, attn_bwd / cp, overlap)
               + (cp - 1) * exposed_time(grad_step_s, attn_bwd / cp, overlap) + grad_step_s)
        return fwd, bwd, 2 * gather_s + cp * grad_step_s
    fwd_total, bwd_total = (cp - 1) * step_s, 2 * (cp - 1) * step_s
    return exposed_time(fwd_total, attn_fwd, overlap), exposed_time(bwd_total, attn_bwd, overlap), fwd_total + bwd_total
