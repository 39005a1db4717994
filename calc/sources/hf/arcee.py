"""Arcee AFM (arcee): the Llama block with a plain (ungated) MLP, up_proj -> ReLU^2 -> down_proj."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like

# configuration_arcee defaults (transformers main): hidden_act relu2, 4096 positions, untied;
# num_key_value_heads None -> num_attention_heads.
ARCEE = {"max_position_embeddings": 4096, "hidden_act": "relu2"}


def arcee(c: HFConfig) -> Mapping:
    """modeling_arcee: LlamaAttention (q/k/v/o with bias=attention_bias) and ArceeMLP (NemotronMLP): up_proj H->I
    and down_proj I->H with bias=mlp_bias, no gate projection: 2*H*I per layer instead of Llama's 3*H*I."""
    c.use_defaults(ARCEE)
    bias = c.bool("attention_bias", default=False)
    return llama_like(c, qkv_bias=bias, out_bias=bias, mlp_bias=c.bool("mlp_bias", default=False), gated_mlp=False)


MAPPERS = {"arcee": arcee}
