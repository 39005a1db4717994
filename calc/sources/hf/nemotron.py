"""Nemotron (Nemotron-4, Minitron, Nemotron-Mini): LayerNorm1P with bias, an ungated relu2 MLP, GQA with
partial RoPE (no parameters)."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like

# configuration_nemotron defaults for fields a config may leave out.
NEMOTRON = {"vocab_size": 256000, "num_key_value_heads": None, "max_position_embeddings": 4096}


def nemotron(c: HFConfig) -> Mapping:
    # modeling_nemotron: input_layernorm + post_attention_layernorm and norm are NemotronLayerNorm1P (weight and
    # bias), q/k/v/o with bias=attention_bias (False), up_proj / down_proj with bias=mlp_bias (False), no gate.
    c.use_defaults(NEMOTRON)
    bias = c.bool("attention_bias", default=False)
    return llama_like(c, norm="layernorm", norm_bias=True, gated_mlp=False, qkv_bias=bias, out_bias=bias,
                      mlp_bias=c.bool("mlp_bias", default=False), activation=c.get("hidden_act", default="relu2"))


MAPPERS = {"nemotron": nemotron}
