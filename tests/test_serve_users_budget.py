"""serve --users with a fixed --num-gpus: the replicas the budget allows must admit every user at once (each user
keeps one request running), as --rate with --num-gpus must carry the rate; a budget that cannot is refused on
--num-gpus, never called a fit with zero queueing."""

from __future__ import annotations

_BASE = ("serve", "llama3-8b", "--gpu", "h100-sxm", "--users", "2000")


def test_the_sized_count_carries_the_users_and_one_gpu_less_does_not(cli) -> None:
    sized = cli(*_BASE, "--json")
    assert sized.code == 0, sized.err
    best = sized.json()["best"]
    n, per = best["gpus_needed"], best["gpus_per_replica"]
    assert best["replicas"] * best["batch"] >= 2000
    at = cli(*_BASE, "--num-gpus", str(n), "--json")
    assert at.code == 0 and at.json()["best"] is not None, at.err
    below = cli(*_BASE, "--num-gpus", str(n - per))
    assert below.code == 2
    assert below.err.startswith("llmcalc: error: --num-gpus") and "cannot hold 2,000 users" in below.err


def test_one_gpu_for_a_hundred_thousand_users_is_refused(cli) -> None:
    r = cli("serve", "llama3-8b", "--gpu", "h100-sxm", "--num-gpus", "1", "--users", "100K", "--ttft-ms", "200")
    assert r.code == 2 and "cannot hold 100,000 users" in r.err
