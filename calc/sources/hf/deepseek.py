"""DeepSeek-V2/V3/R1 and Kimi K2 (MLA + DeepSeekMoE), with their multi-token-prediction modules."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, moe_layer_count, rope_scaling_factor


def deepseek(c: HFConfig, v3: bool) -> Mapping:
    num_layers = c.layers()
    routed = c.int("n_routed_experts", default=None)
    moe_layers = moe_layer_count(num_layers, c.int("first_k_dense_replace", default=0),
                                 c.divisor("moe_layer_freq", default=1)) if routed else 0
    shared = c.int("n_shared_experts", default=0) or 0
    expert_width = c.int("moe_intermediate_size")
    heads = c.int("num_attention_heads")
    bias = c.bool("attention_bias", default=False)
    spec: Mapping = {
        "num_layers": num_layers,
        "hidden_size": c.int("hidden_size"),
        "num_heads": heads,
        "num_kv_heads": heads,
        "head_dim": c.int("qk_nope_head_dim") + c.int("qk_rope_head_dim"),
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
        "mla": {
            "q_lora_rank": c.int("q_lora_rank", default=None),
            "kv_lora_rank": c.int("kv_lora_rank"),
            "qk_nope_head_dim": c.int("qk_nope_head_dim"),
            "qk_rope_head_dim": c.int("qk_rope_head_dim"),
            "v_head_dim": c.int("v_head_dim"),
        },
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
    return spec


MAPPERS = {
    "deepseek_v2": lambda c: deepseek(c, v3=False),
    "deepseek_v3": lambda c: deepseek(c, v3=True),
    "kimi_k2": lambda c: deepseek(c, v3=True),  # Kimi K2 ships DeepseekV3ForCausalLM
}
