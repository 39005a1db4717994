"""Phi-2 (parallel block), Phi-3 / Phi-4 (Llama block, fused qkv and gate_up), Phi-3.5-MoE."""

from __future__ import annotations

from calc.sources.hf.classic import plain_layernorm
from calc.sources.hf.config import HFConfig, Mapping, llama_like


def phi(c: HFConfig) -> Mapping:
    # modeling_phi: q/k/v/dense with bias, fc1/fc2 with bias, one input_layernorm (parallel
    # block), final_layernorm, lm_head with bias.
    return {
        "num_layers": c.int("num_hidden_layers"),
        "hidden_size": c.int("hidden_size"),
        "num_heads": c.int("num_attention_heads"),
        "num_kv_heads": c.int("num_key_value_heads", default=None),
        "intermediate_size": c.int("intermediate_size"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "tied_embeddings": c.bool("tie_word_embeddings", default=False),
        **plain_layernorm(qkv_bias=True, out_bias=True, mlp_bias=True),
        "norms_per_layer": 1,
        "lm_head_bias": True,
        "activation": c.get("hidden_act", default="gelu_new"),
        "parallel_block": True,
    }


def phi3(c: HFConfig) -> Mapping:
    # qkv_proj and gate_up_proj are fused but hold the same weights; sliding_window on every layer.
    # configuration_phi3: max_position_embeddings defaults to 4096.
    return llama_like(c.use_defaults({"max_position_embeddings": 4096}))


def phimoe(c: HFConfig) -> Mapping:
    """modeling_phimoe: LayerNorm with bias (input, post-attention, final), q/k/v/o with
    bias=attention_bias, lm_head with bias=lm_head_bias, experts w1/w2/w3 and router without bias."""
    bias = c.bool("attention_bias", default=False)
    spec = llama_like(c, norm="layernorm", qkv_bias=bias, out_bias=bias, lm_head_bias=c.bool("lm_head_bias", default=False))
    spec["moe"] = {
        "num_experts": c.int("num_local_experts", default=16),
        "experts_per_token": c.int("num_experts_per_tok", default=2),
        "expert_intermediate_size": spec["intermediate_size"],
    }
    return spec


MAPPERS = {"phi": phi, "phi3": phi3, "phimoe": phimoe}
