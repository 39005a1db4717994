"""Per-layer attention and window-capped KV cache (issue 15). Numbers worked out by hand."""

import pytest

from calc.memory.kv import kv_cache_bytes_for_tokens
from calc.model.layers import attention_layers
from calc.sources.catalog import load_model
from calc.specs import ModelSpec


def _with(name: str, **update) -> ModelSpec:
    m = load_model(name)
    return ModelSpec.model_validate({**m.model_dump(), **update})


def test_full_attention_is_per_token_times_tokens():
    # llama2-7b: 2 (K,V) * 32 layers * 32 heads * 128 * 2 B = 524,288 B/token
    assert kv_cache_bytes_for_tokens(load_model("llama2-7b"), 4096, "fp16") == 524_288 * 4096


def test_sliding_layers_capped_at_window():
    # Mistral-7B-v0.1: every layer slides over 4096; 2*32*8*128*2 = 131,072 B/token.
    m = _with("mistral-7b", layer_types=["sliding"] * 32, sliding_window=4096)
    assert kv_cache_bytes_for_tokens(m, 32768) == 131_072 * 4096  # 8x less than 32K full
    assert kv_cache_bytes_for_tokens(m, 1000) == 131_072 * 1000
    # TP 2 halves the 8 KV heads; PP 4 keeps 8 layers: 2*8*4*128*2 B * 4096
    assert kv_cache_bytes_for_tokens(m, 32768, tp=2, pp=4) == 2 * 8 * 4 * 128 * 2 * 4096
    assert kv_cache_bytes_for_tokens(m, 32768, kv_dtype="fp8") == 131_072 * 4096 // 2


def test_busiest_stage_of_a_hybrid_model():
    # 4 layers: sliding(16), full, sliding(16), full; 100 tokens; per layer-token 2*8*128*2 = 4096 B.
    m = _with("mistral-7b", num_layers=4, layer_types=["sliding", "full", "sliding", "full"], sliding_window=16)
    assert kv_cache_bytes_for_tokens(m, 100) == 4096 * (16 + 100 + 16 + 100)
    assert kv_cache_bytes_for_tokens(m, 100, pp=2) == 4096 * (16 + 100)
    assert [a.window for a in attention_layers(m)] == [16, None, 16, None]


def test_layer_types_validated():
    with pytest.raises(ValueError, match="sliding_window"):
        _with("llama2-7b", layer_types=["sliding"] * 32)
    with pytest.raises(ValueError, match="entries"):
        _with("llama2-7b", layer_types=["full"] * 3)


def test_context_window_applies_scaling_factor():
    # Qwen2.5-7B: max_position_embeddings 32768 with yarn factor 4 -> 131,072 usable.
    assert _with("qwen2-7b", max_position_embeddings=32768, rope_scaling_factor=4.0).context_window == 131_072
    assert load_model("llama3.1-405b").context_window == load_model("llama3.1-405b").max_position_embeddings


# Attention FLOPs per layer kind (issue 15), pairs worked out by hand.
FIX = "tests/fixtures/hf/"


def test_sliding_prefill_pairs() -> None:
    from calc.model.flops import attention_score_flops, layer_pairs

    m = load_model(FIX + "mistral-7b-v0.1.json")
    # causal, window 4096, 32768 tokens: 4096*4097/2 + (32768-4096)*4096 = 125,831,168 per layer
    assert layer_pairs(m, 32768, 32768, causal=True) == 32 * 125_831_168
    assert layer_pairs(m, 32768, 32768, causal=False) == 32 * 32768 * 4096
    # FLOPs: 2*B*h*(d+d)*pairs = 2*1*32*256 per pair
    assert attention_score_flops(m, 1, 32768, 32768, causal=True) == 2 * 32 * 256 * 32 * 125_831_168


def test_chunked_prefill_pairs() -> None:
    from calc.model.flops import layer_pairs

    m = load_model(FIX + "llama-4-scout-17b-16e-instruct.json")
    # 36 chunked layers (8192): 8192*8193/2 + 1808*1809/2; 12 global NoPE layers: 10000*10001/2.
    assert layer_pairs(m, 10000, 10000, causal=True) == 36 * (33_558_528 + 1_635_336) + 12 * 50_005_000


def test_decode_follows_the_window() -> None:
    from calc.model.flops import decode_flops

    m = load_model(FIX + "gpt-oss-20b.json")
    d = decode_flops(m, batch=1, prompt=1000, output=10)
    per_key = 2 * 64 * (64 + 64)
    # 10 generated tokens: the prefill makes the first, 9 decode steps (t = 1..9). 12 sliding layers see 128 keys per
    # step; 12 full layers see 1000+t: 12*9*128 + 12*(9*1000 + 45)
    step = d.first_step_flops - per_key * (12 * 128 + 12 * 1001)
    assert d.generation_flops == 9 * step + per_key * (12 * 1152 + 12 * 9_045)
    assert d.last_step_flops - d.first_step_flops == per_key * 12 * 8


def test_chunked_layers_read_only_their_chunk_in_decode() -> None:
    """Llama 4 Scout (48 layers: 36 chunked over 8,192 tokens, 12 global; 8 KV heads x 128, bf16): at TP 4 a layer
    holds 8 x 128 x 2 (K, V) x 2 B / 4 = 1,024 B per token. A decoding query at context n reads n keys from a global
    layer and ((n - 1) mod 8,192) + 1 from a chunked one (its own chunk; vLLM's local-attention virtual batches):
      P = 16,383, O = 2 (one decode step at 16,384): (12 x 16,384 + 36 x 8,192) x 1,024 B = 503,316,480 B
      P = 16,385, O = 2 (at 16,386, 2 tokens into the third chunk): (12 x 16,386 + 36 x 2) x 1,024 B = 201,424,896 B
      P = 0, O = 16,385 (decode contexts 1 .. 16,384, mean 8,193 for the global layers): a chunked layer reads
      2 x (8,192 x 8,193 / 2) / 16,384 = 4,096.5 on average: (12 x 8,193 + 36 x 4,096.5) x 1,024 B = 251,688,960 B
    (min(n, 8,192), the cache a chunked layer may hold, read 8,192 at every step past the first chunk.)"""
    from calc.memory.kv import kv_bytes_read
    from calc.serving.step import decode_context, decode_range

    m = load_model("llama4-scout")
    for prompt, output, by_hand in [(16_383, 2, 503_316_480), (16_385, 2, 201_424_896), (0, 16_385, 251_688_960)]:
        ctx, (first, last) = decode_context(prompt, output), decode_range(prompt, output)
        assert kv_bytes_read(m, ctx, "bf16", 4, first, last) == by_hand
    # a model without chunked layers reads what it holds
    dense = load_model("llama3-8b")
    assert kv_bytes_read(dense, 5000, "bf16", 1, 4001, 5999) == 5000 * 32 * 8 * 128 * 2 * 2


def test_engines_read_chunked_layers_as_they_run_them() -> None:
    """vLLM / SGLang decode a chunked layer over its own chunk, TensorRT-LLM over the cached window (its chunked
    attention covers context requests only): Llama 4 Scout at TP 4, batch 64, prompt 16,385, one decode step at
    context 16,386. The per-step KV read differs by 64 x 36 chunked layers x (8,192 - 2) keys x 1,024 B =
    19,322,634,240 B; at prompt 16,383 (context 16,384, a full chunk) both read the same."""
    from calc.serving.assumptions import DEFAULT_ASSUMPTIONS
    from calc.serving.step import decode_context, decode_range, step_time
    from calc.sources.catalog import load_gpu

    m, gpu = load_model("llama4-scout"), load_gpu("h200")

    def read(prompt: int, mode: str) -> float:
        a = DEFAULT_ASSUMPTIONS.model_copy(update={"chunked_decode": mode})
        return step_time(m, gpu, a, tp=4, dtype="bf16", decode_seqs=64, decode_context=decode_context(prompt, 2),
                         decode_contexts=decode_range(prompt, 2)).bytes_read

    assert read(16_385, "window") - read(16_385, "chunk") == pytest.approx(19_322_634_240)
    assert read(16_383, "window") == read(16_383, "chunk")
