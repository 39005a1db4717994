"""One KV dtype rule (issue 24 item 6): the engines' "auto", the activation dtype, in `memory --mode infer` as in the
serving commands; fp8 KV only with --kv-dtype fp8 (QA finding: memory --dtype fp8 priced an fp8 KV, 65,536 B per
token for llama3-8b, where concurrency / serve / latency priced bf16, 131,072)."""

from __future__ import annotations

# llama3-8b KV per token: 2 (K, V) x 32 layers x 8 KV heads x 128 x bytes
BF16_KV, FP8_KV = 2 * 32 * 8 * 128 * 2, 2 * 32 * 8 * 128 * 1


def test_memory_keeps_a_16_bit_kv_for_fp8_weights(cli) -> None:
    d = cli("memory", "llama3-8b", "--gpu", "h100", "--dtype", "fp8", "--seq", "1280", "--json").json()
    assert d["kv_dtype"] == "bf16" and d["kv_cache_bytes_per_token"] == BF16_KV
    d = cli("memory", "llama3-8b", "--gpu", "h100", "--dtype", "fp8", "--kv-dtype", "fp8", "--seq", "1280", "--json").json()
    assert d["kv_dtype"] == "fp8" and d["kv_cache_bytes_per_token"] == FP8_KV


def test_memory_and_concurrency_agree_on_the_kv_dtype(cli) -> None:
    mem = cli("memory", "llama3-8b", "--gpu", "h100", "--dtype", "fp8", "--json").json()
    conc = cli("concurrency", "llama3-8b", "--gpu", "h100", "--dtype", "fp8", "--max-model-len", "4096", "--json").json()
    assert mem["kv_dtype"] == conc["kv_dtype"] == "bf16"
