"""Engine memory (vLLM / SGLang accounting): blocks, tokens and concurrency from hand-worked numbers."""

from __future__ import annotations

import pytest

from calc.errors import LLMCalcError
from calc.serving.capacity import concurrency
from calc.serving.engine_memory import engine_memory
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings

GIB = 2**30


def test_vllm_blocks_llama2_70b_tp2_a800() -> None:
    # A800 reports 81920 MiB = 85,899,345,920 B; x 0.9 = int 77,309,411,328.
    # weights per rank: 68,976,648,192 params x 2 B / 2 = 68,976,648,192 B.
    # max_model_len = 4096 (model), no chunked prefill -> profile run of max(4096, 2048) = 4096 tokens:
    #   4096 x (3 x 8192 + 3 x 28672 / 2) x 2 = 553,648,128 + logits min(256, 4096) x 32000 x 2 = 16,384,000
    #   = 570,032,128 B.  non-torch 0.5 + 0.25 GiB = 805,306,368 B.
    # budget = 77,309,411,328 - 68,976,648,192 - 570,032,128 - 805,306,368 = 6,957,424,640 B.
    # KV/token/rank = 2 x 80 x (8/2) x 128 x 2 = 163,840 B; block of 16 = 2,621,440 B.
    # blocks = floor(6,957,424,640 / 2,621,440) = 2654; tokens 42,464; 4000-token requests take 250 blocks -> 10.
    mem = engine_memory(load_model("llama2-70b"), load_gpu("a800"), tp=2, dtype="fp16", tokens_per_request=4000)
    assert mem.kv_budget_bytes == 6_957_424_640
    assert mem.num_gpu_blocks == 2654 and mem.kv_cache_tokens == 42_464
    assert mem.max_concurrency == 10
    assert "# GPU blocks: 2654" in mem.log and "GPU KV cache size: 42,464 tokens" in mem.log
    # `concurrency` sets max_model_len = the request (4000): profile run 4000 x 67,584 x 2 + 16,384,000
    # = 557,056,000 B; budget 6,970,400,768 B / 2,621,440 = 2658.997 -> 2658 blocks = 42,528 tokens -> 10.
    r = concurrency(load_model("llama2-70b"), load_gpu("a800"), num_gpus=2, max_tokens=4000)
    assert r.num_gpu_blocks == 2658 and r.kv_cache_tokens == 42_528 and r.max_concurrency == 10
    assert r.kv_cache_bytes_per_request == 2 * 250 * 2_621_440


def test_utilization_and_block_size_change_the_answer() -> None:
    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    base = engine_memory(m, gpu, settings=EngineSettings(max_model_len=8192))
    lower = engine_memory(m, gpu, settings=EngineSettings(max_model_len=8192, gpu_memory_utilization=0.8))
    # 0.1 x 81559 MiB = 8,552,107,622 B less budget; / 131,072 B per token (32 x 8 x 128 x 2 x 2) = 65,247 tokens
    assert base.kv_cache_tokens - lower.kv_cache_tokens == pytest.approx(65_247, abs=32)
    big_blocks = engine_memory(m, gpu, settings=EngineSettings(max_model_len=8192, block_size=32))
    assert big_blocks.kv_cache_tokens % 32 == 0 and big_blocks.kv_cache_tokens <= base.kv_cache_tokens


def test_chunked_prefill_shrinks_the_profile_run() -> None:
    # 131072-token context: vLLM chunks prefill (2048-token steps); forcing whole prompts profiles 131072 tokens.
    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    chunked = engine_memory(m, gpu, settings=EngineSettings(max_model_len=131072))
    whole = engine_memory(m, gpu, settings=EngineSettings(max_model_len=131072, enable_chunked_prefill=False))
    assert chunked.batched_tokens == 2048 and whole.batched_tokens == 131072
    # activations scale with the tokens (logits rows capped at 256 in both): 64x the per-token part
    per_token = (3 * 4096 + 3 * 14336) * 2
    assert whole.activation_peak_bytes - chunked.activation_peak_bytes == (131072 - 2048) * per_token


def test_sglang_pool() -> None:
    # Llama-3-8B on one H100, SGLang, mem_fraction_static 0.88 (its TP-1 default):
    # total = 81559 MiB - 0.5 GiB = 85,520,809,984 - 536,870,912 = 84,983,939,072 B; x 0.88 = int 74,785,866,383
    # weights 8,030,261,248 x 2 = 16,060,522,496 B; pool = 58,725,343,887 B / 131,072 B per token = 448,038 tokens.
    mem = engine_memory(load_model("llama3-8b"), load_gpu("h100"), settings=EngineSettings(engine="sglang"))
    assert mem.kv_cache_tokens == 448_038
    assert "max_total_num_tokens=448038" in mem.log


def test_fp8_kv_doubles_the_tokens() -> None:
    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    bf16 = engine_memory(m, gpu, settings=EngineSettings(max_model_len=8192))
    fp8 = engine_memory(m, gpu, settings=EngineSettings(max_model_len=8192), kv_dtype="fp8")
    assert fp8.kv_bytes_per_token * 2 == bf16.kv_bytes_per_token
    assert fp8.kv_cache_tokens == pytest.approx(2 * bf16.kv_cache_tokens, abs=32)


def test_shared_prefix_admits_more_requests() -> None:
    # 4000-token requests sharing a 2000-token system prompt: 125 shared blocks stored once,
    # each request then takes 250 - 125 = 125 blocks: concurrency = floor((blocks - 125) / 125).
    m, gpu = load_model("llama2-70b"), load_gpu("a800")
    mem = engine_memory(m, gpu, tp=2, dtype="fp16", tokens_per_request=4000, shared_prefix=2000)
    assert mem.max_concurrency == (2654 - 125) // 125


def test_bad_engine_inputs() -> None:
    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    with pytest.raises(LLMCalcError, match="--max-model-len"):
        engine_memory(m, gpu, settings=EngineSettings(max_model_len=4096), tokens_per_request=8000)
    with pytest.raises(LLMCalcError, match="--shared-prefix"):
        engine_memory(m, gpu, tokens_per_request=1000, shared_prefix=1000)
