"""LongCat-Flash (Meituan, longcat_flash; arXiv 2509.01322): MLA, two attention + two dense MLP sublayers per layer,
and a shortcut-connected MoE whose router also picks zero-computation (identity) experts."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, rope_scaling_factor
from calc.sources.hf.deepseek import mla, mla_head_dim

# configuration_longcat_flash defaults (transformers main): the LongCat-Flash-Chat shapes.
LONGCAT_FLASH = {"vocab_size": 131072, "hidden_size": 6144, "num_layers": 28, "num_attention_heads": 64,
                 "max_position_embeddings": 131072, "ffn_hidden_size": 12288, "q_lora_rank": 1536, "kv_lora_rank": 512,
                 "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "moe_topk": 12,
                 "n_routed_experts": 512, "zero_expert_num": 256, "expert_ffn_hidden_size": 2048}


def _ffn_experts_per_token(c: HFConfig, top_k: int, routed: int, zero: int) -> int:
    """FFN experts a token reaches: top_k of the routed + zero slots pick routed ones in proportion,
    k*E/(E+Z) (12*512/768 = 8 for LongCat-Flash; the report's 27B average activation, section 2.1, is this
    expectation: its expert-bias controller keeps the FFN share of the top-k at E/(E+Z)). Rounded, at least 1."""
    if not zero:
        return top_k
    share = max(1, round(top_k * routed / (routed + zero)))
    c.derived.setdefault("moe_topk", f"{share} FFN experts per token ({top_k} x {routed} / ({routed}+{zero}) slots)")
    return share


def longcat_flash(c: HFConfig) -> Mapping:
    """modeling_longcat_flash LongcatFlashDecoderLayer: each of the num_layers layers holds self_attn[0..1] (MLA with
    a q latent: q_a, q_a_layernorm, q_b, kv_a_proj_with_mqa, kv_a_layernorm, kv_b, o, as DeepSeek-V3), mlps[0..1]
    (gated MLPs of ffn_hidden_size), input_layernorm[0..1] + post_attention_layernorm[0..1], and one MoE (``mlp``)
    fed from the first post-attention norm, its output added after the second MLP (the shortcut).

    We map it onto 2*num_layers sublayers, as transformers' cache does (num_hidden_layers = 2 * num_layers):
    sublayer 2i = attention + mlps[0] + the MoE, sublayer 2i+1 = attention + mlps[1]. mlps[0] and the MoE read the
    same input and sum into the residual stream, so the MoE sublayer is an MoE with one always-active "shared expert"
    of ffn_hidden_size: the same weights and FLOPs. The MoE: router classifier Linear(H, E+Z) (bias=router_bias),
    e_score_correction_bias (E+Z), E = n_routed_experts FFN experts of expert_ffn_hidden_size and Z = zero_expert_num
    identity experts without weights. transformers' fused LongcatFlashExperts allocates gate_up_proj for all E+Z
    slots; the checkpoint holds E experts (experts.0 .. experts.{E-1}), which is what we count. The MTP module
    (model.mtp.*) is skipped by transformers (_keys_to_ignore_on_load_unexpected) and not counted."""
    c.use_defaults(LONGCAT_FLASH)
    layers = c.layers("num_layers")
    heads = c.int("num_attention_heads")
    routed, zero, top_k = c.int("n_routed_experts"), c.int("zero_expert_num"), c.int("moe_topk")
    if routed < 1:
        raise c.fail("n_routed_experts", f"must be an integer >= 1, got {routed}")
    if zero < 0 or top_k < 1 or top_k > routed + zero:
        raise c.fail("moe_topk", f"must be in 1..n_routed_experts + zero_expert_num ({routed + zero}), got {top_k}")
    ffn = c.int("ffn_hidden_size")
    bias = c.bool("attention_bias", default=False)
    return {
        "num_layers": 2 * layers,
        "hidden_size": c.int("hidden_size"),
        "num_heads": heads,
        "num_kv_heads": heads,
        "head_dim": mla_head_dim(c),
        "intermediate_size": ffn,
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings"),
        "rope_scaling_factor": rope_scaling_factor(c),
        "tied_embeddings": c.bool("tie_word_embeddings", default=False),
        "norm": "rmsnorm",
        "gated_mlp": True,
        "activation": c.get("hidden_act", default="silu"),
        "qkv_bias": bias,
        "out_bias": bias,
        "mla": mla(c),
        "ffn_types": ["moe", "dense"] * layers,
        "moe": {
            "num_experts": routed,
            "experts_per_token": _ffn_experts_per_token(c, top_k, routed, zero),
            "expert_intermediate_size": c.int("expert_ffn_hidden_size"),
            "num_shared_experts": 1,
            "shared_intermediate_size": ffn,
            "router_bias": True,
            "router_linear_bias": c.bool("router_bias", default=False),
            "zero_experts": zero,
        },
    }


MAPPERS = {"longcat_flash": longcat_flash}
