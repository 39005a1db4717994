"""Qwen2, Qwen2-MoE, Qwen3 (q/k norms), Qwen3-MoE."""

from __future__ import annotations

from typing import Any

from calc.sources.hf.config import HFConfig, Mapping, attention_layout, ffn_layout, llama_like

# configuration_qwen2/qwen2_moe/qwen3/qwen3_moe defaults for the fields a config may leave out (transformers
# main, 2025): note num_key_value_heads is a constant there (32, 16, 32, 4), not num_attention_heads, and
# Qwen3's head_dim is 128, not hidden_size / num_attention_heads (Qwen3-0.6B: 1024 / 16 = 64 would be wrong).
# Qwen3MoeConfig has no head_dim (Qwen3Attention then takes hidden_size // num_attention_heads) and no
# max_window_layers (Qwen3MoeAttention slides on every layer when use_sliding_window).
QWEN2 = {"num_key_value_heads": 32, "max_position_embeddings": 32768, "max_window_layers": 28}
QWEN2_MOE = {"num_key_value_heads": 16, "max_position_embeddings": 32768, "max_window_layers": 28, "num_experts": 60,
             "num_experts_per_tok": 4, "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632}
QWEN3 = {"num_key_value_heads": 32, "head_dim": 128, "max_position_embeddings": 32768, "max_window_layers": 28}
QWEN3_MOE = {"num_key_value_heads": 4, "max_position_embeddings": 32768, "num_experts": 128, "num_experts_per_tok": 8,
             "moe_intermediate_size": 768, "head_dim": None, "max_window_layers": 0}


def _qwen_layout(c: HFConfig) -> Mapping:
    """configuration_qwen2/3: sliding_window applies only with use_sliding_window, and then to layers
    i >= max_window_layers."""
    num_layers = c.layers()
    if not c.bool("use_sliding_window", default=False):
        return {}
    first = c.int("max_window_layers", default=num_layers)
    return attention_layout(c, num_layers, lambda i: "sliding" if i >= first else "full",
                            window=c.int("sliding_window", default=4096))


def qwen2(c: HFConfig) -> Mapping:
    # modeling_qwen2: q/k/v_proj have bias=True, o_proj bias=False.
    c.use_defaults(QWEN2)
    return llama_like(c, qkv_bias=True, layout=_qwen_layout(c))


def qwen3(c: HFConfig) -> Mapping:
    # modeling_qwen3: q/k/v/o bias=attention_bias (False), q_norm/k_norm RMSNorm(head_dim).
    c.use_defaults(QWEN3)
    bias = c.bool("attention_bias", default=False)
    return llama_like(c, qkv_bias=bias, out_bias=bias, qk_norm="head", layout=_qwen_layout(c))


def _sparse_layers(c: HFConfig, default_experts: int) -> tuple[int, set[int]]:
    """(experts, sparse layers): layer i is sparse iff i not in mlp_only_layers and
    (i + 1) % decoder_sparse_step == 0 (modeling_qwen2_moe / qwen3_moe)."""
    num_layers = c.layers()
    experts = c.int("num_experts", default=default_experts)
    step = c.divisor("decoder_sparse_step", default=1)
    mlp_only = set(c.int_list("mlp_only_layers"))
    return experts, {i for i in range(num_layers) if i not in mlp_only and experts > 0 and (i + 1) % step == 0}


def qwen2_moe(c: HFConfig) -> Mapping:
    c.use_defaults(QWEN2_MOE)
    experts, sparse = _sparse_layers(c, 60)
    shared = c.int("shared_expert_intermediate_size")
    spec = qwen2(c)
    spec["moe"] = _moe(c, experts, c.layers() - len(sparse), top_k_default=4, shared=shared)
    return spec | ffn_layout(c.layers(), sparse)


def qwen3_moe(c: HFConfig) -> Mapping:
    # modeling_qwen3_moe: no shared expert, router Linear(H, E) without bias.
    c.use_defaults(QWEN3_MOE)
    experts, sparse = _sparse_layers(c, 128)
    spec = qwen3(c)
    spec["moe"] = _moe(c, experts, c.layers() - len(sparse), top_k_default=8, shared=0)
    return spec | ffn_layout(c.layers(), sparse)


def _moe(c: HFConfig, experts: int, dense: int, top_k_default: int, shared: int) -> dict[str, Any]:
    return {
        "num_experts": experts,
        "experts_per_token": c.int("num_experts_per_tok", default=top_k_default),
        "expert_intermediate_size": c.int("moe_intermediate_size"),
        "num_shared_experts": 1 if shared else 0,
        "shared_intermediate_size": shared,
        "shared_expert_gate": bool(shared),
        "num_dense_layers": dense,
    }


MAPPERS = {"qwen2": qwen2, "qwen2_moe": qwen2_moe, "qwen3": qwen3, "qwen3_moe": qwen3_moe}
