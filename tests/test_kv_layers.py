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
    # 12 sliding layers see 128 keys per step; 12 full layers see 1000+t: 12*10*128 + 12*(10*1000 + 55)
    step = d.first_step_flops - per_key * (12 * 128 + 12 * 1001)
    assert d.generation_flops == 10 * step + per_key * (12 * 1280 + 12 * 10_055)
    assert d.last_step_flops - d.first_step_flops == per_key * 12 * 9
