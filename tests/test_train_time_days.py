"""train-time --days: the smallest whole-node GPU count that finishes in time (issue 21 item 5)."""

from __future__ import annotations

from calc.training.sizing import smallest_gpus_within


def test_smallest_gpus_within_bisects_whole_nodes() -> None:
    # 1000 GPU-days of work: n GPUs take 1000/n days; within 30 days needs n >= 33.3, whole 8-GPU nodes: 40
    assert smallest_gpus_within(lambda n: 1000 / n, 30, 8) == 40
    # nothing fits below 64 GPUs: the first count that fits and finishes (1000/64 = 15.6 <= 30) is 64
    assert smallest_gpus_within(lambda n: None if n < 64 else 1000 / n, 30, 8) == 64
    # no count up to the limit finishes: None
    assert smallest_gpus_within(lambda n: 1e9 / n, 1, 8, max_gpus=1024) is None


def test_train_time_days_answers_the_gpu_count(cli) -> None:
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T", "--days", "30", "--json")
    assert r.code == 0, r.err
    d = r.json()
    n = d["num_gpus"]
    assert n % 8 == 0 and d["days"] <= 30
    # days = tokens x training FLOPs per token / (n x 989.4 TFLOP/s bf16 dense x MFU) / 86,400
    assert abs(d["days"] - d["total_flops"] / (n * 989.4e12 * d["mfu"]) / 86400) / d["days"] < 0.01
    # the node count has no prime factor above 7, and the one before it among such counts does not finish in 30 days
    nodes = n // 8
    assert all(p in (2, 3, 5, 7) for p in _prime_factors(nodes)), nodes
    before = max(k for k in range(1, nodes) if all(p in (2, 3, 5, 7) for p in _prime_factors(k)))
    fewer = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T", "--num-gpus", str(8 * before), "--json")
    assert fewer.code != 0 or fewer.json()["days"] > 30


def _prime_factors(k: int) -> list[int]:
    out, p = [], 2
    while k > 1:
        while k % p == 0:
            out.append(p)
            k //= p
        p += 1
    return out


def test_days_search_answers_a_count_layouts_factor(cli) -> None:
    """DeepSeek-V3 on H100 for 15T tokens within 60 days. Node counts with a large prime factor leave the MoE few
    layouts: 487 nodes (3,896 GPUs, 487 prime) only run TP2 x DP1948 with ZeRO-3 and full recompute, ~190 days,
    where 486 nodes (2 x 3^5) run a pipeline in ~54. The search tries node counts 2^a 3^b 5^c 7^d only, so its
    answer is one of them and the next smaller one does not finish in time."""
    r = cli("train-time", "deepseek-v3", "--gpu", "h100", "--tokens", "15T", "--days", "60", "--json")
    assert r.code == 0, r.err
    n = r.json()["num_gpus"]
    assert r.json()["days"] <= 60 and n % 8 == 0
    assert all(p in (2, 3, 5, 7) for p in _prime_factors(n // 8)), n
    prime = cli("train-time", "deepseek-v3", "--gpu", "h100", "--tokens", "15T", "--num-gpus", "3896", "--json")
    assert prime.code != 0 or prime.json()["days"] > 60
    before = max(k for k in range(1, n // 8) if all(p in (2, 3, 5, 7) for p in _prime_factors(k)))
    fewer = cli("train-time", "deepseek-v3", "--gpu", "h100", "--tokens", "15T", "--num-gpus", str(8 * before), "--json")
    assert fewer.code != 0 or fewer.json()["days"] > 60


def test_train_time_days_and_num_gpus_are_one_question(cli) -> None:
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T", "--days", "30", "--num-gpus", "8")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --days:"), r.err
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus:"), r.err


def test_largest_gpus_within_budget_bisects_whole_nodes() -> None:
    from calc.training.sizing import largest_gpus_within_budget

    # cost rises 1% per node past the first (MFU falling with scale): 1000 x (1 + 0.01 (n/8 - 1)) <= 1100 -> n/8 <= 11
    assert largest_gpus_within_budget(lambda n: 1000 * (1 + 0.01 * (n / 8 - 1)), 1100, 8, 8, smooth=False) == 88
    # among node counts without a prime factor above 7 (11 is prime): 10 nodes
    assert largest_gpus_within_budget(lambda n: 1000 * (1 + 0.01 * (n / 8 - 1)), 1100, 8, 8) == 80
    # even the fewest that fit (64) cost more than the budget: None
    assert largest_gpus_within_budget(lambda n: 1000.0, 999, 64, 8) is None


def _flops_per_token_llama3_8b(seq: int) -> float:
    # PaLM convention (full s x s attention): 6 N + 12 L H s, L 32, H 4096, N the matmul weights: 8.03e9 (Meta's
    # model card) less the input embedding 128,256 x 4,096 (a lookup, no FLOPs; the output head is a matmul)
    return 6 * (8.03e9 - 128256 * 4096) + 12 * 32 * 4096 * seq


def test_budget_with_days_is_the_cheapest_on_time(cli) -> None:
    # 1T tokens at an assumed MFU 0.4 on H100 (989.4 TFLOP/s bf16 dense), seq 4096:
    # GPU-hours = 1e12 x 5.15e10 / (989.4e12 x 0.4 x 3600) ~ 36,100; in 10 days: >= 151 -> 152 GPUs (19 nodes); $2/h: ~$72K
    hours = 1e12 * _flops_per_token_llama3_8b(4096) / (989.4e12 * 0.4 * 3600)
    gpus = -(-hours / 240 // 8) * 8
    args = ("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "1T", "--seq", "4096", "--mfu", "0.4",
            "--days", "10", "--price", "2")
    r = cli(*args, "--budget", "90k", "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert d["num_gpus"] == gpus and d["days"] <= 10
    assert abs(d["cost"] - 2 * hours) / (2 * hours) < 0.03
    short = cli(*args, "--budget", "60k")
    assert short.code == 2 and short.err.strip().splitlines()[-1].startswith("llmcalc: error: --budget:"), short.err
    assert f"GPUs: {int(gpus)}," in short.err and f"raise --budget to ${2 * hours / 1000:.0f}," in short.err


def test_budget_alone_is_the_fastest_within_it(cli) -> None:
    base = ("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "1T", "--price", "2")
    r = cli(*base, "--budget", "100k", "--json")
    assert r.code == 0, r.err
    d = r.json()
    n = d["num_gpus"]
    # at least the ~$72K run at MFU 0.4 is affordable; the plan's MFU sits near 0.45, so the spend is 2 x GPU-hours
    assert n % 8 == 0 and d["cost"] <= 100e3
    assert abs(d["cost"] - 2 * d["gpu_hours"]) < 1
    more = cli(*base, "--num-gpus", str(n + 8), "--json")  # one node more is past the budget (or does not fit)
    assert more.code != 0 or more.json()["cost"] > 100e3


def test_budget_needs_a_price_and_a_scale_dependent_mfu(cli) -> None:
    base = ("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "1T", "--budget", "100k")
    r = cli(*base)
    assert r.code == 2 and "--price" in r.err and r.err.strip().splitlines()[-1].startswith("llmcalc: error: --budget:")
    r = cli(*base, "--price", "2", "--mfu", "0.4")
    assert r.code == 2 and "llmcalc: error: --budget:" in r.err and "--days" in r.err
    r = cli(*base, "--price", "2", "--num-gpus", "64")
    assert r.code == 2 and "llmcalc: error: --budget:" in r.err


def test_a_searched_count_that_leaves_a_short_run_is_flagged(cli) -> None:
    """1B tokens with a $5,000 budget: cost is nearly flat in the GPU count, so the fastest run within it is the
    largest count searched, whose default batch (one 4K sequence per 8 GPUs past 8 x the 4M-token base: 131,072 / 8
    = 16,384 sequences) leaves 1e9 / (16,384 x 4,096) = 15 optimizer steps, fewer than Llama 2's 2,000-step warm-up:
    a warning says so. 15T tokens in 30 days has millions of steps: no warning."""
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "1B", "--budget", "5000", "--price", "2.5")
    assert r.code == 0, r.err
    assert "--budget" in r.err and " 15 optimizer steps" in r.err and "warm-up" in r.err
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T", "--days", "30")
    assert r.code == 0 and "warm-up" not in r.err


def test_a_prime_node_count_that_trains_slower_than_fewer_gpus_says_so(cli) -> None:
    """--num-gpus 3,896 (487 nodes, prime) leaves DeepSeek-V3 TP2 x DP1948 only; 3,888 GPUs (486 nodes) run a
    pipeline more than 3x faster: one warning names the faster count. A dense model on a prime count splits over
    pure data parallelism as well as on its smooth neighbour (no warning), and a smooth count is never warned about."""
    r = cli("train-time", "deepseek-v3", "--gpu", "h100", "--tokens", "15T", "--num-gpus", "3896", "--json")
    assert r.code == 0, r.err
    warned = [x for x in r.err.splitlines() if x.startswith("llmcalc: warning: --num-gpus:")]
    assert len(warned) == 1 and "give --num-gpus 3888" in warned[0], r.err
    r = cli("train-time", "deepseek-v3", "--gpu", "h100", "--tokens", "15T", "--num-gpus", "3888", "--json")
    assert r.code == 0 and "--num-gpus:" not in r.err, r.err
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T", "--num-gpus", str(8 * 97), "--json")
    assert r.code == 0 and "--num-gpus:" not in r.err, r.err


def test_days_answer_is_the_fewest_across_a_batch_piece_edge(cli) -> None:
    """The default global batch (4M tokens, 1,024 x 4,096) is rounded up to a multiple of the GPU count, so 1,000 H100
    run 2,000 sequences a step and 1,024 run 1,024: for llama3-8b on 15T tokens more GPUs can finish later, and a
    search that assumes days fall with the count answered 1,080 for --days 17 where 1,000 finish in time. Every
    7-smooth whole-node count below the answer, from the fewest that could finish even at 100% of the bf16 peak
    (total FLOPs / (989.4 TFLOP/s x 17 days)), is checked one by one with --num-gpus: none finishes in 17 days."""
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T", "--days", "17", "--json")
    assert r.code == 0, r.err
    d = r.json()
    n = d["num_gpus"]
    assert d["days"] <= 17 and n % 8 == 0
    floor = d["total_flops"] / (989.4e12 * 17 * 86400)
    smaller = [8 * k for k in range(1, n // 8) if 8 * k >= floor and all(p in (2, 3, 5, 7) for p in _prime_factors(k))]
    assert len(smaller) >= 10
    for count in smaller:
        other = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T", "--num-gpus", str(count), "--json")
        assert other.code != 0 or other.json()["days"] > 17, count
