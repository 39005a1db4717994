"""GPT-2 lineage: GPT-2, GPT-J, GPT-NeoX, Falcon, BLOOM, OPT (LayerNorm, plain MLP, biases)."""

from __future__ import annotations

from typing import Any

from calc.errors import LLMCalcError
from calc.sources.hf.config import HFConfig


def plain_layernorm(qkv_bias: bool, out_bias: bool, mlp_bias: bool) -> dict[str, Any]:
    """The GPT-2 lineage's shared traits: LayerNorm with bias, a plain (ungated) MLP, and biases
    on the attention and MLP projections as the family has them."""
    return {"norm": "layernorm", "qkv_bias": qkv_bias, "out_bias": out_bias, "mlp_bias": mlp_bias, "gated_mlp": False}


def gpt2(c: HFConfig) -> dict[str, Any]:
    hidden = c.int("n_embd", "hidden_size")
    return {
        "num_layers": c.int("n_layer", "num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": c.int("n_head", "num_attention_heads"),
        "intermediate_size": c.int("n_inner", default=4 * hidden, rule="4 * n_embd"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("n_positions", "max_position_embeddings"),
        "position_embedding": "learned",
        "tied_embeddings": c.bool("tie_word_embeddings", default=True),
        **plain_layernorm(qkv_bias=True, out_bias=True, mlp_bias=True),
        "activation": c.get("activation_function", default="gelu_new"),
    }


def gptj(c: HFConfig) -> dict[str, Any]:
    hidden = c.int("n_embd", "hidden_size")
    # modeling_gptj: q/k/v/out_proj without bias, fc_in/fc_out with bias, one ln_1 (parallel
    # block), lm_head with bias, untied.
    return {
        "num_layers": c.int("n_layer", "num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": c.int("n_head", "num_attention_heads"),
        "intermediate_size": c.int("n_inner", default=4 * hidden, rule="4 * n_embd"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("n_positions", "max_position_embeddings", default=2048),
        "tied_embeddings": c.bool("tie_word_embeddings", default=False),
        **plain_layernorm(qkv_bias=False, out_bias=False, mlp_bias=True),
        "norms_per_layer": 1,
        "lm_head_bias": True,
        "activation": c.get("activation_function", default="gelu_new"),
        "parallel_block": True,
    }


def gpt_neox(c: HFConfig) -> dict[str, Any]:
    bias = c.bool("attention_bias", default=True)
    return {
        "num_layers": c.int("num_hidden_layers"),
        "hidden_size": c.int("hidden_size"),
        "num_heads": c.int("num_attention_heads"),
        "intermediate_size": c.int("intermediate_size"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "tied_embeddings": c.bool("tie_word_embeddings", default=False),
        **plain_layernorm(qkv_bias=bias, out_bias=bias, mlp_bias=True),
        "norms_per_layer": 2,  # input_layernorm + post_attention_layernorm, even when parallel
        "activation": c.get("hidden_act", default="gelu"),
        "parallel_block": c.bool("use_parallel_residual", default=True),
    }


def falcon(c: HFConfig) -> dict[str, Any]:
    hidden = c.int("hidden_size")
    heads = c.int("num_attention_heads", "n_head")
    new_arch = c.bool("new_decoder_architecture", default=False)
    parallel = c.bool("parallel_attn", default=True)
    if new_arch:
        kv_heads = c.int("num_kv_heads", "n_head_kv", default=heads)
    else:
        kv_heads = 1 if c.bool("multi_query", default=True) else heads
    bias = c.bool("bias", default=False)
    alibi = c.bool("alibi", default=False)
    return {
        "num_layers": c.int("num_hidden_layers", "n_layer"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "intermediate_size": c.int("ffn_hidden_size", default=4 * hidden, rule="4 * hidden_size"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "position_embedding": "alibi" if alibi else "rope",
        "tied_embeddings": c.bool("tie_word_embeddings", default=True),
        **plain_layernorm(qkv_bias=bias, out_bias=bias, mlp_bias=bias),
        # new decoder: ln_attn + ln_mlp; old parallel: one input_layernorm; sequential: two.
        "norms_per_layer": 2 if new_arch or not parallel else 1,
        "activation": "gelu",
        "parallel_block": new_arch or parallel,
    }


def bloom(c: HFConfig) -> dict[str, Any]:
    hidden = c.int("hidden_size", "n_embed")
    return {
        "num_layers": c.int("n_layer", "num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": c.int("n_head", "num_attention_heads"),
        "intermediate_size": 4 * hidden,
        "vocab_size": c.int("vocab_size"),
        "position_embedding": "alibi",
        "tied_embeddings": c.bool("tie_word_embeddings", default=True),
        **plain_layernorm(qkv_bias=True, out_bias=True, mlp_bias=True),
        "embedding_norm": True,  # word_embeddings_layernorm
        "activation": "gelu",
    }


def opt(c: HFConfig) -> dict[str, Any]:
    hidden = c.int("hidden_size")
    if c.int("word_embed_proj_dim", default=hidden) != hidden:
        raise LLMCalcError(
            c.field, f"{c.where}: field 'word_embed_proj_dim' differs from hidden_size (OPT-350m's "
            "project_in/out) and is not supported"
        )
    bias = c.bool("enable_bias", default=True)
    pre_norm = c.bool("do_layer_norm_before", default=True)
    return {
        "num_layers": c.int("num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": c.int("num_attention_heads"),
        "intermediate_size": c.int("ffn_dim"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "position_embedding": "learned",
        "position_offset": 2,  # OPTLearnedPositionalEmbedding adds 2 rows
        "tied_embeddings": c.bool("tie_word_embeddings", default=True),
        **plain_layernorm(qkv_bias=bias, out_bias=bias, mlp_bias=bias),
        "final_norm": pre_norm and not c.bool("_remove_final_layer_norm", default=False),
        "activation": c.get("activation_function", default="relu"),
    }


def mpt(c: HFConfig) -> dict[str, Any]:
    """MPT (modeling_mpt): fused Wqkv H*3H and out_proj, FFN up H*(expansion_ratio*H) / down with GELU, every
    Linear without bias when no_bias (default True), LayerNorms norm_1, norm_2, norm_f whose bias transformers
    drops (``bias = None``) with no_bias; ALiBi (transformers builds no position table); head tied to wte."""
    hidden = c.int("d_model")
    attn = c.get("attn_config", default={})
    if not isinstance(attn, dict):
        raise c.fail("attn_config", f"must be a mapping, got {attn!r}"[:200])
    if attn.get("qk_ln") or attn.get("attn_type", "multihead_attention") != "multihead_attention" \
            or attn.get("alibi") is False:
        raise c.fail("attn_config", "qk_ln, grouped attention and learned positions (alibi false) of MPT are not modelled")
    bias = not c.bool("no_bias", default=True)
    return {
        "num_layers": c.int("n_layers"),
        "hidden_size": hidden,
        "num_heads": c.int("n_heads"),
        "intermediate_size": c.int("expansion_ratio", default=4, rule="MptConfig default") * hidden,
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_seq_len", default=2048),
        "position_embedding": "alibi",
        "tied_embeddings": True,
        **plain_layernorm(qkv_bias=bias, out_bias=bias, mlp_bias=bias),
        "norm_bias": bias,
        "activation": "gelu",
    }


MAPPERS = {
    "mpt": mpt,
    "gpt2": gpt2, "gptj": gptj, "gpt_neox": gpt_neox, "falcon": falcon, "RefinedWebModel": falcon, "RefinedWeb": falcon,
    "bloom": bloom, "opt": opt,
}
