"""OLMo 2 (AI2): post-norms only, q/k RMSNorm over the whole projection."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like


def olmo2(c: HFConfig) -> Mapping:
    # modeling_olmo2: post_attention_layernorm + post_feedforward_layernorm (no pre-norms: 2 per layer),
    # q_norm RMSNorm(h*d), k_norm RMSNorm(g*d); q/k/v/o with bias=attention_bias (False).
    bias = c.bool("attention_bias", default=False)
    return llama_like(c, qkv_bias=bias, out_bias=bias, qk_norm="full")


MAPPERS = {"olmo2": olmo2}
