"""KV cache per token: 2 * L * g * d * bytes over the softmax-attention layers only (seed 001 section 2.12; GQA/MQA replace h by g);
MLA caches kv_lora_rank + qk_rope_head_dim per layer (DeepSeek-V2, arXiv 2405.04434 section 2.1); DeepSeek-V3.2's
sparse MLA (DSA) adds its lightning indexer's key cache and packs an fp8 latent with its scales
(sparse_mla_layer_token_bytes).
Sliding-window and chunked layers keep at most their window of tokens (vLLM's SlidingWindowSpec /
ChunkedLocalAttentionSpec in vllm/v1/kv_cache_interface.py); layers without attention keep none."""

from __future__ import annotations

import math

from calc.memo import per_spec
from calc.model.layers import attention_layers, decode_keys_read, mixer_layer_flags, sparse_layers
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

    TF32 is a matmul mode of fp32 tensors: its activations, and so its KV, are fp32.

    >>> auto_kv_dtype("bf16"), auto_kv_dtype("fp8"), auto_kv_dtype("int4", "fp16"), auto_kv_dtype("tf32")
    ('bf16', 'bf16', 'fp16', 'fp32')
    """
    if act_dtype == "tf32":
        return "fp32"
    if act_dtype in ACTIVATION_DTYPES:
        return act_dtype
    return checkpoint_dtype if checkpoint_dtype in ("bf16", "fp16") else "bf16"


def model_auto_kv_dtype(m: ModelSpec, act_dtype: str, checkpoint_dtype: str = "bf16", accounting: str = "vllm-v1") -> str:
    """What ``auto`` stores for this model under an engine (``accounting``, calc.specs.serving.EngineSettings.accounting;
    the default engine's, vLLM V1, for the engine-free `memory --mode infer`): auto_kv_dtype, except that vLLM V1 starts a
    DeepSeek-V3.2 (DSA) model's cache in fp8, FlashMLA's sparse record (vllm/model_executor/models/config.py
    DeepseekV32ForCausalLM.verify_and_update_config: "For DeepSeekV3.2, we use a custom fp8 format as default",
    cache_dtype "fp8_ds_mla"; --kv-cache-dtype bfloat16 keeps it 16-bit; sparse_mla_layer_token_bytes)."""
    if sparse_mla(m) and accounting == "vllm-v1":
        return "fp8"
    return auto_kv_dtype(act_dtype, checkpoint_dtype)


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


# DeepSeek-V3.2 sparse attention (DSA). Its lightning indexer caches one key of index_head_dim per token per layer, in
# fp8 with one fp32 scale per 128 values, whatever the main cache's dtype: 128 + 4 = 132 B for V3.2 (vLLM
# vllm/model_executor/models/deepseek_v2.py Indexer: k_cache head_dim = head_dim + head_dim // quant_block_size * 4,
# uint8, "fp8 naive cache ... scale in fp32 per quant_block_size element"; SGLang NSATokenToKVPool
# index_k_with_scale_buffer; TensorRT-LLM's DSA cache manager, the same sum). An fp8 latent under DSA is stored as
# FlashMLA's sparse-decode record (vLLM "fp8_ds_mla", FlashMLASparseBackend.get_kv_cache_shape "custom storage format
# is 656 bytes"; SGLang nsa_kv_cache_store_fp8): the kv_lora_rank latent in fp8 with one fp32 scale per 128 values and
# the rope key left in bf16: 512 + 16 + 128 = 656 B.
INDEXER_QUANT_BLOCK = 128
SCALE_BYTES = 4  # fp32
ROPE_KEY_BYTES = 2  # bf16


def sparse_mla(m: ModelSpec) -> bool:
    """A DeepSeek-V3.2-class model: MLA with DSA's lightning indexer."""
    return bool(m.mla and m.mla.index_n_heads)


def indexer_bytes_per_layer_token(m: ModelSpec) -> int:
    """Bytes of DSA's indexer key cache per token per layer (the note above), 0 without DSA:
    d_i + d_i / 128 x 4.

    >>> from calc.sources.catalog import load_model
    >>> indexer_bytes_per_layer_token(load_model("llama3-8b"))
    0
    """
    if not sparse_mla(m):
        return 0
    d = m.mla.index_head_dim
    return d + math.ceil(d / INDEXER_QUANT_BLOCK) * SCALE_BYTES


def sparse_mla_layer_token_bytes(m: ModelSpec, kv_dtype: str) -> int | None:
    """Bytes per token per layer of a DSA model's whole cache (latent + indexer key) when its latent is fp8 (FlashMLA's
    sparse record, the note above): r_kv + r_kv / 128 x 4 + d_rope x 2 + indexer; None for any other model or KV dtype
    (the latent then takes (r_kv + d_rope) x bytes(kv_dtype), kv_bytes_for_layer_tokens)."""
    if not sparse_mla(m) or not kv_dtype.startswith("fp8"):
        return None
    a = m.mla
    latent = a.kv_lora_rank + math.ceil(a.kv_lora_rank / INDEXER_QUANT_BLOCK) * SCALE_BYTES + a.qk_rope_head_dim * ROPE_KEY_BYTES
    return latent + indexer_bytes_per_layer_token(m)


def kv_bytes_for_layer_tokens(m: ModelSpec, layer_tokens: float, kv_dtype: str, tp: int = 1,
                              indexer_tokens: float | None = None) -> int:
    """Exact bytes of ``layer_tokens`` (token, layer) entries of one GPU's cache: elements x bytes(kv_dtype), plus DSA's
    indexer key per entry (``indexer_tokens`` of them when they differ: a sparse layer's query reads its top-k latents
    but every cached indexer key); a DSA model's fp8 latent at its packed record (sparse_mla_layer_token_bytes)."""
    idx = indexer_bytes_per_layer_token(m)
    indexed = layer_tokens if indexer_tokens is None else indexer_tokens
    packed = sparse_mla_layer_token_bytes(m, kv_dtype)
    if packed is not None:
        return math.ceil(layer_tokens * (packed - idx) + indexed * idx)
    return (exact_bytes(math.ceil(layer_tokens * kv_elements_per_layer_token(m, tp)), kv_dtype, "--kv-dtype")
            + math.ceil(indexed * idx))


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
    return kv_bytes_for_layer_tokens(m, busiest, kv_dtype, tp)


def kv_bytes_read(m: ModelSpec, context: int, kv_dtype: str = "bf16", tp: int = 1, first: int = 0, last: int = 0) -> int:
    """KV bytes one decoding query reads on one TP rank at ``context`` cached tokens:

        bytes = sum over the layers of keys_read_l x per-layer-token elements x bytes(kv_dtype)

    keys_read_l as calc.model.layers.LayerAttention.keys_read (a chunked layer reads its own chunk, averaged over
    the decode contexts ``first`` .. ``last`` when given; a sparse DSA layer its top-k latents, min(context, k), plus
    the indexer key of every cached token); kv_cache_bytes_for_tokens(context) for a model without chunked or sparse
    layers, whose query reads all it holds.

    >>> from calc.sources.catalog import load_model
    >>> kv_bytes_read(load_model("llama2-7b"), 1000, "fp16") == kv_cache_bytes_for_tokens(load_model("llama2-7b"), 1000, "fp16")
    True
    """
    if "chunked" not in (m.layer_types or ()) and not sparse_layers(m):
        return kv_cache_bytes_for_tokens(m, context, kv_dtype, tp)
    # a sparse (DSA) layer's query reads its top-k latents and every cached indexer key (the indexer scores them all)
    held = sum(a.tokens_seen(context) for a in attention_layers(m)) if sparse_layers(m) else None
    return kv_bytes_for_layer_tokens(m, decode_keys_read(m, context, first, last), kv_dtype, tp, held)


def kv_cache_bytes_per_token(m: ModelSpec, kv_dtype: str = "bf16", tp: int = 1, pp: int = 1) -> int:
    """KV-cache bytes per token (per GPU when tp/pp > 1) while every layer still holds it, i.e. for
    sequences no longer than the smallest window; ``kv_cache_bytes_for_tokens`` caps local layers.

    >>> from calc.sources.catalog import load_model
    >>> kv_cache_bytes_per_token(load_model("llama2-70b"), "fp16")  # 80 * 8 * 128 * 2 * 2
    327680
    """
    return kv_bytes_for_layer_tokens(m, softmax_layers_per_stage(m, pp), kv_dtype, tp)


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
        a, idx = m.mla, indexer_bytes_per_layer_token(m)
        packed = sparse_mla_layer_token_bytes(m, kv_dtype)
        if packed is not None:
            line = (f"KV/token (sparse MLA, fp8) = L*(r_kv + r_kv/128*4 + d_rope*2 + indexer) = {layers}*({a.kv_lora_rank}+"
                    f"{a.kv_lora_rank // INDEXER_QUANT_BLOCK * SCALE_BYTES}+{a.qk_rope_head_dim * ROPE_KEY_BYTES}+{idx}) = "
                    f"{per_token:,} B (FlashMLA's sparse fp8 record: the latent in fp8 with fp32 scales, the rope key in "
                    f"bf16; the lightning indexer's fp8 key + fp32 scale {idx} B)")
        elif idx:
            line = (f"KV/token (sparse MLA) = L*((r_kv + d_rope)*bytes + indexer) = {layers}*(({a.kv_lora_rank}+"
                    f"{a.qk_rope_head_dim})*{b} + {idx}) = {per_token:,} B (the lightning indexer's fp8 key + fp32 "
                    f"scale: {idx} B a layer)")
        else:
            line = (f"KV/token (MLA) = L*(r_kv + d_rope)*bytes = {layers}*({a.kv_lora_rank}+"
                    f"{a.qk_rope_head_dim})*{b} = {per_token:,} B")
        if m.mixer:  # Kimi Linear: the MLA layers only; the linear-attention ones keep a state
            line += (f" (L = the {layers} MLA layers; {mixer_layers_per_stage(m)} {m.mixer.kind} layers keep "
                     f"{state_bytes_per_request(m):,} B of state per request instead)")
        return line
    line = f"KV/token = 2*L*g*d*bytes = 2*{layers}*{m.kv_heads}*{m.dim_per_head}*{b} = {per_token:,} B"
    if m.mixer:
        line += (f" (L = the {layers} softmax-attention layers; {mixer_layers_per_stage(m)} {m.mixer.kind} layers keep "
                 f"{state_bytes_per_request(m):,} B of state per request instead)")
    return line
