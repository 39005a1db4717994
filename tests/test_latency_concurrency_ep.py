"""latency and concurrency take --ep, so serve's data-parallel-attention + EP layouts can be re-checked there: the
same capacity (each attention group its own KV cache and scheduler, the replica d = EP / TP of them), the same
admission, and the refusals naming the flag to change."""

from __future__ import annotations

import math

import pytest

MODEL = ("qwen3-235b-a22b", "--gpu", "h200", "--dtype", "fp8")
LEN = ("--max-model-len", "5000")


def test_concurrency_is_d_groups_of_one(cli) -> None:
    """EP 4 x TP 1: four attention groups, each with the engine log's own figures; the replica holds four times them."""
    r = cli("concurrency", *MODEL, *LEN, "--ep", "4", "--json")
    assert r.code == 0
    j = r.json()
    assert (j["num_gpus"], j["tp"], j["ep"]) == (4, 1, 4)
    logged = next(line for line in j["engine_log"] if line.startswith("GPU KV cache size:"))
    per_group = int(logged.split(":")[1].split()[0].replace(",", ""))
    assert j["kv_cache_tokens"] == 4 * per_group
    # 5,000-token requests take ceil(5,000 / 16) = 313 blocks of 16 tokens; whole requests per group, four groups
    assert j["max_concurrency"] == 4 * (per_group // 16 // 313)


def test_latency_admits_exactly_what_concurrency_holds(cli) -> None:
    n = cli("concurrency", *MODEL, *LEN, "--ep", "4", "--json").json()["max_concurrency"]
    assert n % 4 == 0 and n > 8
    ok = cli("latency", *MODEL, "--prompt", "4000", "--output", "1000", "--ep", "4", "--batch", str(n), "--json")
    assert ok.code == 0 and ok.json()["fits"] is not False and ok.json()["max_concurrency"] == n
    assert (ok.json()["ep"], ok.json()["num_gpus"]) == (4, 4)
    over = cli("latency", *MODEL, "--prompt", "4000", "--output", "1000", "--ep", "4", "--batch", str(n + 1))
    assert over.code == 2 and f"({n} in all), batch {n + 1} needs more" in over.err
    # launched for its share (ceil((n + 1) / 4) a group) the profile run is smaller: the refusal names that launch
    share = math.ceil((n + 1) / 4)
    assert over.err.startswith("llmcalc: error: --max-num-seqs:") and f"with --max-num-seqs {share} " in over.err
    capped = cli("latency", *MODEL, "--prompt", "4000", "--output", "1000", "--ep", "4", "--batch", str(n + 1),
                 "--max-num-seqs", str(share), "--json")
    assert capped.code == 0 and capped.json()["max_concurrency"] >= n + 1


def test_serve_layout_is_what_concurrency_ep_prints(cli) -> None:
    """serve launches each attention group with --max-num-seqs ceil(batch / d): concurrency at that launch holds the
    layout's KV cache."""
    plan = cli("serve", *MODEL, "--prompt", "4000", "--output", "1000", "--ttft-ms", "2000", "--tpot-ms", "50",
               "--rate", "10", "--json").json()
    ep_layouts = [x for x in plan["layouts"] if x["ep"] > 1]
    assert ep_layouts
    x = ep_layouts[0]
    d = x["ep"] // x["tp"]
    conc = cli("concurrency", *MODEL, *LEN, "--ep", str(x["ep"]), "--tp", str(x["tp"]), "--max-num-seqs",
               str(math.ceil(x["batch"] / d)), "--json").json()
    assert conc["kv_cache_tokens"] == x["kv_cache_tokens"] and conc["max_concurrency"] == x["max_concurrency"]


def test_the_busiest_rank_sets_the_step(cli) -> None:
    """--expert-imbalance is the busiest EP rank's tokens over the mean: more of it, a slower MoE step."""
    args = ("latency", *MODEL, "--prompt", "4000", "--output", "1000", "--ep", "4", "--batch", "64", "--json")
    even = cli(*args, "--expert-imbalance", "1").json()
    skewed = cli(*args, "--expert-imbalance", "2").json()
    assert skewed["tpot_s"] > even["tpot_s"] and skewed["ttft_s"] > even["ttft_s"]


@pytest.mark.parametrize(("extra", "flag"), [
    (("--ep", "3"), "--ep"),  # 3 does not divide 128 experts
    (("--ep", "4", "--pp", "2"), "--pp"),
    (("--ep", "4", "--num-gpus", "8"), "--num-gpus"),
    (("--ep", "4", "--tp", "8"), "--ep"),
    (("--expert-imbalance", "1.5"), "--expert-imbalance"),  # no EP: no busiest rank
    (("--dispatcher", "deepep"), "--dispatcher"),
])
def test_refusals_name_the_flag(cli, extra, flag) -> None:
    r = cli("latency", *MODEL, "--prompt", "4000", "--output", "1000", "--batch", "8", *extra)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}:") and "\n" not in r.err.strip()


def test_ep_on_a_dense_model(cli) -> None:
    for cmd in ("latency", "concurrency"):
        r = cli(cmd, "llama3-8b", "--gpu", "h100", "--ep", "2")
        assert r.code == 2 and r.err.startswith("llmcalc: error: --ep:")
    one = cli("latency", "llama3-8b", "--gpu", "h100", "--ep", "1", "--json")  # no expert parallelism: as without it
    assert one.code == 0 and one.json()["tpot_s"] == cli("latency", "llama3-8b", "--gpu", "h100", "--json").json()["tpot_s"]
