"""StarCoder2: LayerNorm, plain GELU MLP (c_fc, c_proj), biases everywhere, sliding window on every layer."""

from __future__ import annotations

from calc.sources.hf.classic import plain_layernorm
from calc.sources.hf.config import HFConfig, Mapping, llama_like


def starcoder2(c: HFConfig) -> Mapping:
    # modeling_starcoder2: q/k/v/o and c_fc/c_proj with bias=use_bias (default True); nn.LayerNorm.
    c.use_defaults({"num_key_value_heads": 2, "max_position_embeddings": 4096})  # configuration_starcoder2
    bias = c.bool("use_bias", default=True)
    return llama_like(c, tied_default=True, **plain_layernorm(qkv_bias=bias, out_bias=bias, mlp_bias=bias))


MAPPERS = {"starcoder2": starcoder2}
