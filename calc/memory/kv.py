"""KV cache per token: 2 * L * g * d * bytes over the softmax-attention layers only (seed 001 section 2.12; GQA/MQA replace h by g);
MLA caches kv_lora_rank + qk_rope_head_dim per layer (DeepSeek-V2, arXiv 2405.04434 section 2.1).
Sliding-window and chunked layers keep at most their window of tokens (vLLM's SlidingWindowSpec /
ChunkedLocalAttentionSpec in vllm/v1/kv_cache_interface.py); layers without attention keep none."""

from __future__ import annotations

from calc.memo import per_spec
from calc.model.layers import attention_layers, decode_keys_read, mixer_layer_flags
from calc.model.mixers import state_bytes
from calc.model.parallel import busiest_stage_sum, kv_heads_per_gpu, layers_per_stage
from calc.specs import ModelSpec
from calc.units import dtype_bytes, exact_bytes

ACTIVATION_DTYPES = ("bf16", "fp16", "fp32")


def auto_kv_dtype(act_dtype: str, checkpoint_dtype: str = "bf16") -> str:
    """The serving engines' KV-cache dtype "auto" (vLLM CacheConfig cache_dtype "auto" = the model dtype; SGLang
    kv_cache_dtype "auto"; TRT-LLM KvCacheConfig dtype "auto"): the activation dtype. Quantized weights (fp8, int8,
    int4, an FP8 checkpoint) keep 16-bit activations, so their KV stays in the checkpoint's 16-bit dtype; fp8 KV only
    when asked (--kv-dtype fp8).

    >>> auto_kv_dtype("bf16"), auto_kv_dtype("fp8"), auto_kv_dtype("int4", "fp16")
    ('bf16', 'bf16', 'fp16')
    """
    if act_dtype in ACTIVATION_DTYPES:
        return act_dtype
    return checkpoint_dtype if checkpoint_dtype in ("bf16", "fp16") else "bf16"


def softmax_layers_per_stage(m: ModelSpec, pp: int = 1) -> int:
    """Softmax-attention layers on the busiest pipeline stage: the only layers that cache K and V
    (linear-attention / state-space layers keep a constant state instead, ``state_bytes_per_request``)."""
    if m.layer_types is None:
        return layers_per_stage(m, pp)
    return busiest_stage_sum([a.softmax for a in attention_layers(m)], pp)


def kv_elements_per_token(m: ModelSpec, tp: int = 1, pp: int = 1) -> int:
    """Cached values per token on one GPU: 2 (K and V) * L_soft/p * g/t * d; MLA: L_soft/p * (r_kv + d_rope)
    (the latent is replicated on every TP rank); L_soft counts softmax-attention layers only."""
    return softmax_layers_per_stage(m, pp) * kv_elements_per_layer_token(m, tp)


def kv_elements_per_layer_token(m: ModelSpec, tp: int = 1) -> int:
    """Cached values per token per attention layer on one GPU: 2 * g/t * d; MLA: r_kv + d_rope."""
    if m.mla:
        return m.mla.kv_lora_rank + m.mla.qk_rope_head_dim
    return 2 * kv_heads_per_gpu(m, tp) * m.dim_per_head


def kv_cache_bytes_for_tokens(m: ModelSpec, tokens: int, kv_dtype: str = "bf16", tp: int = 1, pp: int = 1) -> int:
    """Exact KV-cache bytes of ONE sequence holding ``tokens`` tokens, on the busiest GPU under tp/pp.

    bytes = sum over the layers of the busiest stage (stages as vLLM partitions them,
    calc.model.parallel.pp_stage_layers) of
    min(tokens, window_l) * per-layer-token elements * bytes(kv_dtype); window_l = tokens for full
    layers, the sliding window / attention chunk for local layers, 0 for layers without attention.

    >>> from calc.sources.catalog import load_model
    >>> kv_cache_bytes_for_tokens(load_model("llama2-7b"), 1000, "fp16")  # 2*32*4096*2 B * 1000
    524288000
    """
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    return _kv_cache_bytes_for_tokens(m, tokens, kv_dtype, tp, pp)


@per_spec
def _kv_cache_bytes_for_tokens(m: ModelSpec, tokens: int, kv_dtype: str, tp: int, pp: int) -> int:
    busiest = busiest_stage_sum([a.tokens_seen(tokens) for a in attention_layers(m)], pp)
    return exact_bytes(busiest * kv_elements_per_layer_token(m, tp), kv_dtype, "--kv-dtype")


def kv_bytes_read(m: ModelSpec, context: int, kv_dtype: str = "bf16", tp: int = 1, first: int = 0, last: int = 0) -> int:
    """KV bytes one decoding query reads on one TP rank at ``context`` cached tokens:

        bytes = sum over the layers of keys_read_l x per-layer-token elements x bytes(kv_dtype)

    keys_read_l as calc.model.layers.LayerAttention.keys_read (a chunked layer reads its own chunk, averaged over
    the decode contexts ``first`` .. ``last`` when given); kv_cache_bytes_for_tokens(context) for a model without
    chunked layers, whose query reads all it holds.

    >>> from calc.sources.catalog import load_model
    >>> kv_bytes_read(load_model("llama2-7b"), 1000, "fp16") == kv_cache_bytes_for_tokens(load_model("llama2-7b"), 1000, "fp16")
    True
    """
    if "chunked" not in (m.layer_types or ()):
        return kv_cache_bytes_for_tokens(m, context, kv_dtype, tp)
    return exact_bytes(decode_keys_read(m, context, first, last) * kv_elements_per_layer_token(m, tp), kv_dtype, "--kv-dtype")


def kv_cache_bytes_per_token(m: ModelSpec, kv_dtype: str = "bf16", tp: int = 1, pp: int = 1) -> int:
    """KV-cache bytes per token (per GPU when tp/pp > 1) while every layer still holds it, i.e. for
    sequences no longer than the smallest window; ``kv_cache_bytes_for_tokens`` caps local layers.

    >>> from calc.sources.catalog import load_model
    >>> kv_cache_bytes_per_token(load_model("llama2-70b"), "fp16")  # 80 * 8 * 128 * 2 * 2
    327680
    """
    return exact_bytes(kv_elements_per_token(m, tp, pp), kv_dtype, "--kv-dtype")


def mixer_layers_per_stage(m: ModelSpec, pp: int = 1) -> int:
    """Layers with a state-space / linear-attention mixer on the busiest pipeline stage (every layer when the
    mixer runs beside attention, Falcon-H1)."""
    return busiest_stage_sum(mixer_layer_flags(m), pp)


def state_bytes_per_request(m: ModelSpec, tp: int = 1, pp: int = 1) -> int:
    """Bytes of the constant per-request state (conv state + SSM / linear-attention state) on the busiest
    GPU: mixer layers of the busiest stage x calc.model.mixers.state_bytes (conv state in the model dtype, the
    recurrent state in the dtype vLLM keeps it: the model dtype, fp32 for Kimi Delta Attention). 0 for a pure transformer. It does not
    grow with the tokens: a request of 10 tokens and one of 100k hold the same.

    >>> from calc.sources.catalog import load_model
    >>> state_bytes_per_request(load_model("llama2-7b"))
    0
    """
    x = m.mixer
    if x is None:
        return 0
    return mixer_layers_per_stage(m, pp) * state_bytes(x, m.checkpoint_dtype, tp)


def request_cache_bytes(m: ModelSpec, tokens: int, kv_dtype: str = "bf16", tp: int = 1, pp: int = 1) -> int:
    """What one request of ``tokens`` holds on the busiest GPU: its KV cache (softmax layers, local ones
    capped at their window) + the constant state of its linear-attention / state-space layers.
    The one per-request rule `memory --mode infer`, `concurrency`, `serve` and `report` share.

    This is the engine-free count. Under vLLM V1 (0.10 on) a hybrid model's requests take blocks from one shared
    pool instead (calc.serving.hybrid_alloc, used by calc.serving.engine_memory): the attention block size is
    raised to 16 x ceil(state page / (16 x attention bytes per token per layer)) so one page holds a layer's state
    (vllm/model_executor/models/config.py HybridAttentionMambaModelConfig.verify_and_update_config), the state
    page is padded to it, layers are grouped (vllm/v1/core/kv_cache_utils.py _get_kv_cache_groups_uniform_page_size)
    and a request holds ceil(slots / B) blocks per attention group and one block per state group. Worked by hand
    (bf16, one rank): Nemotron-H-8B 528-token blocks, 8,192 tokens hold 22 blocks x 4 layers x 2,162,688 B =
    190,316,544 B against 186,023,936 B here."""
    return kv_cache_bytes_for_tokens(m, tokens, kv_dtype, tp, pp) + state_bytes_per_request(m, tp, pp)


def _kv_explain(m: ModelSpec, kv_dtype: str, per_token: int) -> str:
    b = dtype_bytes(kv_dtype, "--kv-dtype")
    layers = softmax_layers_per_stage(m)
    if m.mla:
        line = (f"KV/token (MLA) = L*(r_kv + d_rope)*bytes = {layers}*({m.mla.kv_lora_rank}+"
                f"{m.mla.qk_rope_head_dim})*{b} = {per_token:,} B")
        if m.mixer:  # Kimi Linear: the MLA layers only; the linear-attention ones keep a state
            line += (f" (L = the {layers} MLA layers; {mixer_layers_per_stage(m)} {m.mixer.kind} layers keep "
                     f"{state_bytes_per_request(m):,} B of state per request instead)")
        return line
    line = f"KV/token = 2*L*g*d*bytes = 2*{layers}*{m.kv_heads}*{m.dim_per_head}*{b} = {per_token:,} B"
    if m.mixer:
        line += (f" (L = the {layers} softmax-attention layers; {mixer_layers_per_stage(m)} {m.mixer.kind} layers keep "
                 f"{state_bytes_per_request(m):,} B of state per request instead)")
    return line
