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
    # one node fewer does not finish in 30 days (or does not fit)
    fewer = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T", "--num-gpus", str(n - 8), "--json")
    assert fewer.code != 0 or fewer.json()["days"] > 30


def test_train_time_days_and_num_gpus_are_one_question(cli) -> None:
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T", "--days", "30", "--num-gpus", "8")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --days:"), r.err
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus:"), r.err
