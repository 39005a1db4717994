"""OLMo 2 (AI2): post-norms only, q/k RMSNorm over the whole projection; OLMoE: pre-norms, the same q/k
norms, 64 experts."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, attention_layout, llama_like


def olmo2(c: HFConfig) -> Mapping:
    # modeling_olmo2: post_attention_layernorm + post_feedforward_layernorm (no pre-norms: 2 per layer),
    # q_norm RMSNorm(h*d), k_norm RMSNorm(g*d); q/k/v/o with bias=attention_bias (False).
    bias = c.bool("attention_bias", default=False)
    return llama_like(c, qkv_bias=bias, out_bias=bias, qk_norm="full")


def olmoe(c: HFConfig) -> Mapping:
    # modeling_olmoe: input + post_attention RMSNorms, q_norm RMSNorm(h*d), k_norm RMSNorm(g*d), experts
    # without bias, router Linear(H, E) without bias, no shared expert; clip_qkv has no parameters.
    bias = c.bool("attention_bias", default=False)
    spec = llama_like(c, qkv_bias=bias, out_bias=bias, qk_norm="full")
    spec["moe"] = {
        "num_experts": c.int("num_experts"),
        "experts_per_token": c.int("num_experts_per_tok"),
        "expert_intermediate_size": spec["intermediate_size"],
    }
    return spec


def olmo3(c: HFConfig) -> Mapping:
    # modeling_olmo3: the OLMo 2 block; layer_types (default: three sliding_window layers then one full).
    return {**olmo2(c), **attention_layout(c, c.layers(), lambda i: "full" if (i + 1) % 4 == 0 else "sliding")}


MAPPERS = {"olmo2": olmo2, "olmo3": olmo3, "olmoe": olmoe}
