"""DeepSeek-V2/V3/R1 and Kimi K2 (MLA + DeepSeekMoE), with their multi-token-prediction modules."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, ffn_layout, moe_layer_set, rope_scaling_factor

# configuration_deepseek_v3 defaults for fields a config may leave out (the DeepSeek-V3 shapes).
DEEPSEEK_V3 = {"n_routed_experts": 256, "n_shared_experts": 1, "first_k_dense_replace": 3, "q_lora_rank": 1536,
               "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
               "num_experts_per_tok": 8, "moe_intermediate_size": 2048, "max_position_embeddings": 4096}


def _routed_experts(c: HFConfig, v3: bool) -> int | None:
    """n_routed_experts: None (V2 only) builds dense MLPs everywhere (modeling_deepseek_v2 checks
    ``n_routed_experts is not None``); V3 always builds its MoE layers, and a router over 0 experts cannot
    pick its top-k in either, so 0 (or V3's null) is refused rather than read as a dense model."""
    routed = c.int("n_routed_experts", default=None)
    if (routed is None and v3) or (routed is not None and routed < 1):
        raise c.fail("n_routed_experts", f"must be an integer >= 1 (the routed experts of each MoE layer), got {routed!r}; "
                     "for a dense model use a dense family (llama)")
    return routed


def mla_head_dim(c: HFConfig) -> int:
    """The query/key head width of MLA: qk_nope_head_dim + qk_rope_head_dim (modeling_deepseek_v3 qk_head_dim)."""
    return c.int("qk_nope_head_dim") + c.int("qk_rope_head_dim")


def mla(c: HFConfig, *, q_lora_optional: bool = False, v32: bool = False) -> Mapping:
    """MLA's latent ranks and head widths (modeling_deepseek_v3 DeepseekV3Attention: q_a/q_b when q_lora_rank is set,
    kv_a_proj_with_mqa, kv_b, o); ``q_lora_optional``: a null q_lora_rank is a plain q_proj (DeepSeek-V2-Lite).
    DeepSeek-V3.2 (``v32``) adds DSA's lightning indexer: index_n_heads heads of index_head_dim. Kimi Linear's
    KimiMLAAttention and LongCat-Flash's MLA read the same fields."""
    return {
        "q_lora_rank": c.int("q_lora_rank", default=None) if q_lora_optional else c.int("q_lora_rank"),
        "kv_lora_rank": c.int("kv_lora_rank"),
        "qk_nope_head_dim": c.int("qk_nope_head_dim"),
        "qk_rope_head_dim": c.int("qk_rope_head_dim"),
        "v_head_dim": c.int("v_head_dim"),
        "index_n_heads": c.int("index_n_heads", default=0) if v32 else 0,
        "index_head_dim": c.int("index_head_dim", default=0) if v32 else 0,
        "index_topk": c.int("index_topk", default=0) if v32 else 0,
    }


def deepseek(c: HFConfig, v3: bool, v32: bool = False) -> Mapping:
    if v3:
        c.use_defaults(DEEPSEEK_V3)
    num_layers = c.layers()
    routed = _routed_experts(c, v3)
    sparse = moe_layer_set(num_layers, c.int("first_k_dense_replace", default=0),
                           c.divisor("moe_layer_freq", default=1)) if routed else set()
    moe_layers = len(sparse)
    shared = c.int("n_shared_experts", default=0) or 0
    expert_width = c.int("moe_intermediate_size")
    heads = c.int("num_attention_heads")
    bias = c.bool("attention_bias", default=False)
    spec: Mapping = {
        "num_layers": num_layers,
        "hidden_size": c.int("hidden_size"),
        "num_heads": heads,
        "num_kv_heads": heads,
        "head_dim": mla_head_dim(c),
        "intermediate_size": c.int("intermediate_size"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "rope_scaling_factor": rope_scaling_factor(c),
        "tied_embeddings": c.bool("tie_word_embeddings", default=False),
        "norm": "rmsnorm",
        "gated_mlp": True,
        "activation": c.get("hidden_act", default="silu"),
        "qkv_bias": bias,
        "out_bias": bias,
        "mla": mla(c, q_lora_optional=True, v32=v32),
        # num_nextn_predict_layers: MTP modules in the checkpoint, not built by transformers.
        "mtp_layers": c.int("num_nextn_predict_layers", default=0),
    }
    if moe_layers:
        spec["moe"] = {
            "num_experts": routed,
            "experts_per_token": c.int("num_experts_per_tok"),
            "expert_intermediate_size": expert_width,
            "num_shared_experts": shared,
            "shared_intermediate_size": shared * expert_width,
            # V3's noaux_tc routing keeps a per-expert bias (e_score_correction_bias).
            "router_bias": v3 and c.get("topk_method", default="noaux_tc") == "noaux_tc",
            "num_dense_layers": num_layers - moe_layers,
        }
        spec |= ffn_layout(num_layers, sparse)
    return spec


MAPPERS = {
    "deepseek_v2": lambda c: deepseek(c, v3=False),
    "deepseek_v3": lambda c: deepseek(c, v3=True),
    "deepseek_v32": lambda c: deepseek(c, v3=True, v32=True),
    "kimi_k2": lambda c: deepseek(c, v3=True),  # Kimi K2 ships DeepseekV3ForCausalLM
}
