"""AFMoE (Arcee Trinity, afmoe): sliding / global attention with an output gate and per-head q/k norms, four
RMSNorms per layer, dense first layers, then sigmoid-routed experts beside shared experts."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, attention_layout, llama_like

# configuration_afmoe defaults (transformers main): note head_dim 128 (not hidden_size / heads) and
# num_key_value_heads None -> num_attention_heads.
AFMOE = {"head_dim": 128, "max_position_embeddings": 16384, "num_experts": 64, "num_experts_per_tok": 6,
         "num_shared_experts": 2, "num_dense_layers": 1, "moe_intermediate_size": 1408, "sliding_window": 1024}


def afmoe(c: HFConfig) -> Mapping:
    """modeling_afmoe: AfmoeAttention q/k/v/o without bias, gate_proj Linear(H, h*d) (a sigmoid gate on the attention
    output: the parameters of Qwen3-Next's doubled q_proj), q_norm/k_norm RMSNorm(head_dim); AfmoeDecoderLayer holds
    input/post_attention/pre_mlp/post_mlp RMSNorms (4 per layer); layers i < num_dense_layers have AfmoeMLP of
    intermediate_size, the rest AfmoeMoE: router gate Linear(H, E) without bias, expert_bias (E), experts of
    moe_intermediate_size, shared_experts one MLP of moe_intermediate_size * num_shared_experts (no gate).
    layer_types default: every global_attn_every_n_layers-th layer full, the others slide; mup scaling has no weights."""
    c.use_defaults(AFMOE)
    num_layers = c.layers()
    every = c.divisor("global_attn_every_n_layers", default=4)
    layout = attention_layout(c, num_layers, lambda i: "full" if (i + 1) % every == 0 else "sliding")
    spec = llama_like(c, qk_norm="head", attention_output_gate=True, norms_per_layer=4, layout=layout)
    experts = c.int("num_experts")
    dense = min(c.int("num_dense_layers"), num_layers)
    if not experts or dense == num_layers:
        return spec
    width = c.int("moe_intermediate_size")
    shared = c.int("num_shared_experts")
    spec["moe"] = {
        "num_experts": experts,
        "experts_per_token": c.int("num_experts_per_tok"),
        "expert_intermediate_size": width,
        "num_shared_experts": 1 if shared else 0,
        "shared_intermediate_size": shared * width,
        "router_bias": True,
        "num_dense_layers": dense,
    }
    return spec


MAPPERS = {"afmoe": afmoe}
