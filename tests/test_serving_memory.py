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
    v0 = EngineSettings(engine="vllm-v0")
    mem = engine_memory(load_model("llama2-70b"), load_gpu("a800"), settings=v0, tp=2, dtype="fp16", tokens_per_request=4000)
    assert mem.kv_budget_bytes == 6_957_424_640
    assert mem.num_gpu_blocks == 2654 and mem.kv_cache_tokens == 42_464
    assert mem.max_concurrency == 10
    assert "# GPU blocks: 2654, # CPU blocks: 0" in mem.log
    # `concurrency` sets max_model_len = the request (4000): profile run 4000 x 67,584 x 2 + 16,384,000
    # = 557,056,000 B; budget 6,970,400,768 B / 2,621,440 = 2658.997 -> 2658 blocks = 42,528 tokens -> 10.
    r = concurrency(load_model("llama2-70b"), load_gpu("a800"), num_gpus=2, max_tokens=4000, settings=v0)
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
    # 131072-token context: vLLM V0 0.6.5 chunks prefill (2048-token steps; 512 before 0.6.5); forcing whole
    # prompts profiles 131072 tokens.
    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    chunked = engine_memory(m, gpu, settings=EngineSettings(engine="vllm-v0", engine_version="0.6.5", max_model_len=131072))
    whole = engine_memory(m, gpu, settings=EngineSettings(engine="vllm-v0", engine_version="0.6.5", max_model_len=131072,
                                                          enable_chunked_prefill=False))
    assert chunked.batched_tokens == 2048 and whole.batched_tokens == 131072
    # activations scale with the tokens (logits rows capped at 256 in both): 64x the per-token part
    per_token = (3 * 4096 + 3 * 14336) * 2
    assert whole.activation_peak_bytes - chunked.activation_peak_bytes == (131072 - 2048) * per_token


def test_sglang_pool() -> None:
    # Llama-3-8B on one H100, SGLang 0.5.3, mem_fraction_static 0.88 (its TP-1 default before 0.5.4):
    # total = 81559 MiB - 0.5 GiB = 85,520,809,984 - 536,870,912 = 84,983,939,072 B; x 0.88 = int 74,785,866,383
    # weights 8,030,261,248 x 2 = 16,060,522,496 B; pool = 58,725,343,887 B / 131,072 B per token = 448,038 tokens.
    mem = engine_memory(load_model("llama3-8b"), load_gpu("h100"), settings=EngineSettings(engine="sglang", engine_version="0.5.3"))
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
    mem = engine_memory(m, gpu, settings=EngineSettings(engine="vllm-v0"), tp=2, dtype="fp16", tokens_per_request=4000,
                        shared_prefix=2000)
    assert mem.max_concurrency == (2654 - 125) // 125


def test_bad_engine_inputs() -> None:
    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    with pytest.raises(LLMCalcError, match="--max-model-len"):
        engine_memory(m, gpu, settings=EngineSettings(max_model_len=4096), tokens_per_request=8000)
    with pytest.raises(LLMCalcError, match="--shared-prefix"):
        engine_memory(m, gpu, tokens_per_request=1000, shared_prefix=1000)


def test_vllm_v1_blocks_llama2_70b_tp2_a800() -> None:
    # vLLM V1 (current): an A800 (80 GiB, not an "a100" by name) gets the big-GPU defaults of
    # EngineArgs.get_batch_defaults for `vllm serve`: max_num_batched_tokens 8192, max_num_seqs 1024; chunked always.
    # profile run: 8192 x (3 x 8192 + 3 x 28672 / 2) x 2 = 1,107,296,256 + the sampler on min(1024, 8192) rows at
    #   14 B per logit (bf16 logits, fp32 copy, fp32 probs, noise q): 1024 x 32000 x 14 = 458,752,000 -> 1,566,048,256 B.
    # budget = 77,309,411,328 - 68,976,648,192 - 1,566,048,256 - 805,306,368 = 5,961,408,512 B (5.55 GiB)
    # blocks = floor(5,961,408,512 / 2,621,440) = 2274 (2274 x 2,621,440 = 5,961,154,560); tokens 36,384;
    # 4000-token requests (250 blocks) -> 9.
    mem = engine_memory(load_model("llama2-70b"), load_gpu("a800"), tp=2, dtype="fp16", tokens_per_request=4000)
    assert mem.batched_tokens == 8192 and mem.max_num_seqs == 1024 and mem.chunked_prefill
    assert mem.kv_budget_bytes == 5_961_408_512
    assert mem.num_gpu_blocks == 2274 and mem.kv_cache_tokens == 36_384 and mem.max_concurrency == 9
    assert mem.log[:2] == ["Available KV cache memory: 5.55 GiB", "GPU KV cache size: 36,384 tokens"]


def test_vllm_v1_defaults_by_version_and_gpu() -> None:
    # get_batch_defaults (>= 0.9): >= 70 GiB and not an A100 -> 8192 / 1024; else 2048 / 256; 0.8.x: 2048 / 256
    m = load_model("llama3-8b")
    for gpu, version, batched, seqs in (("h100", None, 8192, 1024), ("a100-80gb", None, 2048, 256),
                                        ("l4", None, 2048, 256), ("h100", "0.8.5", 2048, 256)):
        mem = engine_memory(m, load_gpu(gpu), settings=EngineSettings(engine_version=version), tokens_per_request=4096)
        assert (mem.batched_tokens, mem.max_num_seqs, mem.chunked_prefill) == (batched, seqs, True), gpu
    # a release before 0.8 ran V0: a 4096-token context profiles max(4096, 2048) whole tokens
    old = engine_memory(m, load_gpu("h100"), settings=EngineSettings(engine_version="0.6.3", max_model_len=4096))
    assert old.batched_tokens == 4096 and not old.chunked_prefill and old.log[0].startswith("# GPU blocks:")


def test_sglang_054_mem_fraction_heuristic() -> None:
    # SGLang >= 0.5.4 server_args._handle_gpu_memory_settings on an H100 (81559 MiB), TP 1:
    # bucket < 90 GiB -> chunked_prefill_size 8192, cuda_graph_max_bs 256;
    # reserved = 512 + 1.5 x 8192 + 2 x 256 + 1 x 1 / 8 x 1024 = 13,440 MiB (> 10,240 floor);
    # mem_fraction_static = round((81559 - 13440) / 81559, 3) = round(0.83521, 3) = 0.835.
    # TP 8: cuda_graph_max_bs 512 -> 512 + 12288 + 1024 + 1024 = 14,848 -> round(66711 / 81559, 3) = 0.818.
    gpu = load_gpu("h100")
    s = EngineSettings(engine="sglang")
    assert s.mem_fraction(1, gpu.memory_bytes) == 0.835 and s.mem_fraction(8, gpu.memory_bytes) == 0.818
    mem = engine_memory(load_model("llama3-8b"), gpu, settings=s)
    assert mem.batched_tokens == 8192
    # pool = int(0.835 x 84,983,939,072) - 16,060,522,496 = 70,961,589,125 - 16,060,522,496 = 54,901,066,629
    # / 131,072 B per token = 418,861 tokens
    assert mem.kv_cache_tokens == 418_861


def test_trtllm_pytorch_backend_kv() -> None:
    # TRT-LLM PyTorch backend, Llama-3-8B on one H100 (85,520,809,984 B): free = capacity - non-torch 0.5 GiB
    # - weights 16,060,522,496 - profile peak of max_num_tokens 8192:
    #   8192 x (3 x 4096 + 3 x 14336) x 2 = 905,969,664 + logits min(2048, 8192) x 128256 x 2 = 525,336,576
    #   = 1,431,306,240 -> free = 85,520,809,984 - 536,870,912 - 16,060,522,496 - 1,431,306,240 = 67,492,110,336;
    # KV = int(0.9 x free) = 60,742,899,302; per token 131,072 B; block 32 tokens = 4,194,304 B
    # -> 14,482 blocks = 463,424 tokens.
    mem = engine_memory(load_model("llama3-8b"), load_gpu("h100"), settings=EngineSettings(engine="trtllm"))
    assert mem.block_size == 32 and mem.batched_tokens == 8192
    assert mem.kv_cache_tokens == 463_424
    assert mem.log == ["[MemUsageChange] Allocated 56.57 GiB for max tokens in paged KV cache (463424)."]


def test_vllm_v1_profile_sampler_holds_fourteen_bytes_per_logit() -> None:
    # vLLM V1's profile run samples min(max_num_seqs, max_num_batched_tokens) rows (gpu_model_runner.py
    # _dummy_sampler_run; sampler.py): bf16 logits 2 B + fp32 copy 4 B + fp32 probs 4 B + exponential noise q 4 B
    # = 14 B per logit. Qwen3-30B-A3B, TP 4, vLLM 0.8.5 on an A10 (defaults 2048 batched tokens, 256 sequences):
    #   forward  2048 x (3 x 2048 + 8 experts x 768 x 3 / 4) x 2 = 2048 x 10,752 x 2 = 44,040,192 B
    #   sampler  256 x 151,936 x 14 = 544,538,624 B   (V0 0.6.5, chunked to 2048: 256 x 151,936 x 2 = 77,791,232 B)
    # A10 24,146,608,128 B x 0.9 = int 21,731,947,315; weights 30,532,122,624 x 2 / 4 = 15,266,061,312;
    # non-torch 0.5 + 0.25 GiB = 805,306,368; budget = 21,731,947,315 - 15,266,061,312 - 588,578,816 - 805,306,368
    # = 5,072,000,819 B; block = 16 x (48 layers x 1 KV head x 128 x 2 x 2 B = 24,576) = 393,216 B
    # -> 12,898 blocks (12,898 x 393,216 = 5,071,699,968) = 206,368 tokens (the log of vllm issue #17469: 198,784).
    m, gpu = load_model("qwen3-30b-a3b"), load_gpu("a10")
    v1 = engine_memory(m, gpu, settings=EngineSettings(engine_version="0.8.5", max_model_len=8192), tp=4)
    v0 = engine_memory(m, gpu, settings=EngineSettings(engine="vllm-v0", engine_version="0.6.5", max_model_len=8192,
                                                       enable_chunked_prefill=True),
                       tp=4)
    assert v1.batched_tokens == v0.batched_tokens == 2048 and v1.max_num_seqs == v0.max_num_seqs == 256
    assert v1.activation_peak_bytes == 44_040_192 + 544_538_624
    assert v0.activation_peak_bytes == 44_040_192 + 77_791_232
    assert v1.kv_budget_bytes == 5_072_000_819
    assert v1.num_gpu_blocks == 12_898 and v1.kv_cache_tokens == 206_368
