"""IBM's Mamba-2 hybrids and Liquid's short-convolution hybrid: Bamba, Granite 4.0 (granitemoehybrid), LFM2.

Each reads the fields of its ``configuration_*.py`` in transformers with the same defaults (transformers main,
2026); the per-layer mixer follows the modeling file: Bamba's attn_layer_indices, GraniteMoeHybrid's
layer_types ("mamba" / "attention"), LFM2's layer_types ("conv" / "full_attention", else full_attn_idxs).
"""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like
from calc.sources.hf.ssm import mamba2_mixer

BAMBA = {"vocab_size": 128000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 262144,
         "mamba_n_heads": 128, "mamba_n_groups": 1, "mamba_d_state": 256, "mamba_d_conv": 4, "mamba_expand": 2,
         "mamba_chunk_size": 256}
GRANITE_HYBRID = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "max_position_embeddings": 2048, "num_local_experts": 8,
                  "num_experts_per_tok": 2, "shared_intermediate_size": 1024, "mamba_n_heads": 128, "mamba_n_groups": 1,
                  "mamba_d_state": 256, "mamba_d_conv": 4, "mamba_expand": 2, "mamba_chunk_size": 256}
LFM2 = {"vocab_size": 65536, "hidden_size": 2560, "intermediate_size": 12288, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 128000, "conv_L_cache": 3,
        "block_multiple_of": 256}


def bamba(c: HFConfig) -> Mapping:
    """Bamba (modeling_bamba): layer i is Llama attention (no bias, RoPE) iff i in attn_layer_indices, else a
    Mamba-2 mixer; every layer has input_layernorm + pre_ff_layernorm and a gated MLP (no bias); final_layernorm."""
    c.use_defaults(BAMBA)
    layers = c.layers()
    attn = set(c.int_list("attn_layer_indices"))
    if any(not 0 <= i < layers for i in attn):
        raise c.fail("attn_layer_indices", f"must hold layer indices in 0..{layers - 1}, got {sorted(attn)}"[:200])
    spec = llama_like(c, layout={"layer_types": ["full" if i in attn else "linear" for i in range(layers)]})
    spec["mixer"] = mamba2_mixer(c, spec["hidden_size"])
    return spec


def granitemoehybrid(c: HFConfig) -> Mapping:
    """Granite 4.0 (modeling_granitemoehybrid): layer_types 'mamba' (Mamba-2, BambaMixer) or 'attention'
    (q/k/v/o with attention_bias, no q/k norm; position_embedding_type 'nope' = no positions, 'rope' = RoPE);
    every layer: input_layernorm + post_attention_layernorm, a shared gated MLP (input_linear H*2I_s,
    output_linear I_s*H, no bias) and, when num_local_experts > 0, a block_sparse_moe of E gated experts of
    intermediate_size (router Linear(H, E) without bias). Final norm. The mu-P multipliers hold no parameters."""
    c.use_defaults(GRANITE_HYBRID)
    layers = c.layers()
    types = c.get("layer_types", "layers_block_type", default=None) or ["mamba"] * layers
    if not isinstance(types, list) or len(types) != layers or set(types) - {"mamba", "attention"}:
        raise c.fail("layer_types", f"must list 'mamba' or 'attention' for each of the {layers} layers"[:200])
    bias = c.bool("attention_bias", default=False)
    spec = llama_like(c, layout={"layer_types": ["full" if t == "attention" else "linear" for t in types]},
                      qkv_bias=bias, out_bias=bias)
    if c.get("position_embedding_type", default=None) != "rope":
        spec["position_embedding"] = "none"
    spec["mixer"] = mamba2_mixer(c, spec["hidden_size"])
    experts, shared = c.int("num_local_experts"), c.int("shared_intermediate_size")
    if experts > 0:
        spec["moe"] = {"num_experts": experts, "experts_per_token": c.int("num_experts_per_tok"),
                       "expert_intermediate_size": spec["intermediate_size"], "num_shared_experts": 1 if shared else 0,
                       "shared_intermediate_size": shared, "num_dense_layers": 0}
    else:  # the shared MLP is the layer's only FFN
        spec["intermediate_size"] = shared
    return spec


def _lfm2_ff_dim(c: HFConfig) -> int:
    """Lfm2MLP width: block_ff_dim (else intermediate_size); with block_auto_adjust_ff_dim int(2*ff/3), then
    with block_ffn_dim_multiplier m: int(m * ff) rounded up to block_multiple_of (LLaMA's SwiGLU sizing)."""
    ff = c.int("block_ff_dim", "intermediate_size")
    if not c.bool("block_auto_adjust_ff_dim", default=True):
        return ff
    ff = int(2 * ff / 3)
    mult = c.get("block_ffn_dim_multiplier", default=1.0)
    if mult is None:
        return ff
    if isinstance(mult, bool) or not isinstance(mult, int | float) or not 0 < mult < 1e3:
        raise c.fail("block_ffn_dim_multiplier", f"must be a positive number, got {mult!r}")
    step = c.divisor("block_multiple_of", 256)
    return step * -(-int(mult * ff) // step)


def lfm2(c: HFConfig) -> Mapping:
    """LFM2 (modeling_lfm2): layer_types 'full_attention' (GQA with q/k RMSNorm(head_dim), out_proj, RoPE, no bias)
    or 'conv' (Lfm2ShortConv: in_proj H*3H, depthwise conv1d H x conv_L_cache, out_proj H*H, biases with
    conv_bias); else every layer in full_attn_idxs (default all) attends. Each layer: operator_norm + ffn_norm and
    a SwiGLU w1/w3/w2 of ``_lfm2_ff_dim``; the final embedding_norm; tie_embedding (alias) default True."""
    c.use_defaults(LFM2)
    layers = c.layers()
    types = c.get("layer_types", default=None)
    if types is None:
        idx = set(c.int_list("full_attn_idxs")) if c.get("full_attn_idxs", default=None) is not None else set(range(layers))
        types = ["full_attention" if i in idx else "conv" for i in range(layers)]
    if not isinstance(types, list) or len(types) != layers or set(types) - {"conv", "full_attention"}:
        raise c.fail("layer_types", f"must list 'conv' or 'full_attention' for each of the {layers} layers"[:200])
    alias = {"tied_embeddings": c.bool("tie_embedding")} if "tie_embedding" in c.data else {}
    spec = llama_like(c, layout={"layer_types": ["full" if t == "full_attention" else "linear" for t in types]},
                      qk_norm="head", tied_default=True, **alias)
    spec["intermediate_size"] = _lfm2_ff_dim(c)
    hidden = spec["hidden_size"]
    spec["mixer"] = {"kind": "short_conv", "num_heads": hidden, "head_dim": 1, "state_size": 0,
                     "conv_kernel": c.int("conv_L_cache"), "conv_bias": c.bool("conv_bias", default=False),
                     "gated_norm": False}
    return spec


MAPPERS = {"bamba": bamba, "granitemoehybrid": granitemoehybrid, "lfm2": lfm2}
