"""Speculative decoding with a draft model: the draft's weights and its KV share the replica's memory (QA finding: the
KV capacity was the same with and without a draft)."""

from __future__ import annotations

import pytest

# llama3-8b KV per token 2 x 32 x 8 x 128 x 2 B = 131,072; llama3.2-1b 2 x 16 x 8 x 64 x 2 B = 32,768; llama3.2-1b
# weights 1,235,814,400 x 2 B = 2,471,628,800 (tied embeddings counted once)
TARGET_KV, DRAFT_KV, DRAFT_WEIGHTS = 131_072, 32_768, 2 * 1_235_814_400


def _layout(cli, *extra: str) -> dict:
    # one max_num_seqs for both (serve otherwise sizes a KV-bound layout at the cap its pool admits, which differs)
    r = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--num-gpus", "1", "--max-num-seqs", "256", *extra,
            "--json")
    assert r.code == 0, r.err
    return r.json()["layouts"][0]


def test_the_draft_takes_its_weights_and_kv_from_the_pool(cli) -> None:
    plain, spec = _layout(cli), _layout(cli, "--speculative", "draft", "--draft", "llama3.2-1b")
    budget = plain["kv_cache_tokens"] * TARGET_KV  # the plain KV pool, whole blocks
    expected = (budget - DRAFT_WEIGHTS) / (TARGET_KV + DRAFT_KV)
    assert spec["kv_cache_tokens"] == pytest.approx(expected, rel=0.002)  # whole 16-token blocks
    assert spec["max_concurrency"] == spec["kv_cache_tokens"] // 1280
