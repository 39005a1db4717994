"""State-space models and hybrids: Mamba, Falcon-Mamba, Mamba-2, Jamba, Nemotron-H, Qwen3-Next, Falcon-H1.

Each reads the fields of its ``configuration_*.py`` in transformers with the same defaults; the per-layer
mixer and FFN follow the modeling file's rule (Jamba's attn/expert periods, Nemotron-H's
hybrid_override_pattern, Qwen3-Next's layer_types / full_attention_interval).
"""

from __future__ import annotations

import math
from typing import Any

from calc.sources.hf.config import HFConfig, Mapping, attention_layout, llama_like

MAMBA = {"vocab_size": 50280, "hidden_size": 768, "state_size": 16, "num_hidden_layers": 32, "expand": 2, "conv_kernel": 4}
MAMBA2 = {"num_heads": 128, "head_dim": 64, "vocab_size": 32768, "hidden_size": 4096, "state_size": 128,
          "num_hidden_layers": 64, "expand": 2, "conv_kernel": 4, "n_groups": 8, "chunk_size": 256}
QWEN3_NEXT = {"vocab_size": 151936, "num_key_value_heads": 2, "head_dim": 256, "max_position_embeddings": 32768,
              "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
              "linear_num_key_heads": 16, "linear_num_value_heads": 32, "num_experts": 512, "num_experts_per_tok": 10,
              "moe_intermediate_size": 512, "shared_expert_intermediate_size": 512, "full_attention_interval": 4}


def _no_attention(c: HFConfig, hidden: int, heads: int, d_inner: int, tied_default: bool) -> Mapping:
    """The fields a pure state-space model fills for a spec built around attention: no attention layer, no FFN."""
    layers = c.layers()
    return {
        "num_layers": layers, "hidden_size": hidden, "num_heads": heads, "head_dim": hidden // heads,
        "intermediate_size": d_inner, "vocab_size": c.int("vocab_size"), "gated_mlp": False,
        "max_position_embeddings": c.int("max_position_embeddings", default=1_048_576),
        "position_embedding": "none", "tied_embeddings": c.bool("tie_word_embeddings", default=tied_default),
        "norm": "rmsnorm", "norms_per_layer": 1, "layer_types": ["linear"] * layers, "ffn_types": ["none"] * layers,
    }


def _dt_rank(c: HFConfig, key: str, hidden: int) -> int:
    """time_step_rank / mamba_dt_rank: 'auto' = ceil(H / 16) (configuration_mamba / configuration_jamba)."""
    value = c.get(key, default="auto")
    return math.ceil(hidden / 16) if value == "auto" else c.int(key)


def mamba(c: HFConfig) -> Mapping:
    """Mamba-1 (modeling_mamba; FalconMamba adds weightless RMS normalisations of B, C and dt): per block
    one RMSNorm + MambaMixer, final norm_f; tie_word_embeddings default True (Falcon-Mamba-7B writes false)."""
    c.use_defaults(MAMBA)
    hidden = c.int("hidden_size")
    d_inner = c.int("intermediate_size", default=c.int("expand") * hidden, rule="expand * hidden_size")
    spec = _no_attention(c, hidden, 1, d_inner, tied_default=True)
    spec["mixer"] = {"kind": "mamba", "num_heads": d_inner, "head_dim": 1, "state_size": c.int("state_size"),
                     "conv_kernel": c.int("conv_kernel"), "dt_rank": _dt_rank(c, "time_step_rank", hidden),
                     "proj_bias": c.bool("use_bias", default=False), "conv_bias": c.bool("use_conv_bias", default=True)}
    return spec


def _mamba2_mixer(c: HFConfig, hidden: int, p: str = "") -> dict[str, Any]:
    """Mamba2Mixer fields (modeling_mamba2; NemotronH / Bamba use mamba_-prefixed names, ``p``).

    Mamba2Mixer's width is expand * hidden_size, so there num_heads * head_dim must match it; NemotronHMamba2Mixer's
    is mamba_num_heads * mamba_head_dim and ignores ``expand`` (modeling_nemotron_h: intermediate_size =
    config.mamba_num_heads * config.mamba_head_dim): Nemotron 3 Nano 30B-A3B writes expand 2 with 64 heads of
    64 on hidden 2688 (4096, not 5376), Nemotron Nano 9B v2 128 heads of 80 on hidden 4480."""
    heads = c.int(f"{p}num_heads")
    head_dim = c.int(f"{p}head_dim")
    for key, value in ((f"{p}num_heads", heads), (f"{p}head_dim", head_dim)):
        if value < 1:  # the mixer's heads and their width are counts (a 0 divided the hidden size by nothing)
            raise c.fail(key, f"must be >= 1, got {value}")
    expand = c.int("expand", default=None) if not p else None
    if expand is not None and expand * hidden != heads * head_dim:
        raise c.fail(f"{p}num_heads", f"x {p}head_dim ({heads}*{head_dim}) must equal expand * hidden_size ({expand}*{hidden})")
    return {"kind": "mamba2", "num_heads": heads, "head_dim": head_dim, "state_size": c.int("ssm_state_size", "state_size"),
            "n_groups": c.int("n_groups", default=1), "conv_kernel": c.int("conv_kernel", default=4),
            "proj_bias": c.bool("use_bias", default=False), "conv_bias": c.bool("use_conv_bias", default=True),
            "chunk_size": c.int("chunk_size", default=256)}


def mamba2(c: HFConfig) -> Mapping:
    """Mamba-2 (modeling_mamba2): per block one RMSNorm + Mamba2Mixer (gated RMSNorm of d_in inside), norm_f."""
    c.use_defaults(MAMBA2)
    hidden = c.int("hidden_size")
    mixer = _mamba2_mixer(c, hidden)
    spec = _no_attention(c, hidden, mixer["num_heads"], mixer["num_heads"] * mixer["head_dim"], tied_default=False)
    return {**spec, "mixer": mixer}


def jamba(c: HFConfig) -> Mapping:
    """Jamba (modeling_jamba): layer i attends iff i % attn_layer_period == attn_layer_offset, else a Mamba-1
    mixer with dt/B/C RMSNorms; its FFN is MoE iff i % expert_layer_period == expert_layer_offset (num_experts
    > 1). Two RMSNorms per block; attention without bias; router Linear(H, E) without bias."""
    layers = c.layers()
    hidden = c.int("hidden_size")
    a_period, a_offset = c.divisor("attn_layer_period", 8), c.int("attn_layer_offset", default=4)
    e_period, e_offset = c.divisor("expert_layer_period", 2), c.int("expert_layer_offset", default=1)
    experts = c.int("num_experts", default=16)
    d_inner = c.int("mamba_expand", default=2) * hidden
    spec = llama_like(c, layout={"layer_types": ["full" if i % a_period == a_offset else "linear" for i in range(layers)]})
    spec["ffn_types"] = ["moe" if experts > 1 and i % e_period == e_offset else "dense" for i in range(layers)]
    spec["mixer"] = {"kind": "mamba", "num_heads": d_inner, "head_dim": 1, "state_size": c.int("mamba_d_state", default=16),
                     "conv_kernel": c.int("mamba_d_conv", default=4), "dt_rank": _dt_rank(c, "mamba_dt_rank", hidden),
                     "proj_bias": c.bool("mamba_proj_bias", default=False),
                     "conv_bias": c.bool("mamba_conv_bias", default=True), "inner_norms": True}
    if "moe" in spec["ffn_types"]:
        spec["moe"] = {"num_experts": experts, "experts_per_token": c.int("num_experts_per_tok", default=2),
                       "expert_intermediate_size": spec["intermediate_size"],
                       "num_dense_layers": spec["ffn_types"].count("dense")}
    return spec


# hybrid_override_pattern characters (configuration_nemotron_h): M = Mamba-2, * = attention, - = MLP, E = MoE.
_NEMOTRON_H = {"M": ("linear", "none"), "*": ("full", "none"), "-": ("none", "dense"), "E": ("none", "moe")}
_BLOCK_TYPES = {"mamba": "M", "attention": "*", "mlp": "-", "moe": "E"}


def nemotron_h(c: HFConfig) -> Mapping:
    """Nemotron-H / Nemotron Nano 2 and 3 (modeling_nemotron_h): every block is ONE RMSNorm + one of a Mamba-2
    mixer, attention (no RoPE parameters; bias=attention_bias), an MLP up/down with relu2 (bias=mlp_bias) or
    an MoE of such MLPs with a sigmoid router and e_score_correction_bias; final norm_f."""
    layers = c.layers()
    hidden = c.int("hidden_size")
    types = c.get("layers_block_type", default=None)
    pattern = "".join(_BLOCK_TYPES.get(t, "?") for t in types) if isinstance(types, list) else c.get("hybrid_override_pattern")
    if not isinstance(pattern, str) or len(pattern) != layers or set(pattern) - set(_NEMOTRON_H):
        raise c.fail("hybrid_override_pattern", f"must have one of M * - E per layer ({layers}), got {pattern!r}"[:200])
    kinds = [_NEMOTRON_H[ch] for ch in pattern]
    heads = c.int("num_attention_heads")
    bias = c.bool("attention_bias", default=False)
    spec: Mapping = {
        "num_layers": layers, "hidden_size": hidden, "num_heads": heads,
        "num_kv_heads": c.int("num_key_value_heads", default=None),
        "head_dim": c.int("attention_head_dim", "head_dim", default=None),
        "intermediate_size": c.int("intermediate_size"), "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=4096),
        "tied_embeddings": c.bool("tie_word_embeddings", default=False), "norm": "rmsnorm", "norms_per_layer": 1,
        "gated_mlp": False, "mlp_bias": c.bool("mlp_bias", default=False), "qkv_bias": bias, "out_bias": bias,
        "activation": c.get("mlp_hidden_act", default="relu2"),
        "layer_types": [k for k, _ in kinds], "ffn_types": [f for _, f in kinds],
        "mixer": {**_mamba2_mixer(c, hidden, "mamba_"), "chunk_size": c.int("chunk_size", default=128)},
    }
    if "E" in pattern:
        routed = c.int("n_routed_experts")
        shared = c.int("n_shared_experts", default=0)
        spec["moe"] = {"num_experts": routed, "experts_per_token": c.int("num_experts_per_tok"),
                       "expert_intermediate_size": c.int("moe_intermediate_size"), "num_shared_experts": 1 if shared else 0,
                       "shared_intermediate_size": shared * c.int("moe_shared_expert_intermediate_size", default=0),
                       "router_bias": True, "num_dense_layers": 0}
    return spec


def qwen3_next(c: HFConfig) -> Mapping:
    """Qwen3-Next (modeling_qwen3_next): layer_types (default: every full_attention_interval-th layer full,
    the rest Gated DeltaNet); full layers are Qwen3 attention with q/k RMSNorm(head_dim) and a sigmoid output
    gate (q_proj H -> 2*h*d); every layer's FFN is the Qwen2-MoE block (routed experts, one gated shared
    expert) unless in mlp_only_layers or off decoder_sparse_step, then a dense MLP of intermediate_size."""
    c.use_defaults(QWEN3_NEXT)
    layers = c.layers()
    interval = c.divisor("full_attention_interval", 4)
    layout = attention_layout(c, layers, lambda i: "linear" if (i + 1) % interval else "full")
    spec = llama_like(c, layout=layout, qk_norm="head", attention_output_gate=True,
                      qkv_bias=c.bool("attention_bias", default=False), out_bias=c.bool("attention_bias", default=False))
    experts = c.int("num_experts")
    step = c.divisor("decoder_sparse_step", 1)
    mlp_only = set(c.int_list("mlp_only_layers"))
    ffn = ["moe" if experts > 0 and i not in mlp_only and (i + 1) % step == 0 else "dense" for i in range(layers)]
    shared = c.int("shared_expert_intermediate_size")
    spec |= {"ffn_types": ffn, "moe": {
        "num_experts": experts, "experts_per_token": c.int("num_experts_per_tok"),
        "expert_intermediate_size": c.int("moe_intermediate_size"), "num_shared_experts": 1 if shared else 0,
        "shared_intermediate_size": shared, "shared_expert_gate": bool(shared), "num_dense_layers": ffn.count("dense")}}
    spec["mixer"] = {"kind": "gated_deltanet", "num_heads": c.int("linear_num_value_heads"),
                     "head_dim": c.int("linear_value_head_dim"), "state_size": c.int("linear_key_head_dim"),
                     "n_groups": c.int("linear_num_key_heads"), "conv_kernel": c.int("linear_conv_kernel_dim"),
                     "conv_bias": False, "chunk_size": 64}
    # The checkpoint ships one MTP block (mtp.* tensors) that config.json does not declare; vLLM's
    # Qwen3NextMultiTokenPredictor reads getattr(config, "num_nextn_predict_layers", 1) and shares embed_tokens, lm_head.
    spec["mtp_layers"] = c.int("mtp_num_hidden_layers", "num_nextn_predict_layers", default=1,
                               rule="the checkpoint's mtp.* block, as vLLM's qwen3_next_mtp.py assumes")
    spec["mtp_own_embeddings"] = bool(c.data.get("mtp_use_dedicated_embeddings") or False)  # absent: shared (vLLM)
    return spec


def mamba2_mixer(c: HFConfig, hidden: int, width: int | None = None) -> dict[str, Any]:
    """The Mamba-2 mixer of the mamba_-prefixed configs (BambaMixer, reused by GraniteMoeHybrid and FalconH1Mixer):
    width d_in = ``width`` (default mamba_expand * hidden_size) = mamba_n_heads * mamba_d_head, mamba_d_head 'auto'
    = d_in / mamba_n_heads; conv1d over d_in + 2*G*N channels with mamba_conv_bias; in_proj / out_proj bias
    mamba_proj_bias; gated RMSNorm(d_in)."""
    width = width or c.int("mamba_expand") * hidden
    heads = c.int("mamba_n_heads")
    d_head = c.get("mamba_d_head", default="auto")
    d_head = width // heads if d_head == "auto" else c.int("mamba_d_head")
    if heads * d_head != width:
        raise c.fail("mamba_d_head", f"x mamba_n_heads ({d_head}*{heads}) must equal the mixer width ({width})")
    return {"kind": "mamba2", "num_heads": heads, "head_dim": d_head, "state_size": c.int("mamba_d_state"),
            "n_groups": c.int("mamba_n_groups"), "conv_kernel": c.int("mamba_d_conv"),
            "proj_bias": c.bool("mamba_proj_bias", default=False), "conv_bias": c.bool("mamba_conv_bias", default=True),
            "chunk_size": c.int("mamba_chunk_size")}


FALCON_H1 = {"vocab_size": 128000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 8192, "mamba_d_ssm": 1024,
             "mamba_n_heads": 128, "mamba_n_groups": 1, "mamba_d_state": 256, "mamba_d_conv": 4, "mamba_expand": 2,
             "mamba_chunk_size": 256}


def falcon_h1(c: HFConfig) -> Mapping:
    """Falcon-H1 (modeling_falcon_h1): every decoder layer runs a Mamba-2 mixer (FalconH1Mixer) and Llama attention
    side by side on the same input_layernorm output, then pre_ff_layernorm + a gated MLP (bias=mlp_bias): two
    RMSNorms per layer, final_layernorm. The mixer's width is mamba_d_ssm (null: mamba_expand * hidden_size),
    mamba_d_head 'auto' = width / mamba_n_heads; its gated RMSNorm exists only with mamba_rms_norm; in_proj
    carries mamba_proj_bias and out_proj projectors_bias. The mu-P multipliers scale activations: no parameters.
    Defaults: configuration_falcon_h1 (transformers main, 2026)."""
    c.use_defaults(FALCON_H1)
    hidden = c.int("hidden_size")
    mixer = mamba2_mixer(c, hidden, c.int("mamba_d_ssm", default=None))
    in_bias, out_bias = mixer["proj_bias"], c.bool("projectors_bias", default=False)
    if in_bias != out_bias:
        raise c.fail("projectors_bias", f"({out_bias}) differs from mamba_proj_bias ({in_bias}); a mixer with a bias on "
                     "only one of in_proj / out_proj is not modelled")
    bias = c.bool("attention_bias", default=False)
    spec = llama_like(c, layout={}, qkv_bias=bias, out_bias=bias, mlp_bias=c.bool("mlp_bias", default=False))
    spec["mixer"] = {**mixer, "gated_norm": c.bool("mamba_rms_norm", default=False), "parallel": True}
    return spec


MAPPERS = {"falcon_h1": falcon_h1, "mamba": mamba, "falcon_mamba": mamba, "mamba2": mamba2, "jamba": jamba,
           "nemotron_h": nemotron_h, "qwen3_next": qwen3_next}
