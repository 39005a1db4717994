"""--reserve-gib in the serving commands: a value given is used, whatever it is."""

from __future__ import annotations


def test_reserve_gib_given_is_given_whatever_its_value(cli) -> None:
    """QA finding: `--reserve-gib 0.5` (the value the option's old default carried) was read as "not given", so vLLM V1
    kept its 0.1 GiB above-baseline default and 0.5 reserved less than 0.3. The KV cache now shrinks with every GiB
    reserved: 0.5 GiB more is 0.5 x 2^30 / 131,072 B per token = 4,096 tokens fewer (llama3-8b bf16), to whole 16-token
    blocks; leaving the option out is vLLM's own default, 0.1 GiB above its baseline snapshot."""
    kv = {}
    for r in (None, 0.0, 0.3, 0.5, 1.0):
        out = cli("concurrency", "llama3-8b", "--gpu", "h100", *(["--reserve-gib", str(r)] if r is not None else []), "--json")
        assert out.code == 0, out.err
        kv[r] = out.json()["kv_cache_tokens"]
    assert kv[0.0] > kv[0.3] > kv[0.5] > kv[1.0]
    assert abs((kv[0.5] - kv[1.0]) - 4096) <= 16
    assert kv[0.0] > kv[None] > kv[0.3]  # the default reserves 0.1 GiB
