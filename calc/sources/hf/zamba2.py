"""Zamba2 (Zyphra): Mamba-2 layers, with shared attention + MLP blocks run before the Mamba-2 mixer of the
'hybrid' layers (transformers modeling_zamba2 / configuration_zamba2; vLLM vllm/model_executor/models/zamba2.py)."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping

# configuration_zamba2 defaults (transformers main, 2026): the Zamba2-2.7B-style layout.
ZAMBA2 = {"vocab_size": 32000, "max_position_embeddings": 4096, "hidden_size": 2560, "num_hidden_layers": 54,
          "mamba_d_state": 64, "mamba_d_conv": 4, "mamba_expand": 2, "mamba_ngroups": 1, "n_mamba_heads": 8,
          "chunk_size": 256, "num_attention_heads": 32, "num_mem_blocks": 1, "adapter_rank": 128}
DEFAULT_BLOCKS = ["mamba"] + (["mamba"] * 5 + ["hybrid"]) * 7 + ["mamba"] * 4 + ["hybrid"] + ["mamba"] * 3 + ["hybrid"] + ["mamba"] * 2


def _block_types(c: HFConfig, layers: int) -> list[str]:
    """layers_block_type ('mamba' / 'hybrid'), else configuration_zamba2's default 54-layer pattern."""
    types = c.get("layers_block_type", default=None) or DEFAULT_BLOCKS
    if not isinstance(types, list) or len(types) != layers or set(types) - {"mamba", "hybrid"} or "hybrid" not in types:
        raise c.fail("layers_block_type", f"must list 'mamba' or 'hybrid' for each of the {layers} layers, with at least "
                     "one 'hybrid' (the default pattern has 54)"[:200])
    return types


def zamba2(c: HFConfig) -> Mapping:
    """Zamba2: every layer is Zamba2MambaDecoderLayer (input_layernorm RMSNorm(H) + Zamba2MambaMixer, a Mamba-2
    mixer of n_mamba_heads heads of mamba_headdim = mamba_expand*H / n_mamba_heads, conv bias use_conv_bias,
    in/out_proj bias add_bias_linear, grouped gated RMSNorm(d_in)); a 'hybrid' layer first runs shared block
    j mod num_mem_blocks (j its hybrid ordinal) on [h; embedding], then its own Linear(H, H), and feeds the
    result to its Mamba-2 layer (calc.model.shared_block). Attention: num_attention_heads heads of
    attention_head_dim = 2H / heads, num_key_value_heads (default = heads), RoPE iff use_mem_rope; the MLP is
    GELU-gated, intermediate_size default 4H. Final RMSNorm; tie_word_embeddings default True."""
    c.use_defaults(ZAMBA2)
    layers = c.layers()
    types = _block_types(c, layers)
    hidden, heads = c.int("hidden_size"), c.int("num_attention_heads")
    width = 2 * hidden
    if width % heads:
        raise c.fail("num_attention_heads", f"({heads}) must divide attention_hidden_size 2 * hidden_size ({width})")
    d_in, nh = c.int("mamba_expand") * hidden, c.int("n_mamba_heads")
    if d_in % nh:
        raise c.fail("n_mamba_heads", f"({nh}) must divide mamba_expand * hidden_size ({d_in})")
    bias = c.bool("add_bias_linear", default=False)
    return {
        "num_layers": layers, "hidden_size": hidden, "num_heads": heads,
        "num_kv_heads": c.int("num_key_value_heads", default=None), "head_dim": width // heads,
        "intermediate_size": c.int("intermediate_size", default=4 * hidden, rule="4 * hidden_size"),
        "vocab_size": c.int("vocab_size"), "max_position_embeddings": c.int("max_position_embeddings"),
        "tied_embeddings": c.bool("tie_word_embeddings", default=True), "norm": "rmsnorm", "norms_per_layer": 1,
        "gated_mlp": True, "mlp_bias": bias, "activation": c.get("hidden_act", default="gelu"),
        "position_embedding": "rope" if c.bool("use_mem_rope", default=False) else "none",
        "layer_types": ["full" if t == "hybrid" else "linear" for t in types], "ffn_types": ["none"] * layers,
        "mixer": {"kind": "mamba2", "num_heads": nh, "head_dim": d_in // nh, "state_size": c.int("mamba_d_state"),
                  "n_groups": c.int("mamba_ngroups"), "conv_kernel": c.int("mamba_d_conv"), "proj_bias": bias,
                  "conv_bias": c.bool("use_conv_bias", default=True), "chunk_size": c.int("chunk_size"), "parallel": True},
        "shared_block": {"num_blocks": c.int("num_mem_blocks"), "input_width": width, "adapter_rank": c.int("adapter_rank"),
                         "attention_adapters": c.bool("use_shared_attention_adapter", default=False)},
    }


MAPPERS = {"zamba2": zamba2}
