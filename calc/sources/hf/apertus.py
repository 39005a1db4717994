"""Apertus (Swiss AI): the Llama attention with per-head q/k RMSNorms and a plain (ungated) MLP whose xIELU
activation carries two trainable scalars."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like

# configuration_apertus defaults (transformers main): hidden_act xielu, 65536 positions (llama3 RoPE scaling
# 8 x 8192 already included), num_key_value_heads None -> num_attention_heads.
APERTUS = {"max_position_embeddings": 65536, "hidden_act": "xielu"}


def apertus(c: HFConfig) -> Mapping:
    """modeling_apertus: q/k/v/o with bias=attention_bias, q_norm/k_norm RMSNorm(head_dim) always (the config's
    qk_norm / post_norm flags are not read), attention_layernorm + feedforward_layernorm, MLP up_proj H->I and
    down_proj I->H without bias; with hidden_act xielu the MLP adds alpha_p and alpha_n (one each)."""
    c.use_defaults(APERTUS)
    bias = c.bool("attention_bias", default=False)
    return llama_like(c, qkv_bias=bias, out_bias=bias, qk_norm="head", gated_mlp=False)


MAPPERS = {"apertus": apertus}
