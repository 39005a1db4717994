"""Saved activations of a hybrid model's layers (state-space / linear-attention mixers, attention-only and MLP-only
blocks), layer kind by layer kind, as the training engine's one "layer" (calc.memory.activations.layer_buffers).

A transformer's blocks are all alike: attention + MLP, priced tensor by tensor by ``block_buffers``. A hybrid's are not
(Nemotron-H 8B: 24 Mamba-2 blocks, 24 MLP blocks, 4 attention blocks, each one mixer or one MLP behind its own norm;
Qwen3-Next: Gated DeltaNet + MoE three layers in four, attention + MoE the fourth), so pricing each of its layers as
attention + MLP over-counts (Nemotron-H 8B at 8K tokens: 1.07 GB a layer against 0.80 GB on average). Here the
transformer block's tensors are split into their attention part, their MLP part and the rest (``PART``), each part
weighted by the share of the layers that have it, and the mixers' own tensors (``mixer_buffers``) by the share of the
layers that run them: the mean layer, whose sum x the layers a rank holds is the rank's activations. Each buffer keeps
its one-layer size (``Buffer.one_layer``) for the backward workspace. Mixers whose saved tensors are not read here
(Mamba-1, KDA, short convolution, lightning attention) are priced as attention, and the explain line says so.
Recomputation other than none / selective / full (SAC, dots, DeepSeek's, Megatron's module lists) still prices the
transformer block's.
"""

from __future__ import annotations

import math

from calc.memory.buffers import Buffer, LayerSetup
from calc.model.params import layer_signatures
from calc.specs import ModelSpec

# The transformer block's buffers by part (calc.memory.activations.block_buffers names): the attention sub-block's, the
# MLP sub-block's; the first norm's input is the mixer's (mean_layer_buffers), every other buffer (post-norms, residual
# dropout masks, adapters) a layer's whatever its kind.
ATTENTION_PART = ("q/k/v input", "Q, K, V after RoPE", "MLA latents", "attention output O",
                  "o_proj input", "log-sum-exp", "softmax(QK^T) scores", "attention dropout")
MLP_PART = ("mlp norm input", "gate/up input", "MLP up output", "activation output", "down input", "MoE routed token",
            "router probabilities")
# Mixers whose saved tensors mixer_buffers prices; the rest are priced as attention
PRICED_MIXERS = ("mamba2", "gated_deltanet")

_SRC_MAMBA2 = ("Megatron-Core ssm/mamba_mixer.py MambaMixer._ssm_training (NVIDIA/Megatron-LM d98e8a6): in_proj is TE "
               "LayerNormColumnParallelLinear (keeps its input, the normalised input and 1/rms); mamba_ssm "
               "ops/triton/ssd_combined.py MambaSplitConv1dScanCombinedFn saves zxbcdt and the ungated y (out_x), "
               "recomputing the conv, dt, the chunk states and CB; the gated RMSNorm (layernorm_gated.py LayerNormFn) "
               "keeps its input and fp32 1/rms per group; TE out_proj keeps its input")
_SRC_GDN = ("fla-org/flash-linear-attention bc3b101 layers/gated_deltanet.py + ops/gated_delta_rule/chunk.py "
            "ChunkGatedDeltaRuleFunction.save_for_backward (q, k l2-normed + fp32 rstd, v, fp32 cumulative gate, beta "
            "raw and fp32, gate input, the intra-chunk matrix A of T x HV x BT); conv1d keeps its input; "
            "fused_norm_gate.py keeps o, the gate and fp32 1/rms; o_proj keeps its input; chunk states recomputed")


def is_hybrid(m: ModelSpec) -> bool:
    """Whether the model's layers differ in kind: a state-space / linear mixer, or a block without attention or MLP."""
    return m.mixer is not None or any(mixer != "attention" or ffn == "none" for mixer, ffn in layer_signatures(m))


def part_of(name: str) -> str:
    """"attention", "mlp" or "layer" (``ATTENTION_PART`` / ``MLP_PART`` by name prefix)."""
    if name.startswith(ATTENTION_PART):
        return "attention"
    return "mlp" if name.startswith(MLP_PART) else "layer"


def mixer_buffers(m: ModelSpec, tokens: int, s: LayerSetup) -> list[Buffer]:
    """One mixer's saved tensors for ``tokens`` tokens, its block's norm input aside (the block's "attn norm input",
    ``mean_layer_buffers``) (b = act bytes, gi = saved GEMM input bytes; widths / t, the block's input / SP).
    Mamba-2 (H, D = heads x head dim, G groups, N state, nh heads; Megatron-Core):
        norm input H*b + 4, in_proj input H*gi, zxbcdt (2D + 2GN + nh)*b, y D*b, gated y D*b, 1/rms 4G, out_proj in D*gi
      = 4H + 4 + 10D + 4GN + 2nh + 4G bytes a token in bf16 (Nemotron-H 8B: H 4096, D 8192, G 8, N 128, nh 128: 102,692).
    Gated DeltaNet (d = H, Kd key width = key heads Hk x dk, Vd = HV value heads x dv, BT the chunk; fla's layer
    behind the block's norm):
        norm input d*b + 4, projections' input d*b, conv input (2Kd + Vd)*b, q and k l2-normed 2Kd*b + fp32 rstd 8Hk,
        v Vd*b, gate cumsum 4HV, beta 2HV + 4HV, gate input 2HV, A BT*HV*b, norm o + gate 2Vd*b + 4HV, o_proj in Vd*b
      = 4d + 4 + 8Kd + 10Vd + 8Hk + 16HV + 2 BT HV bytes a token in bf16 (Qwen3-Next: d 2048, Kd 2048, Vd 4096,
        Hk 16, HV 32, BT 64: 70,276)."""
    x = m.mixer
    assert x is not None and x.kind in PRICED_MIXERS
    b, tp = s.act_bytes, s.tp
    gi = s.gemm_input_bytes or b
    sp = tp if s.sp else 1
    H = m.hidden_size
    out: list[Buffer] = []

    def add(name: str, per_token: float, div: int, formula: str, source: str) -> None:
        n = math.ceil(tokens * per_token / div)
        out.append(Buffer(name, n, f"{formula} = {n:,} B", source))

    if x.kind == "mamba2":
        D, G, N, nh = x.d_inner, x.n_groups, x.state_size, x.num_heads
        add("in_proj input (norm output)", H * gi, sp, f"tokens*H*{gi:g} = {tokens}*{H}*{gi:g}", _SRC_MAMBA2)
        add("zxbcdt (in_proj output: z, x, B, C, dt)", (2 * D + 2 * G * N + nh) * b, tp,
            f"tokens*(2D + 2GN + nh)*{b}/t = {tokens}*{2 * D + 2 * G * N + nh}*{b}/{tp}", _SRC_MAMBA2)
        add("SSD output y (ungated) + gated y (norm input)", 2 * D * b, tp, f"tokens*2D*{b}/t = {tokens}*{2 * D}*{b}/{tp}",
            _SRC_MAMBA2)
        add("gated RMSNorm 1/rms (fp32, per group)", 4 * G, tp, f"tokens*G*4/t = {tokens}*{G}*4/{tp}", _SRC_MAMBA2)
        add("out_proj input (norm output)", D * gi, tp, f"tokens*D*{gi:g}/t = {tokens}*{D}*{gi:g}/{tp}", _SRC_MAMBA2)
        return out
    Kd, Vd, Hk, HV, BT = x.n_groups * x.state_size, x.d_inner, x.n_groups, x.num_heads, x.chunk_size
    add("projections' input (norm output)", H * gi, sp, f"tokens*d*{gi:g} = {tokens}*{H}*{gi:g}", _SRC_GDN)
    add("conv input (q, k, v) + v + norm o, gate + o_proj input", (2 * Kd + 5 * Vd) * b, tp,
        f"tokens*(2Kd + 5Vd)*{b}/t = {tokens}*{2 * Kd + 5 * Vd}*{b}/{tp}", _SRC_GDN)
    add("q, k l2-normed + their fp32 1/norm", 2 * Kd * b + 8 * Hk, tp,
        f"tokens*(2Kd*{b} + 8Hk)/t = {tokens}*({2 * Kd}*{b} + {8 * Hk})/{tp}", _SRC_GDN)
    add("gate cumsum, beta, gate input, norm 1/rms (fp32 / bf16)", 16 * HV, tp, f"tokens*16HV/t = {tokens}*{16 * HV}/{tp}",
        _SRC_GDN)
    add("intra-chunk matrix A", BT * HV * b, tp, f"tokens*BT*HV*{b}/t = {tokens}*{BT}*{HV}*{b}/{tp}", _SRC_GDN)
    return out


def mean_layer_buffers(m: ModelSpec, block: list[Buffer], tokens: int, s: LayerSetup) -> list[Buffer]:
    """The hybrid's mean layer (module docstring): each of the transformer ``block``'s buffers x the share of the layers
    with its part, and the mixer's own (``mixer_buffers``) x the share running it; ``one_layer`` keeps each size."""
    signatures = layer_signatures(m)
    priced = m.mixer is not None and m.mixer.kind in PRICED_MIXERS
    L = len(signatures)
    mixers = sum(mixer == "linear" or (m.mixer is not None and m.mixer.parallel and mixer == "attention")
                 for mixer, _f in signatures)
    counts = {"attention": sum(mixer == "attention" or (mixer == "linear" and not priced) for mixer, _f in signatures),
              "mlp": sum(ffn != "none" for _m, ffn in signatures), "layer": L,
              "mixer norm": sum(mixer != "none" for mixer, _f in signatures)}
    unpriced = "" if priced or m.mixer is None else f"; {m.mixer.kind} layers priced as attention (their tensors unread)"
    out = []
    # the block's first norm: every layer's one norm (a block of one sub-block: Nemotron-H), else the mixer's
    first_norm = "layer" if m.norms_per_layer == 1 else "mixer norm"
    for buf, count in [(b, counts[first_norm if b.name == "attn norm input" else part_of(b.name)]) for b in block] + \
            [(b, mixers) for b in (mixer_buffers(m, tokens, s) if priced else [])]:
        if count:
            attention = part_of(buf.name) == "attention" and buf.name != "attn norm input"
            note = ("" if count == L else f" x {count}/{L} layers") + (unpriced if attention else "")
            out.append(Buffer(buf.name, math.ceil(buf.bytes * count / L), buf.formula + note, buf.source,
                              one_layer=buf.bytes))
    return out
