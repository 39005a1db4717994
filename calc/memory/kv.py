"""KV cache per token: 2 * L * g * d * bytes (seed 001 section 2.12; GQA/MQA replace h by g);
MLA caches kv_lora_rank + qk_rope_head_dim per layer (DeepSeek-V2, arXiv 2405.04434 section 2.1)."""

from __future__ import annotations

from calc.model.parallel import kv_heads_per_gpu, layers_per_stage
from calc.specs import ModelSpec
from calc.units import dtype_bytes, exact_bytes


def kv_elements_per_token(m: ModelSpec, tp: int = 1, pp: int = 1) -> int:
    """Cached values per token on one GPU: 2 (K and V) * L/p * g/t * d; MLA: L/p * (r_kv + d_rope)
    (the latent is replicated on every TP rank)."""
    layers = layers_per_stage(m, pp)
    if m.mla:
        return layers * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim)
    return 2 * layers * kv_heads_per_gpu(m, tp) * m.dim_per_head


def kv_cache_bytes_per_token(m: ModelSpec, kv_dtype: str = "bf16", tp: int = 1, pp: int = 1) -> int:
    """KV-cache bytes per token (per GPU when tp/pp > 1).

    >>> from calc.sources.catalog import load_model
    >>> kv_cache_bytes_per_token(load_model("llama2-70b"), "fp16")  # 80 * 8 * 128 * 2 * 2
    327680
    """
    return exact_bytes(kv_elements_per_token(m, tp, pp), kv_dtype, "--kv-dtype")


def _kv_explain(m: ModelSpec, kv_dtype: str, per_token: int) -> str:
    b = dtype_bytes(kv_dtype, "--kv-dtype")
    if m.mla:
        return (f"KV/token (MLA) = L*(r_kv + d_rope)*bytes = {m.num_layers}*({m.mla.kv_lora_rank}+"
                f"{m.mla.qk_rope_head_dim})*{b} = {per_token:,} B")
    return (f"KV/token = 2*L*g*d*bytes = 2*{m.num_layers}*{m.kv_heads}*{m.dim_per_head}*{b} = {per_token:,} B")
