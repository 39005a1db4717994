"""MiniMax-M2 (minimax_m2): full softmax attention on every layer with q/k RMSNorms over the whole projection,
and a sigmoid-routed MoE of 256 experts with a routing correction bias; no shared expert, no dense layer."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like

# configuration_minimax_m2 defaults (transformers main): the MiniMax-M2 shapes.
MINIMAX_M2 = {"num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 196608, "num_local_experts": 256,
              "num_experts_per_tok": 8}


def minimax_m2(c: HFConfig) -> Mapping:
    """modeling_minimax_m2: MiniMaxM2Attention (FlexOlmoAttention) q/k/v/o without bias, q_norm RMSNorm(h*d) and
    k_norm RMSNorm(g*d) before the heads are split (the hub config's qk_norm_type "per_layer"); partial RoPE
    (rotary_dim) has no parameters. MiniMaxM2SparseMoeBlock: gate Linear(H, E) without bias, experts gate_up
    (E, 2I, H) + down (E, H, I) of intermediate_size, e_score_correction_bias (E) (use_routing_bias). The
    checkpoint's MTP modules (use_mtp, num_mtp_modules) are not built by transformers and not counted."""
    c.use_defaults(MINIMAX_M2)
    spec = llama_like(c, qk_norm="full")
    spec["moe"] = {
        "num_experts": c.int("num_local_experts"),
        "experts_per_token": c.int("num_experts_per_tok"),
        "expert_intermediate_size": spec["intermediate_size"],
        "router_bias": True,
    }
    return spec


MAPPERS = {"minimax_m2": minimax_m2}
