"""Cohere Command R / R+ (cohere) and Command R7B / A (cohere2): parallel block, bias-free LayerNorm."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like


def _command(c: HFConfig, **family: object) -> Mapping:
    bias = c.bool("attention_bias", default=False)
    return llama_like(c, tied_default=True, norm="layernorm", norm_bias=False, norms_per_layer=1, parallel_block=True,
                      qkv_bias=bias, out_bias=bias, **family)


def cohere(c: HFConfig) -> Mapping:
    # modeling_cohere: one input_layernorm per layer feeding attention and MLP in parallel;
    # CohereLayerNorm has a weight and no bias; use_qk_norm adds q/k norms of shape (h, d) and (g, d);
    # logit_scale multiplies the logits (no parameter).
    return _command(c, qk_norm="full" if c.bool("use_qk_norm", default=False) else "none")


def cohere2(c: HFConfig) -> Mapping:
    # modeling_cohere2: as cohere, layer i slides unless (i + 1) % sliding_window_pattern == 0 (default 4).
    pattern = c.divisor("sliding_window_pattern", default=4)
    return _command(c, layer_rule=lambda i: "sliding" if (i + 1) % pattern else "full", window_default=4096)


MAPPERS = {"cohere": cohere, "cohere2": cohere2}
