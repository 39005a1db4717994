"""Qwen2, Qwen2-MoE, Qwen3 (q/k norms), Qwen3-MoE."""

from __future__ import annotations

from typing import Any

from calc.sources.hf.config import HFConfig, Mapping, attention_layout, llama_like


def _qwen_layout(c: HFConfig) -> Mapping:
    """configuration_qwen2/3: sliding_window applies only with use_sliding_window, and then to layers
    i >= max_window_layers."""
    num_layers = c.layers()
    if not c.bool("use_sliding_window", default=False):
        return {}
    first = c.int("max_window_layers", default=num_layers)
    return attention_layout(c, num_layers, lambda i: "sliding" if i >= first else "full")


def qwen2(c: HFConfig) -> Mapping:
    # modeling_qwen2: q/k/v_proj have bias=True, o_proj bias=False.
    return llama_like(c, qkv_bias=True, layout=_qwen_layout(c))


def qwen3(c: HFConfig) -> Mapping:
    # modeling_qwen3: q/k/v/o bias=attention_bias (False), q_norm/k_norm RMSNorm(head_dim).
    bias = c.bool("attention_bias", default=False)
    return llama_like(c, qkv_bias=bias, out_bias=bias, qk_norm="head", layout=_qwen_layout(c))


def _sparse_layers(c: HFConfig, default_experts: int) -> tuple[int, int]:
    """(experts, dense layer count): layer i is sparse iff i not in mlp_only_layers and
    (i + 1) % decoder_sparse_step == 0 (modeling_qwen2_moe / qwen3_moe)."""
    num_layers = c.layers()
    experts = c.int("num_experts", default=default_experts)
    step = c.divisor("decoder_sparse_step", default=1)
    mlp_only = set(c.int_list("mlp_only_layers"))
    sparse = [i for i in range(num_layers) if i not in mlp_only and experts > 0 and (i + 1) % step == 0]
    return experts, num_layers - len(sparse)


def qwen2_moe(c: HFConfig) -> Mapping:
    experts, dense = _sparse_layers(c, 60)
    shared = c.int("shared_expert_intermediate_size", default=0)
    spec = qwen2(c)
    spec["moe"] = _moe(c, experts, dense, top_k_default=4, shared=shared)
    return spec


def qwen3_moe(c: HFConfig) -> Mapping:
    # modeling_qwen3_moe: no shared expert, router Linear(H, E) without bias.
    experts, dense = _sparse_layers(c, 128)
    spec = qwen3(c)
    spec["moe"] = _moe(c, experts, dense, top_k_default=8, shared=0)
    return spec


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
