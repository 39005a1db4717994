"""Kimi Linear (moonshotai/Kimi-Linear-48B-A3B): Kimi Delta Attention layers mixed with MLA layers, DeepSeek-style MoE.

The fields are those of the model repo's configuration_kimi.py ``KimiLinearConfig`` (read by its modeling_kimi.py
and by vLLM's vllm/model_executor/models/kimi_linear.py): ``linear_attn_config`` holds the KDA shape and the
1-based layer lists ``kda_layers`` / ``full_attn_layers``.
"""

from __future__ import annotations

from typing import Any

from calc.sources.hf.config import HFConfig, Mapping, rope_scaling_factor
from calc.sources.hf.deepseek import mla as mla_fields


def _kda_config(c: HFConfig, layers: int) -> tuple[dict[str, Any], list[str]]:
    """linear_attn_config and the per-layer kinds: layer i (0-based) is KDA iff i + 1 is in kda_layers
    (configuration_kimi.py ``is_kda_layer``), else MLA; full_attn_layers must name the others."""
    lac = c.get("linear_attn_config")
    if not isinstance(lac, dict):
        raise c.fail("linear_attn_config", f"must be an object with kda_layers, full_attn_layers, num_heads, head_dim, got {lac!r}"[:200])
    sub = HFConfig(lac, c.where, c.field)
    kda = sub.int_list("kda_layers")
    full = sub.int_list("full_attn_layers")
    if sorted(kda + full) != list(range(1, layers + 1)):
        raise c.fail("linear_attn_config", f"kda_layers and full_attn_layers must split the layers 1..{layers} (1-based) "
                     "between them, each layer once"[:200])
    mixer = {"kind": "kda", "num_heads": sub.int("num_heads"), "head_dim": sub.int("head_dim"),
             "conv_kernel": sub.int("short_conv_kernel_size"), "conv_bias": False, "chunk_size": 64}
    mixer |= {"state_size": mixer["head_dim"], "n_groups": mixer["num_heads"]}
    kda_set = set(kda)
    return mixer, ["linear" if i + 1 in kda_set else "full" for i in range(layers)]


def kimi_linear(c: HFConfig) -> Mapping:
    """Kimi Linear (modeling_kimi.py): every decoder layer has input_layernorm + post_attention_layernorm (RMSNorm)
    and a token mixer, KimiDeltaAttention (calc.model.mixers.kda_tensors) on the kda_layers, else KimiMLAAttention
    (DeepSeek-V3's MLA with q_lora_rank null: q_proj H*h*(d_nope+d_rope), kv_a_proj_with_mqa, kv_a_layernorm,
    kv_b_proj, o_proj; mla_use_nope leaves the rope dims unrotated, same tensors). Its FFN is a KimiSparseMoeBlock
    iff num_experts is set, layer_idx >= first_k_dense_replace and layer_idx % moe_layer_freq == 0: num_experts
    SwiGLU experts of moe_intermediate_size, a KimiMoEGate of weight E*H plus e_score_correction_bias (E, always
    built), and shared experts of num_shared_experts * moe_intermediate_size; else a dense MLP of
    intermediate_size. Final norm; lm_head untied unless tie_word_embeddings."""
    layers = c.layers()
    mixer, kinds = _kda_config(c, layers)
    heads = c.int("num_attention_heads")
    mla = mla_fields(c, q_lora_optional=True)
    experts = c.int("num_experts", default=None)
    first, freq = c.int("first_k_dense_replace", default=0), c.divisor("moe_layer_freq", default=1)
    ffn = ["moe" if experts and i >= first and i % freq == 0 else "dense" for i in range(layers)]
    spec: Mapping = {
        "num_layers": layers, "hidden_size": c.int("hidden_size"), "num_heads": heads, "num_kv_heads": heads,
        "head_dim": mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"], "intermediate_size": c.int("intermediate_size"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", "model_max_length", default=1_048_576),
        "rope_scaling_factor": rope_scaling_factor(c),
        "tied_embeddings": c.bool("tie_word_embeddings", default=False), "norm": "rmsnorm", "gated_mlp": True,
        "activation": c.get("hidden_act", default="silu"), "mla": mla, "mixer": mixer,
        "layer_types": kinds, "ffn_types": ffn,
        "mtp_layers": c.int("num_nextn_predict_layers", default=0),
        # mla_use_nope: the MLA layers apply no rotary embedding (KDA's decay carries the positions).
        "position_embedding": "none" if c.bool("mla_use_nope", default=False) else "rope",
    }
    if "moe" in ffn:
        width = c.int("moe_intermediate_size")
        shared = c.int("num_shared_experts", default=0) or 0
        spec["moe"] = {"num_experts": experts, "experts_per_token": c.int("num_experts_per_token", "num_experts_per_tok"),
                       "expert_intermediate_size": width, "num_shared_experts": shared,
                       "shared_intermediate_size": shared * width, "router_bias": True,
                       "num_dense_layers": ffn.count("dense")}
    return spec


MAPPERS = {"kimi_linear": kimi_linear}
