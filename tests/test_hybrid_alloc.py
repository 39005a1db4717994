"""vLLM V1's hybrid KV-cache allocator (calc.serving.hybrid_alloc) on real configs (tests/fixtures/hf), every number
worked by hand from vllm/model_executor/models/config.py HybridAttentionMambaModelConfig and
vllm/v1/core/kv_cache_utils.py (_get_kv_cache_groups_uniform_page_size, get_num_blocks, _report_kv_cache_config)."""

from __future__ import annotations

from pathlib import Path

from calc.serving.engine_memory import engine_memory, request_settings
from calc.serving.hybrid_alloc import hybrid_pool
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings

FIXTURES = Path(__file__).parent / "fixtures" / "hf"


def _load(name: str):
    return load_model(str(FIXTURES / f"{name}.json"))


def _mem(name: str, tokens: int, tp: int = 1, version: str | None = None):
    s = request_settings(EngineSettings(engine="vllm", engine_version=version), tokens)
    return engine_memory(_load(name), load_gpu("h100"), settings=s, tp=tp, tokens_per_request=tokens)


def test_nemotron_h_8b_on_an_h100() -> None:
    # Attention: 4 layers, 8 KV heads x 128, bf16: a = 2 x 8 x 128 x 2 = 4,096 B per token per layer.
    # Mamba-2 state (24 layers): conv (8192 + 2 x 8 x 128) x 3 + SSM 128 x 64 x 128 = 1,079,296 values x 2 B
    #   = 2,158,592 B. Block = 16 x ceil(2,158,592 / (16 x 4,096)) = 16 x ceil(32.94) = 528 tokens;
    #   page = 528 x 4,096 = 2,162,688 B (the state padded by 4,096 B = 0.19%).
    # Groups: 4 attention vs 24 state layers, 24 >= 1.5 x 4 -> groups of 4: 1 attention + 6 state groups.
    # A block index holds 4 pages = 8,650,752 B; num_blocks = budget // 8,650,752.
    for tokens, per_request in ((8192, 16 + 6), (100, 1 + 6)):  # ceil(8191 / 528) = 16; ceil(99 / 528) = 1
        mem = _mem("nemotron-h-8b-base-8k", tokens)
        pool = mem.hybrid
        assert (mem.block_size, pool.page_bytes, pool.state_page_bytes) == (528, 2_162_688, 2_158_592)
        assert [(t.kind, t.layers, t.groups) for t in pool.types] == [("state", 24, 6), ("full", 4, 1)]
        assert pool.group_size == pool.rank_group_layers == 4 and mem.block_bytes == 8_650_752
        blocks = mem.kv_budget_bytes // 8_650_752
        assert mem.num_gpu_blocks == blocks > 0
        assert mem.kv_bytes_per_request == per_request * 8_650_752
        assert mem.max_concurrency == blocks // per_request
        # "GPU KV cache size": blocks // 7 groups x min(528, max_model_len) (the state groups' block is max_model_len)
        assert mem.kv_cache_tokens == blocks // 7 * min(528, tokens)
        assert f"GPU KV cache size: {blocks // 7 * min(528, tokens):,} tokens" in mem.log
        assert f"Maximum concurrency for {tokens:,} tokens per request: {blocks / per_request:.2f}x" in mem.log
        assert "Setting attention block size to 528 tokens to ensure that attention page size is >= mamba page size." \
            in mem.log
        assert any("Padding mamba page size by 0.19%" in line for line in mem.log)
    # The docstring's worked request: 8,192 tokens hold 22 blocks x 8,650,752 B = 190,316,544 B.
    assert _mem("nemotron-h-8b-base-8k", 8192).kv_bytes_per_request == 190_316_544


def test_qwen3_next_80b_on_four_h100s() -> None:
    # TP 4: 2 KV heads replicated -> 1 per rank, head_dim 256, bf16: a = 2 x 1 x 256 x 2 = 1,024 B.
    # Gated DeltaNet state per rank: conv (2 x 16 x 128 + 32 x 128) / 4 x 3 = 6,144 + recurrent 32/4 x 128 x 128 =
    #   131,072 values x 2 B = 274,432 B. Block = 16 x ceil(274,432 / 16,384) = 16 x 17 = 272 tokens;
    #   page = 272 x 1,024 = 278,528 B (padded by 1.49%).
    # Groups: 12 attention vs 36 linear layers -> groups of 12: 1 attention + 3 state groups; block = 12 pages.
    for tokens, per_request in ((8192, 31 + 3), (100, 1 + 3)):  # ceil(8191 / 272) = 31 (30 x 272 = 8160)
        mem = _mem("qwen3-next-80b-a3b-instruct", tokens, tp=4)
        pool = mem.hybrid
        assert (mem.block_size, pool.page_bytes, pool.state_page_bytes) == (272, 278_528, 274_432)
        assert [(t.kind, t.layers, t.groups) for t in pool.types] == [("state", 36, 3), ("full", 12, 1)]
        assert mem.block_bytes == 12 * 278_528
        blocks = mem.kv_budget_bytes // (12 * 278_528)
        assert mem.num_gpu_blocks == blocks > 0
        assert mem.max_concurrency == blocks // per_request
        assert mem.kv_cache_tokens == blocks // 4 * min(272, tokens)
        assert any("Padding mamba page size by 1.49%" in line for line in mem.log)


def test_qwen3_next_single_rank_block() -> None:
    # TP 1: a = 2 x 2 x 256 x 2 = 2,048 B; state (8192 x 3 + 32 x 128 x 128) x 2 = 1,097,728 B
    # -> 16 x ceil(1,097,728 / 32,768) = 16 x 34 = 544 tokens.
    pool = hybrid_pool(_load("qwen3-next-80b-a3b-instruct"), "bf16", 1, 1, None, 8192)
    assert (pool.block_size, pool.page_bytes) == (544, 544 * 2048)


def test_parallel_hybrid_uses_the_larger_group() -> None:
    # Falcon-H1-0.5B: every one of 36 layers has attention and a Mamba-2 mixer: 36 vs 36, 36 < 1.5 x 36, so
    # groups of 36: one attention group and one state group. a = 2 x 2 x 64 x 2 = 512 B; state (1792 x 3 +
    # 24 x 64 x 128) x 2 = 403,968 B -> 16 x ceil(403,968 / 8,192) = 16 x 50 = 800 tokens.
    pool = hybrid_pool(_load("falcon-h1-0.5b-base"), "bf16", 1, 1, None, 4096)
    assert (pool.block_size, pool.group_size, pool.num_groups) == (800, 36, 2)
    assert pool.request_blocks(4095) == 6 + 1  # ceil(4095 / 800) attention blocks + one state block
    # A larger --block-size is kept; a smaller one is raised.
    assert hybrid_pool(_load("falcon-h1-0.5b-base"), "bf16", 1, 1, 1024, 4096).block_size == 1024
    assert hybrid_pool(_load("falcon-h1-0.5b-base"), "bf16", 1, 1, 32, 4096).block_size == 800


def test_pure_attention_and_older_vllm_unchanged() -> None:
    # Qwen3-8B has no state layer: one group, 16-token blocks of 36 x 2 x 8 x 128 x 2 = 147,456 B per token;
    # 8,192 tokens -> 8,191 slots -> 512 blocks.
    mem = _mem("qwen3-8b", 8192)
    assert mem.hybrid is None and mem.block_size == 16 and mem.block_bytes == 16 * 147_456
    assert mem.max_concurrency == mem.num_gpu_blocks // 512
    assert hybrid_pool(_load("qwen3-8b"), "bf16", 1, 1, None, 8192) is None
    # A pure state-space model keeps one page per request (no attention to pad to).
    assert hybrid_pool(_load("mamba-codestral-7b-v0.1"), "bf16", 1, 1, None, 8192) is None
    # vLLM 0.9 ran hybrid models on V0's engine, not V1's hybrid allocator: 16-token blocks, no groups.
    old = _mem("nemotron-h-8b-base-8k", 8192, version="0.9.2")
    assert old.hybrid is None and old.block_size == 16


def _gemma(name: str, version: str, shared: int = 0):
    s = EngineSettings(engine="vllm", engine_version=version, max_model_len=8192)
    return engine_memory(load_model(name), load_gpu("h100"), settings=s, tokens_per_request=8192, shared_prefix=shared)


def test_gemma3_27b_sliding_window_groups() -> None:
    # Gemma 3 27B: 62 layers, 52 sliding (window 1024) + 10 full; 16 KV heads x 128, bf16: a = 2 x 16 x 128 x 2
    # = 8,192 B per token per layer; page = 16 x 8,192 = 131,072 B. Groups (kv_cache_utils.py
    # _get_kv_cache_groups_uniform_page_size, 0.19.0): 52 >= 1.5 x 10 -> groups of 10: ceil(52 / 10) = 6 sliding
    # groups (8 padding layers) + 1 full = 7; a block index holds 10 pages = 1,310,720 B.
    # "GPU KV cache size" = num_blocks // 7 x 16. A request of 8,192 tokens (8,191 slots): the full group
    # ceil(8191 / 16) = 512 blocks, each sliding group min(8192, 1024) / 16 = 64: 512 + 6 x 64 = 896 blocks
    # = 1,174,405,120 B (one group without padding would be 10 x 8192 x 8192 + 52 x 1024 x 8192 = 1,107,296,256 B).
    mem = _gemma("gemma3-27b", "0.19.0")
    pool = mem.hybrid
    assert pool is not None and not pool.has_state
    assert [(t.kind, t.window, t.layers, t.groups) for t in pool.types] == [("sliding", 1024, 52, 6), ("full", None, 10, 1)]
    assert (mem.block_size, pool.page_bytes, mem.block_bytes) == (16, 131_072, 1_310_720)
    blocks = mem.kv_budget_bytes // 1_310_720
    assert mem.num_gpu_blocks == blocks > 0
    assert mem.kv_cache_tokens == blocks // 7 * 16
    assert f"GPU KV cache size: {blocks // 7 * 16:,} tokens" in mem.log
    assert mem.kv_bytes_per_request == 896 * 1_310_720 == 1_174_405_120
    assert mem.max_concurrency == blocks // 896 and mem.window_capped
    # "Maximum concurrency" (get_max_concurrency_for_kv_cache_config, SlidingWindowSpec.max_memory_usage_bytes):
    # full 8192 / 16 = 512 blocks, each sliding group cdiv(min(1023 + 8192 batched, 8192), 16) + 1 = 513:
    # 512 + 6 x 513 = 3,590 blocks.
    assert f"Maximum concurrency for 8,192 tokens per request: {blocks / 3590:.2f}x" in mem.log
    # Prefix caching stays on (no state layer): 4,096 shared tokens are 256 blocks of the one full group.
    shared = _gemma("gemma3-27b", "0.19.0", shared=4096)
    assert shared.kv_bytes_per_request == (896 - 256) * 1_310_720
    # Before 0.9.1 (no hybrid KV-cache groups in V1): one group, 16-token blocks of all 62 layers.
    old = _gemma("gemma3-27b", "0.9.0")
    assert old.hybrid is None and old.block_bytes == 16 * 62 * 8_192
    assert _gemma("gemma3-27b", "0.9.1").hybrid is not None


def test_gemma2_9b_even_groups_match_one_group() -> None:
    # Gemma 2 9B: 42 layers alternating, 21 sliding (4096) + 21 full -> groups of 21, 2 groups, no padding;
    # a = 2 x 8 x 256 x 2 = 8,192 B, block index = 21 x 16 x 8,192 = 2,752,512 B; tokens = blocks // 2 x 16.
    mem = _gemma("gemma2-9b", "0.19.0")
    assert mem.hybrid.num_groups == 2 and mem.block_bytes == 2_752_512
    blocks = mem.kv_budget_bytes // 2_752_512
    assert mem.kv_cache_tokens == blocks // 2 * 16
    # within one block pair of the one-group count, budget / (42 x 8,192 B per token) in 16-token blocks
    assert abs(mem.kv_cache_tokens - mem.kv_budget_bytes // (16 * 42 * 8_192) * 16) <= 32
