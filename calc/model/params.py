"""Exact parameter counts, per component and per layer kind (reference section 1).

Every weight matrix, bias and norm vector of the model is listed as a ``Tensor``; totals are
sums over that list, so the breakdown, the exact total, the active count and the matmul
weights used by the FLOP formulas can never disagree.
"""

from __future__ import annotations

from pydantic import BaseModel

from calc.memo import per_spec
from calc.model import shared_block
from calc.model.mixers import mixer_tensors
from calc.model.tensor import Tensor
from calc.model.tensor import linear as _linear
from calc.specs import ModelSpec

__all__ = ["Tensor", "count_params", "layer_kinds", "model_tensors", "tensor_copies"]


def _norm_size(m: ModelSpec, width: int) -> int:
    return width * (2 if m.has_norm_bias else 1)


def attention_tensors(m: ModelSpec) -> list[Tensor]:
    """Wq H*(h*d), Wk and Wv H*(g*d) each, Wo (h*d)*H, plus biases where the family has them.

    MLA (DeepSeek-V2 arXiv 2405.04434 eq. 9-19): q_a H*r_q (+ RMSNorm r_q) and
    q_b r_q*h*(d_nope+d_rope) (or q H*h*(d_nope+d_rope) without a q latent); kv_a
    H*(r_kv+d_rope) (+ RMSNorm r_kv); kv_b r_kv*h*(d_nope+d_v); o (h*d_v)*H.
    """
    H, h, g, d = m.hidden_size, m.num_heads, m.kv_heads, m.dim_per_head
    if m.mla:
        a = m.mla
        q_dim = h * (a.qk_nope_head_dim + a.qk_rope_head_dim)
        out: list[Tensor] = []
        if a.q_lora_rank:
            out += _linear("attention", "q_a_proj", H, a.q_lora_rank, m.qkv_bias, "H*r_q")
            out.append(Tensor("attention", a.q_lora_rank, f"q_a_layernorm: r_q = {a.q_lora_rank}"))
            out += _linear("attention", "q_b_proj", a.q_lora_rank, q_dim, False, "r_q*h*(d_nope+d_rope)")
        else:
            out += _linear("attention", "q_proj", H, q_dim, False, "H*h*(d_nope+d_rope)")
        kv_a = a.kv_lora_rank + a.qk_rope_head_dim
        out += _linear("attention", "kv_a_proj_with_mqa", H, kv_a, m.qkv_bias, "H*(r_kv+d_rope)")
        out.append(Tensor("attention", a.kv_lora_rank, f"kv_a_layernorm: r_kv = {a.kv_lora_rank}"))
        kv_b = h * (a.qk_nope_head_dim + a.v_head_dim)
        out += _linear("attention", "kv_b_proj", a.kv_lora_rank, kv_b, False, "r_kv*h*(d_nope+d_v)")
        out += _linear("attention", "o_proj", h * a.v_head_dim, H, m.out_bias, "h*d_v*H")
        if a.index_n_heads:  # DeepSeek-V3.2 lightning indexer (inference/model.py Indexer; vLLM deepseek_v2.py)
            n, di = a.index_n_heads, a.index_head_dim
            out += _linear("attention", "indexer.wq_b", a.q_lora_rank or H, n * di, False, "r_q*n_i*d_i")
            out += _linear("attention", "indexer.wk", H, di, False, "H*d_i")
            out.append(Tensor("attention", 2 * di, f"indexer.k_norm LayerNorm: 2*d_i = 2*{di}"))
            out += _linear("attention", "indexer.weights_proj", H, n, False, "H*n_i")
        return out
    gate = 2 if m.attention_output_gate else 1  # Qwen3-Next: q_proj emits the query and a sigmoid gate
    return [
        *_linear("attention", "q_proj", H, gate * h * d, m.qkv_bias, "H*2*h*d (query + gate)" if gate == 2 else "H*h*d"),
        *_linear("attention", "k_proj", H, g * d, m.qkv_bias, "H*g*d"),
        *_linear("attention", "v_proj", H, g * d, m.qkv_bias, "H*g*d"),
        *_linear("attention", "o_proj", h * d, H, m.out_bias, "h*d*H"),
        *attention_extras(m),
    ]


def attention_extras(m: ModelSpec) -> list[Tensor]:
    """Per-layer attention parameters beside the projections.

    q/k norms: 'head' = one d-wide RMSNorm for q and one for k, shared by the heads (Qwen3, Gemma 3:
    modeling_qwen3 Qwen3RMSNorm(head_dim)); 'full' = over the whole projection, h*d and g*d (OLMo 2:
    modeling_olmo2 q_norm(h*d), k_norm(g*d); Cohere: CohereLayerNorm((h, d)) and ((g, d))).
    Sinks: one learned logit per head (gpt-oss, modeling_gpt_oss ``self.sinks``: h).
    """
    h, g, d = m.num_heads, m.kv_heads, m.dim_per_head
    out: list[Tensor] = []
    if m.qk_norm == "head":
        out.append(Tensor("attention", 2 * d, f"q_norm + k_norm: 2*d = 2*{d}"))
    elif m.qk_norm == "full":
        n = _norm_size(m, (h + g) * d)
        out.append(Tensor("attention", n, f"q_norm + k_norm over the projections: (h+g)*d = ({h}+{g})*{d}"))
    if m.attention_sinks:
        out.append(Tensor("attention", h, f"attention sinks: h = {h}"))
    return out


def mlp_tensors(m: ModelSpec, width: int, component: str = "mlp", bias: bool | None = None) -> list[Tensor]:
    """Gated (SwiGLU/GeGLU): gate and up H*I, down I*H = 3*H*I. Plain: up H*I, down I*H = 2*H*I."""
    H, bias = m.hidden_size, m.mlp_bias if bias is None else bias
    up = ["gate_proj", "up_proj"] if m.gated_mlp else ["up_proj"]
    out = [t for name in up for t in _linear(component, name, H, width, bias, "H*I")]
    return out + _linear(component, "down_proj", width, H, bias, "I*H")


def moe_tensors(m: ModelSpec) -> list[Tensor]:
    """E routed experts of 3*H*I_e (k active per token), router H*E, shared experts, their gate. With Z zero-computation
    (identity) experts (LongCat-Flash, modeling_longcat_flash LongcatFlashTopkRouter) the router and its correction bias
    span E+Z slots while only the E FFN experts hold weights."""
    assert m.moe is not None
    e, H = m.moe, m.hidden_size
    experts = [
        Tensor(
            "experts",
            e.num_experts * t.params,
            f"{e.num_experts} experts x {t.formula} (top-{e.experts_per_token} active)",
            active=e.experts_per_token * t.params,
            matmul=e.experts_per_token * t.params,
            shape=t.shape,
            name=t.name,
        )
        for t in mlp_tensors(m, e.expert_intermediate_size, bias=False)
    ]
    if e.expert_bias:  # gpt-oss: gate_up_proj_bias (E, 2I) and down_proj_bias (E, H)
        width = e.expert_intermediate_size * (2 if m.gated_mlp else 1) + H
        experts.append(Tensor("experts", e.num_experts * width, f"expert biases: E*({'2' if m.gated_mlp else ''}I_e+H) = "
                              f"{e.num_experts}*{width}", active=e.experts_per_token * width))
    slots, over = e.router_slots, ("(E+Z)", f"E+Z = {e.num_experts}+{e.zero_experts}") if e.zero_experts else ("E", "E")
    out = [
        *experts,
        *_linear("router", "router", H, slots, e.router_linear_bias, f"H*{over[0]}"),
    ]
    if e.router_bias:
        out.append(Tensor("router", slots, f"e_score_correction_bias: {over[1]} = {slots}"))
    if e.num_shared_experts:
        out += mlp_tensors(m, e.shared_intermediate_size, "shared_experts", bias=False)
    if e.shared_expert_gate:
        out += _linear("shared_experts", "shared_expert_gate", H, 1, False, "H*1")
    return out


def layer_tensors(m: ModelSpec, moe_layer: bool, mixer: str = "attention", ffn: str | None = None) -> list[Tensor]:
    """One block: its token mixer (``mixer``: 'attention', 'linear' = the model's state-space / linear-attention
    mixer, 'none'; a parallel mixer (Falcon-H1) sits beside attention), its FFN (``ffn``: 'dense', 'moe',
    'none'; default from ``moe_layer``) and its norms."""
    ffn = ffn or ("moe" if moe_layer else "dense")
    norms = m.norms_per_layer * _norm_size(m, m.hidden_size)
    out: list[Tensor] = []
    if mixer == "attention" and m.shared_block:  # Zamba2: the shared block (stored once) + this position's own
        out += shared_block.used_tensors(m) + shared_block.position_tensors(m)
    elif mixer == "attention":
        out += attention_tensors(m)
    if m.mixer and (mixer == "linear" or (mixer == "attention" and m.mixer.parallel)):
        out += mixer_tensors(m.mixer, m.hidden_size)
    if ffn == "moe":
        out += moe_tensors(m)
    elif ffn == "dense":
        out += mlp_tensors(m, m.intermediate_size)
        if m.activation == "xielu":  # transformers XIELUActivation: alpha_p, alpha_n are (1,) parameters per MLP
            out.append(Tensor("mlp", 2, "xIELU alpha_p + alpha_n = 2"))
    per_norm = "2*H" if m.has_norm_bias else "H"
    return [*out, Tensor("norms", norms, f"{m.norms_per_layer} {m.norm} x {per_norm} = {norms}")]


def model_tensors(m: ModelSpec) -> list[Tensor]:
    """Everything outside the blocks: embeddings, positions, final norm, output head, and Zamba2's shared
    transformer blocks (stored once, calc.model.shared_block)."""
    H, V = m.hidden_size, m.vocab_size
    out = [Tensor("embedding", V * H, f"token embedding: V*H = {V}*{H}")]
    if m.position_embedding == "learned":
        rows = m.max_position_embeddings + m.position_offset
        offset = f" (incl. offset {m.position_offset})" if m.position_offset else ""
        out.append(Tensor("position_embedding", rows * H, f"learned positions: P*H = {rows}*{H}{offset}"))
    if m.embedding_norm:
        out.append(Tensor("norms", _norm_size(m, H), f"embedding {m.norm}: {_norm_size(m, H)}"))
    if m.final_norm:
        out.append(Tensor("norms", _norm_size(m, H), f"final {m.norm}: {_norm_size(m, H)}"))
    if m.shared_block:
        out += shared_block.stored_tensors(m)
    if m.vision_params:
        out.append(Tensor("vision", m.vision_params, f"vision tower + projector: {m.vision_params:,} (not active for text)",
                          active=0))
    if m.tied_embeddings:
        out.append(Tensor("lm_head", 0, "output head tied to the embedding: 0 new", matmul=V * H, shape=(H, V),
                          name="lm_head"))
    else:
        out += _linear("lm_head", "lm_head", H, V, m.lm_head_bias, "H*V")
    return out


def mtp_tensors(m: ModelSpec) -> list[Tensor]:
    """Multi-token-prediction modules shipped beside the main model, as the checkpoint stores them
    (DeepSeek-V3 arXiv 2412.19437 section 2.2; layer 61 of its checkpoint, layer 92 of GLM-4.5):
    per module enorm + hnorm (2H), eh_proj 2H*H, one decoder block (MoE when the model has experts),
    shared_head.norm H, and its own copy of the embedding and output head (2*V*H) unless ``mtp_own_embeddings`` is
    off: Qwen3-Next's module (vLLM qwen3_next_mtp.py Qwen3NextMultiTokenPredictor: pre_fc_norm_embedding +
    pre_fc_norm_hidden, fc 2H -> H without bias, one full-attention decoder layer, norm) reads the main model's
    embed_tokens and lm_head. A hybrid model's MTP block is a full-attention one."""
    if not m.mtp_layers:
        return []
    H, V = m.hidden_size, m.vocab_size
    one = [
        Tensor("mtp", 2 * H, f"enorm + hnorm: 2*H = 2*{H}"),
        Tensor("mtp", 2 * H * H, f"eh_proj: 2H*H = {2 * H}*{H}"),
        *[Tensor("mtp", t.params, t.formula, active=t.active, matmul=t.matmul, shape=t.shape, name=t.name)
          for t in layer_tensors(m, moe_layer=bool(m.moe))],
        Tensor("mtp", H, f"shared_head.norm: H = {H}"),
    ]
    if m.mtp_own_embeddings:
        one.append(Tensor("mtp", 2 * V * H, f"embed_tokens + shared_head.head: 2*V*H = 2*{V}*{H}"))
    return [t for _ in range(m.mtp_layers) for t in one]


class LayerKind(BaseModel):
    """A kind of block (dense or MoE) with how many the model has and what one holds."""

    kind: str
    count: int
    params_per_layer: int
    active_params_per_layer: int
    components: dict[str, int]
    formulas: list[str]


class ParamCount(BaseModel):
    """Exact parameter count with its breakdown and the seed's textbook approximation."""

    model: str
    total_params: int
    active_params: int
    components: dict[str, int]
    active_components: dict[str, int]
    layer_kinds: list[LayerKind]
    matmul_params: int  # weights multiplied per token (active experts, head incl. when tied)
    textbook_params: int
    textbook_diff_pct: float
    mtp_params: int = 0  # multi-token-prediction modules, not in total_params (transformers does not build them)
    total_params_with_mtp: int = 0
    explain: list[str]


def _sum_by_component(tensors: list[Tensor], active: bool = False) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tensors:
        out[t.component] = out.get(t.component, 0) + (t.active_params if active else t.params)
    return out


def _mixer_class(kind: str) -> str:
    return kind if kind in ("linear", "none") else "attention"


def layer_signatures(m: ModelSpec) -> list[tuple[str, str]]:
    """(mixer, ffn) of each layer in order: mixer 'attention' (full / sliding / chunked alike), 'linear' or
    'none' from layer_types; ffn from ffn_types, else dense, or MoE after moe.num_dense_layers."""
    kinds = m.layer_types or ["full"] * m.num_layers
    if m.ffn_types is not None:
        ffns: list[str] = list(m.ffn_types)
    elif m.moe:
        ffns = ["dense"] * m.moe.num_dense_layers + ["moe"] * (m.num_layers - m.moe.num_dense_layers)
    else:
        ffns = ["dense"] * m.num_layers
    return [(_mixer_class(k), f) for k, f in zip(kinds, ffns, strict=True)]


def _kind_name(m: ModelSpec, mixer: str, ffn: str) -> str:
    """'dense' / 'moe' for transformer blocks (as before hybrids); else e.g. 'mamba2', 'gated_deltanet+moe',
    'attention+mlp', 'mlp'."""
    if mixer == "attention" and not m.mixer:
        return ffn if ffn != "none" else "attention"
    kind = m.mixer.kind if m.mixer else "linear"
    attention = "shared_block" if m.shared_block else "attention"
    head = {"linear": kind, "none": "", "attention": attention + (f"+{kind}" if m.mixer and m.mixer.parallel else "")}[mixer]
    tail = {"dense": "mlp", "moe": "moe", "none": ""}[ffn]
    return "+".join(p for p in (head, tail) if p) or "empty"


def layer_blocks(m: ModelSpec) -> list[tuple[str, list[Tensor]]]:
    """(kind, tensors) of each of the num_layers blocks in order; blocks of one kind share one tensor list."""
    signatures = layer_signatures(m)
    cache = {sig: (_kind_name(m, *sig), layer_tensors(m, sig[1] == "moe", *sig)) for sig in set(signatures)}
    return [cache[sig] for sig in signatures]


@per_spec
def layer_kinds(m: ModelSpec) -> tuple[tuple[str, int, tuple[Tensor, ...]], ...]:
    """(kind, count, tensors of one block) for each kind of block the model has, in order of first use
    (a DeepSeek-style MoE: 'dense' then 'moe'; Qwen3-Next: 'gated_deltanet+moe' then 'attention+moe').
    Worked out once per spec (calc.memo): a layout search asks it for every layout."""
    counts: dict[str, int] = {}
    tensors: dict[str, list[Tensor]] = {}
    for name, ts in layer_blocks(m):
        counts[name] = counts.get(name, 0) + 1
        tensors[name] = ts
    return tuple((name, counts[name], tuple(tensors[name])) for name in counts)


@per_spec
def total_params(m: ModelSpec) -> int:
    """count_params(m).total_params, worked out once per spec (calc.memo)."""
    return count_params(m).total_params


def tensor_copies(m: ModelSpec, with_mtp: bool = False) -> list[tuple[Tensor, int]]:
    """Every tensor of the model with the number of copies it holds (per-layer tensors x block count)."""
    out = [(t, count) for _, count, tensors in layer_kinds(m) for t in tensors]
    out += [(t, 1) for t in model_tensors(m)]
    return out + ([(t, 1) for t in mtp_tensors(m)] if with_mtp else [])


def textbook_params(m: ModelSpec) -> int:
    """Seed 001 section 2.10: N ~= 12*L*H^2 + V*H (4H^2 attention + 8H^2 MLP per layer, tied embedding)."""
    return 12 * m.num_layers * m.hidden_size**2 + m.vocab_size * m.hidden_size


def count_params(m: ModelSpec) -> ParamCount:
    """Exact parameters of ``m``: total, active per token (MoE top-k), and per component.

    total = sum over block kinds of count * params(block) + embedding (V*H) + positions
    + final/embedding norms + output head (V*H, 0 if tied, + V if it has a bias).

    >>> from calc.sources.catalog import load_model
    >>> count_params(load_model("llama2-7b")).total_params
    6738415616
    """
    everything: list[Tensor] = []
    kinds: list[LayerKind] = []
    for kind, count, tensors in layer_kinds(m):
        everything += [t for t in tensors for _ in range(count)]
        kinds.append(
            LayerKind(
                kind=kind,
                count=count,
                params_per_layer=sum(t.params for t in tensors),
                active_params_per_layer=sum(t.active_params for t in tensors),
                components=_sum_by_component(tensors),
                formulas=[t.formula for t in tensors],
            )
        )
    outside = model_tensors(m)
    everything += outside
    total = sum(t.params for t in everything)
    textbook = textbook_params(m)
    explain = [f"{k.count} x {k.kind} block = {k.count} x {k.params_per_layer:,}" for k in kinds]
    explain += [f"  {f}" for k in kinds for f in k.formulas]
    explain += [t.formula for t in outside]
    explain.append(f"total = {total:,}")
    mtp = sum(t.params for t in mtp_tensors(m))
    if mtp:
        explain.append(f"MTP modules ({m.mtp_layers}) = {mtp:,}; with MTP = {total + mtp:,} (main model above)")
    explain.append(
        f"textbook 12*L*H^2 + V*H = 12*{m.num_layers}*{m.hidden_size}^2 + {m.vocab_size}*{m.hidden_size}"
        f" = {textbook:,} ({100 * (textbook - total) / total:+.2f}% vs exact)"
    )
    return ParamCount(
        model=m.name,
        total_params=total,
        active_params=sum(t.active_params for t in everything),
        components=_sum_by_component(everything),
        active_components=_sum_by_component(everything, active=True),
        layer_kinds=kinds,
        matmul_params=sum(t.matmul for t in everything),
        textbook_params=textbook,
        textbook_diff_pct=100 * (textbook - total) / total,
        mtp_params=mtp,
        total_params_with_mtp=total + mtp,
        explain=explain,
    )
