"""Llama 4 text (Scout, Maverick): interleaved MoE with a shared expert, chunked attention, NoPE layers."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, ffn_layout, llama_like


def llama4_text(c: HFConfig) -> Mapping:
    """configuration_llama4 / modeling_llama4: MoE layers are ``moe_layers`` or every
    interleave_moe_layer_step-th (step-1, 2*step-1, ...); a MoE layer has num_local_experts experts
    of width intermediate_size (top num_experts_per_tok), a router without bias and one shared expert of
    the same width; dense layers use intermediate_size_mlp. Layers with RoPE (no_rope_layers[i] = 1;
    default every layer but each 4th) use chunked attention over attention_chunk_size tokens, NoPE
    layers attend globally. q/k L2 norms have no weights."""
    num_layers = c.layers()
    step = c.divisor("interleave_moe_layer_step", default=1)
    moe_layers = set(c.int_list("moe_layers")) if c.get("moe_layers", default=None) is not None else None
    sparse = moe_layers & set(range(num_layers)) if moe_layers is not None else set(range(step - 1, num_layers, step))
    n_moe = len(sparse)
    rope = c.int_list("no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(num_layers)]
    if len(rope) != num_layers:
        raise c.fail("no_rope_layers", f"must list one flag per layer ({num_layers})")
    chunked = c.int("attention_chunk_size", default=None) is not None
    rule = (lambda i: "chunked" if rope[i] else "full") if chunked else None
    expert_width = c.int("intermediate_size")
    bias = c.bool("attention_bias", default=False)
    spec = llama_like(c, qkv_bias=bias, out_bias=bias, layer_rule=rule)
    spec["intermediate_size"] = c.int("intermediate_size_mlp")
    spec["moe"] = {
        "num_experts": c.int("num_local_experts"),
        "experts_per_token": c.int("num_experts_per_tok", default=1),
        "expert_intermediate_size": expert_width,
        "num_shared_experts": 1,
        "shared_intermediate_size": expert_width,
        "num_dense_layers": num_layers - n_moe,
    }
    return spec | ffn_layout(num_layers, sparse)


MAPPERS = {"llama4_text": llama4_text}
