"""ERNIE 4.5 MoE (ernie4_5_moe): the Llama block, MoE layers between moe_layer_start_index and
moe_layer_end_index every moe_layer_interval, shared experts and a routing correction bias."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like

# configuration_ernie4_5_moe defaults (transformers main, 2025): the ERNIE-4.5-21B-A3B shapes; note
# tie_word_embeddings defaults to True and moe_layer_end_index -1 means the last layer.
ERNIE4_5_MOE = {"num_key_value_heads": 4, "max_position_embeddings": 131072, "moe_intermediate_size": 1536, "moe_k": 6,
                "moe_num_experts": 64, "moe_num_shared_experts": 2}


def ernie4_5_moe(c: HFConfig) -> Mapping:
    """modeling_ernie4_5_moe: q/k/v/o, MLPs and lm_head with bias=use_bias (False); layer i is MoE iff
    (i + 1) % moe_layer_interval == 0 and moe_layer_start_index <= i <= moe_layer_end_index. A MoE layer:
    moe_num_experts gated experts of moe_intermediate_size, one shared MLP of moe_num_shared_experts *
    moe_intermediate_size, router Linear(H, E) without bias and moe_statics.e_score_correction_bias (1, E).
    MTP weights in the checkpoint are skipped by transformers (_keys_to_ignore_on_load_unexpected)."""
    c.use_defaults(ERNIE4_5_MOE)
    num_layers = c.layers()
    bias = c.bool("use_bias", default=False)
    start = c.int("moe_layer_start_index", default=1)
    end = c.int("moe_layer_end_index", default=-1)
    end = num_layers - 1 if end == -1 else end
    step = c.divisor("moe_layer_interval", default=1)
    experts = c.int("moe_num_experts")
    ffn = ["moe" if experts and (i + 1) % step == 0 and start <= i <= end else "dense" for i in range(num_layers)]
    spec = llama_like(c, tied_default=True, qkv_bias=bias, out_bias=bias, mlp_bias=bias, lm_head_bias=bias)
    if "moe" not in ffn:
        return spec
    if bias:  # the shared expert's biases have no place in our MoE spec; no ERNIE 4.5 checkpoint sets it
        raise c.fail("use_bias", "true is not supported with MoE layers (no published ERNIE 4.5 MoE sets it)")
    width = c.int("moe_intermediate_size")
    shared = c.int("moe_num_shared_experts")
    spec["ffn_types"] = ffn
    spec["moe"] = {
        "num_experts": experts,
        "experts_per_token": c.int("moe_k"),
        "expert_intermediate_size": width,
        "num_shared_experts": 1 if shared else 0,
        "shared_intermediate_size": shared * width,
        "router_bias": True,
        "num_dense_layers": ffn.count("dense"),
    }
    return spec


MAPPERS = {"ernie4_5_moe": ernie4_5_moe}
