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
        _with("mistral-7b", layer_types=["sliding"] * 32)
    with pytest.raises(ValueError, match="entries"):
        _with("mistral-7b", layer_types=["full"] * 3)


def test_context_window_applies_scaling_factor():
    # Qwen2.5-7B: max_position_embeddings 32768 with yarn factor 4 -> 131,072 usable.
    assert _with("qwen2-7b", max_position_embeddings=32768, rope_scaling_factor=4.0).context_window == 131_072
    assert load_model("llama3.1-405b").context_window == load_model("llama3.1-405b").max_position_embeddings
