"""Llama, Mistral (incl. explicit head_dim: Nemo, Small), Mixtral, Granite, InternLM2: the Llama block."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like

# configuration_mistral / configuration_mixtral defaults for fields a config may leave out: 8 KV heads (not
# num_attention_heads), 4096 * 32 positions; MistralConfig slides every layer over 4096 tokens unless the
# config sets sliding_window (v0.2+ write null: full attention), MixtralConfig does not slide.
MISTRAL = {"num_key_value_heads": 8, "max_position_embeddings": 4096 * 32, "sliding_window": 4096}
MIXTRAL = {"num_key_value_heads": 8, "max_position_embeddings": 4096 * 32, "num_local_experts": 8, "num_experts_per_tok": 2}


def llama(c: HFConfig) -> Mapping:
    bias = c.bool("attention_bias", default=False)
    return llama_like(c, qkv_bias=bias, out_bias=bias, mlp_bias=c.bool("mlp_bias", default=False))


def mistral(c: HFConfig) -> Mapping:
    # Mistral-7B-v0.1 sets sliding_window 4096 on every layer; v0.2+, Nemo and Small set null.
    return llama_like(c.use_defaults(MISTRAL))


def mixtral(c: HFConfig) -> Mapping:
    spec = llama_like(c.use_defaults(MIXTRAL))
    spec["moe"] = {
        "num_experts": c.int("num_local_experts", default=8),
        "experts_per_token": c.int("num_experts_per_tok", default=2),
        "expert_intermediate_size": spec["intermediate_size"],
    }
    return spec


def granite(c: HFConfig) -> Mapping:
    # modeling_granite = Llama + scalar multipliers (embedding, residual, attention, logits): no parameters.
    return llama(c)


def granitemoe(c: HFConfig) -> Mapping:
    """GraniteMoE(Shared): every layer MoE, experts input_linear H->2I and output_linear I->H without
    bias, router Linear(H, E) without bias; GraniteMoeShared adds one shared MLP of shared_intermediate_size."""
    spec = granite(c)
    shared = c.int("shared_intermediate_size", default=0)
    spec["moe"] = {
        "num_experts": c.int("num_local_experts"),
        "experts_per_token": c.int("num_experts_per_tok"),
        "expert_intermediate_size": spec["intermediate_size"],
        "num_shared_experts": 1 if shared else 0,
        "shared_intermediate_size": shared,
    }
    return spec


def internlm2(c: HFConfig) -> Mapping:
    # modeling_internlm2 (trust_remote_code): fused wqkv and wo with bias=config.bias (default True),
    # w1/w3/w2 gated MLP without bias, untied ``output`` head.
    bias = c.bool("bias", default=True)
    return llama_like(c, qkv_bias=bias, out_bias=bias)


def smollm3(c: HFConfig) -> Mapping:
    # modeling_smollm3: the Llama block (NoPE layers drop RoPE, no parameters); tie_word_embeddings default True.
    bias = c.bool("attention_bias", default=False)
    return llama_like(c, tied_default=True, qkv_bias=bias, out_bias=bias, mlp_bias=c.bool("mlp_bias", default=False))


def seed_oss(c: HFConfig) -> Mapping:
    # modeling_seed_oss: q/k/v_proj bias=attention_bias, o_proj bias=attention_out_bias, MLP bias=mlp_bias.
    return llama_like(c, qkv_bias=c.bool("attention_bias", default=True), out_bias=c.bool("attention_out_bias", default=False),
                      mlp_bias=c.bool("mlp_bias", default=False))


MAPPERS = {
    "seed_oss": seed_oss,
    "llama": llama, "smollm3": smollm3, "mistral": mistral, "mixtral": mixtral, "granite": granite, "granitemoe": granitemoe,
    "granitemoeshared": granitemoe, "internlm2": internlm2,
}
