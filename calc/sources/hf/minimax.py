"""MiniMax-Text-01 / MiniMax-M1 (lightning attention + softmax attention + MoE).

transformers' ``minimax`` (modeling_minimax, configuration_minimax: ``layer_types`` 'linear_attention' /
'full_attention', default every even layer full) and the checkpoints' own remote code (``minimax_text_01``,
``minimax_m1``: ``attn_type_list``, 0 = lightning, 1 = softmax) build the same tensors.
"""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, attention_layout, llama_like

# configuration_minimax defaults (transformers main, 2026) for the fields a config may leave out.
MINIMAX = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 4096 * 32,
           "num_local_experts": 8, "num_experts_per_tok": 2, "block_size": 256}


def _layout(c: HFConfig, layers: int) -> Mapping:
    """layer_types (HF format) wins; else the remote code's attn_type_list (0 lightning, 1 softmax); else
    configuration_minimax's default: layer i is full attention iff (i + 1) % 2."""
    kinds = c.get("attn_type_list", default=None)
    if c.get("layer_types", default=None) is not None or kinds is None:
        return attention_layout(c, layers, lambda i: "full" if (i + 1) % 2 else "linear")
    if not isinstance(kinds, list) or len(kinds) != layers or set(kinds) - {0, 1} or any(isinstance(k, bool) for k in kinds):
        raise c.fail("attn_type_list", f"must list 0 (lightning) or 1 (softmax) for each of the {layers} layers"[:200])
    return {"layer_types": ["full" if k == 1 else "linear" for k in kinds]}


def _shared_width(c: HFConfig) -> int:
    """The remote code's shared_intermediate_size (an int, or one per layer): 0 = no shared expert."""
    value = c.get("shared_intermediate_size", default=0)
    widths = value if isinstance(value, list) else [value]
    if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 0 for w in widths) or len(set(widths)) > 1:
        raise c.fail("shared_intermediate_size", f"must be one width >= 0 for every layer, got {value!r}"[:200])
    return widths[0] if widths else 0


def minimax(c: HFConfig) -> Mapping:
    """MiniMax (modeling_minimax; the checkpoints' modeling_minimax_text_01 / modeling_minimax_m1): per layer
    input_layernorm + post_attention_layernorm (RMSNorm), then either MiniMaxLightningAttention (qkv_proj H*3hd,
    output_gate H*hd, norm RMSNorm(hd), out_proj hd*H, no bias) or Mixtral-style attention (q/k/v/o without bias,
    partial RoPE: no parameters), and a MixtralSparseMoeBlock of num_local_experts SwiGLU experts of
    intermediate_size with a router Linear(H, E) without bias. The remote code's shared_intermediate_size > 0 adds
    a shared MLP and its sigmoid coefficient Linear(H, 1) (every released checkpoint writes 0). The residual
    alpha/beta factors are scalars in the config, not parameters. Final norm; untied output head by default."""
    c.use_defaults(MINIMAX)
    layers = c.layers()
    spec = llama_like(c, layout=_layout(c, layers))
    shared = _shared_width(c)
    spec["moe"] = {"num_experts": c.int("num_local_experts", "num_experts"), "experts_per_token": c.int("num_experts_per_tok"),
                   "expert_intermediate_size": spec["intermediate_size"], "num_shared_experts": 1 if shared else 0,
                   "shared_intermediate_size": shared, "shared_expert_gate": bool(shared), "num_dense_layers": 0}
    heads = spec["num_heads"]
    head_dim = spec["head_dim"] or spec["hidden_size"] // heads
    spec["mixer"] = {"kind": "lightning", "num_heads": heads, "head_dim": head_dim, "state_size": head_dim,
                     "conv_kernel": 0, "conv_bias": False, "chunk_size": c.int("block_size")}
    return spec


MAPPERS = {"minimax": minimax, "minimax_text_01": minimax, "minimax_m1": minimax}
