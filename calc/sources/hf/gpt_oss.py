"""gpt-oss (OpenAI, arXiv 2508.10925): attention sinks, alternating 128-token sliding window, MoE with biases."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like

# configuration_gpt_oss defaults for fields a config may leave out (head_dim 64 is not 2880 / 64 = 45).
GPT_OSS = {"num_key_value_heads": 8, "head_dim": 64, "max_position_embeddings": 131072, "num_local_experts": 128,
           "num_experts_per_tok": 4}


def gpt_oss(c: HFConfig) -> Mapping:
    """modeling_gpt_oss: q/k/v/o with bias, sinks (h), router Linear(H, E) with bias, experts
    gate_up_proj (E, H, 2I) + bias (E, 2I) and down_proj (E, I, H) + bias (E, H); layer_types
    alternate sliding_attention / full_attention."""
    c.use_defaults(GPT_OSS)
    bias = c.bool("attention_bias", default=True)
    spec = llama_like(c, qkv_bias=bias, out_bias=bias, attention_sinks=True,
                      layer_rule=lambda i: "sliding" if i % 2 == 0 else "full", window_default=128)
    spec["moe"] = {
        "num_experts": c.int("num_local_experts"),
        "experts_per_token": c.int("num_experts_per_tok", "experts_per_token"),
        "expert_intermediate_size": spec["intermediate_size"],
        "expert_bias": True,
        "router_linear_bias": True,
    }
    return spec


MAPPERS = {"gpt_oss": gpt_oss}
