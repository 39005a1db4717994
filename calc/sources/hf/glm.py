"""GLM-4.5 / GLM-4.5-Air (glm4_moe): dense first layers, shared expert, partial rotary, MTP layer."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like


def glm4_moe(c: HFConfig) -> Mapping:
    """modeling_glm4_moe: q/k/v with bias=attention_bias, o_proj without; optional q/k RMSNorm(head_dim)
    (use_qk_norm); layers i >= first_k_dense_replace are MoE with n_shared_experts shared experts and a
    router with e_score_correction_bias. partial_rotary_factor changes no shape."""
    c.use_defaults({"num_key_value_heads": 8, "max_position_embeddings": 131072})  # configuration_glm4_moe
    num_layers = c.layers()
    first_dense = c.int("first_k_dense_replace", default=1)
    shared = c.int("n_shared_experts", default=1)
    width = c.int("moe_intermediate_size")
    spec = llama_like(c, qkv_bias=c.bool("attention_bias", default=False),
                      qk_norm="head" if c.bool("use_qk_norm", default=False) else "none",
                      mtp_layers=c.int("num_nextn_predict_layers", default=0))
    spec["moe"] = {
        "num_experts": c.int("n_routed_experts"),
        "experts_per_token": c.int("num_experts_per_tok"),
        "expert_intermediate_size": width,
        "num_shared_experts": shared,
        "shared_intermediate_size": shared * width,
        "router_bias": True,
        "num_dense_layers": min(first_dense, num_layers),
    }
    return spec


MAPPERS = {"glm4_moe": glm4_moe}
