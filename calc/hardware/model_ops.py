"""The operations one decoder layer (plus the output head) runs, at real shapes, as TP slices them.

Pure arithmetic, no torch: `bench --model` times exactly these ops, and a calibration stores them.

GEMMs come from the model's tensor table (calc.model.params via calc.model.flops.arithmetic_intensity),
so QKV, output projection, gate/up, down, routed experts (grouped: E touched experts, each seeing
tokens*k/E rows) and lm_head have the shapes the parameter count uses. Megatron-LM tensor parallelism
(Shoeybi et al. 2019, section 3), one split for every command (calc.model.parallel.tp_shard): column-parallel
matrices (q/k/v, gate/up, lm_head, MLA's q_b/kv_b) split their output width N by t; row-parallel ones
(o_proj, down_proj) split their input width K by t; the small latent projections and the router stay whole.
Attention (SDPA): FLOPs 2*h*(d_qk+d_v) per (query, key) pair; causal prefill has S(S+1)/2 pairs,
a decode step B*context. Norms and the gated activation are memory-bound: bytes read + written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from calc.model.flops import arithmetic_intensity, attention_dims
from calc.model.parallel import check_layout, kv_heads_per_gpu, tp_shard
from calc.specs import ModelSpec, Parallelism

SCORE_MATMULS = ("attention.scores", "attention.weighted_sum")


@dataclass(frozen=True)
class SizePlan:
    """Token counts a bench measures: prefill tokens (one sequence), decode batches at one context."""

    prefill_tokens: tuple[int, ...]
    decode_batches: tuple[int, ...]
    context: int
    repeats: int


SIZE_PLANS = {
    # CI-speed: llama2-7b runs in a few seconds on two CPU cores.
    "small": SizePlan(prefill_tokens=(16, 64), decode_batches=(1, 4), context=128, repeats=2),
    "full": SizePlan(prefill_tokens=(512, 2048, 8192), decode_batches=(1, 8, 32, 128), context=4096, repeats=10),
}


@dataclass(frozen=True)
class Op:
    """One op to time. kind: gemm | attention | memory. For a GEMM, ``count`` independent
    [m,k]@[k,n] products (count > 1: grouped expert GEMM). For attention: q/kv heads, head dims,
    query length ``m`` per sequence, ``count`` sequences, ``context`` keys. For memory ops: ``elements``."""

    kind: str
    label: str
    phase: str  # prefill | decode
    tokens: int
    flops: float
    elements_moved: float  # elements read + written, times the element size gives bytes
    m: int = 0
    k: int = 0
    n: int = 0
    count: int = 1
    heads: int = 0
    kv_heads: int = 0
    d_qk: int = 0
    d_v: int = 0
    context: int = 0
    elements: int = 0
    norm: str = ""


def gemm_ops(m: ModelSpec, tokens: int, phase: str, tp: int = 1) -> list[Op]:
    """The layer's GEMMs and the head for ``tokens`` rows, sliced for TP degree ``tp``."""
    seq, batch = (tokens, 1) if phase == "prefill" else (1, tokens)
    table = arithmetic_intensity(m, batch, seq, seq if phase == "prefill" else seq + 1)
    out = []
    for g in table.gemms:
        if g.name in SCORE_MATMULS:
            continue  # timed together as SDPA (attention_op)
        name = g.name.split(".", 1)[1]
        k, n = tp_shard(name, g.k, g.n, tp)
        rows = math.ceil(g.m)
        out.append(Op("gemm", g.name, phase, tokens, flops=2.0 * rows * k * n * g.count,
                      elements_moved=float((rows * k + k * n + rows * n) * g.count), m=rows, k=k, n=n, count=g.count))
    return out


def attention_op(m: ModelSpec, phase: str, tokens: int, context: int, tp: int = 1) -> Op:
    """SDPA of one layer: causal prefill over ``tokens`` (one sequence), or one decode step of
    ``tokens`` sequences against ``context`` cached keys."""
    d_qk, d_v = attention_dims(m)
    heads = math.ceil(m.num_heads / tp)
    kv_heads = heads if m.mla else kv_heads_per_gpu(m, tp)
    if phase == "prefill":
        queries, keys, seqs, pairs = tokens, tokens, 1, tokens * (tokens + 1) // 2
    else:
        queries, keys, seqs, pairs = 1, context, tokens, tokens * context
    elements = seqs * (heads * queries * (d_qk + d_v) + kv_heads * keys * (d_qk + d_v))  # q + out, k + v
    return Op("attention", f"attention.sdpa ({'causal' if phase == 'prefill' else f'context {context}'})", phase, tokens,
              flops=2.0 * heads * (d_qk + d_v) * pairs, elements_moved=float(elements), m=queries, count=seqs,
              heads=heads, kv_heads=kv_heads, d_qk=d_qk, d_v=d_v, context=keys)


def memory_ops(m: ModelSpec, phase: str, tokens: int, tp: int = 1) -> list[Op]:
    """A norm over [tokens, H] (read + write) and the MLP activation over [rows, I/t] (gated: read gate and up, write
    one; plain: read one, write one). rows = tokens for a dense MLP; for routed experts every token's k copies run
    the activation, rows = tokens x k, at the expert width I_e (Megatron-Core's grouped MLP applies it to the permuted
    [T k, I_e] activations)."""
    width = m.moe.expert_intermediate_size if m.moe else m.intermediate_size
    rows = tokens * m.moe.experts_per_token if m.moe else tokens
    inner = math.ceil(width / tp)
    act_read = 2 if m.gated_mlp else 1
    return [
        Op("memory", f"{m.norm}", phase, tokens, flops=0.0, elements_moved=2.0 * tokens * m.hidden_size,
           elements=tokens * m.hidden_size, n=m.hidden_size, norm=m.norm),
        Op("memory", f"{m.activation}{' x up' if m.gated_mlp else ''}{f' (routed: {rows // tokens} copies per token)' if m.moe else ''}",
           phase, rows, flops=0.0,
           elements_moved=float((act_read + 1) * rows * inner), elements=rows * inner, n=inner,
           norm="gated" if m.gated_mlp else "plain"),
    ]


def copy_op(elements: int) -> Op:
    """A device copy of ``elements`` (read once, written once): the HBM-bandwidth probe."""
    return Op("memory", "copy", "any", 0, flops=0.0, elements_moved=2.0 * elements, elements=elements, norm="copy")


def model_ops(m: ModelSpec, plan: SizePlan, tp: int = 1) -> list[Op]:
    """Every op of one layer + head at each prefill token count and decode batch of the plan."""
    check_layout(m, Parallelism(tp=tp))
    ops: list[Op] = []
    for tokens in plan.prefill_tokens:
        ops += gemm_ops(m, tokens, "prefill", tp) + [attention_op(m, "prefill", tokens, tokens, tp)]
        ops += memory_ops(m, "prefill", tokens, tp)
    for batch in plan.decode_batches:
        ops += gemm_ops(m, batch, "decode", tp) + [attention_op(m, "decode", batch, plan.context, tp)]
        ops += memory_ops(m, "decode", batch, tp)
    return ops
