"""A planner's QA sweep (pass 17): inputs that were read 10x off or accepted without effect, and assumed figures
that went unsaid."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("text", ["1,5T", "1,50T", "6,4"])
def test_a_comma_that_does_not_group_thousands_is_refused(cli, text: str) -> None:
    flag = "--tokens" if text.endswith("T") else "--global-batch"
    args = (["flops", "llama3-8b", "--tokens", text] if flag == "--tokens" else
            ["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", text])
    r = cli(*args)
    assert r.code == 2 and r.err.count("\n") == 1 and flag in r.err and "comma groups thousands" in r.err


def test_thousands_groups_still_read(cli) -> None:
    # 1,500T = 1.5e15 tokens; 6N D = 6 x 8,030,261,248 x 1.5e15 with the llama3-8b exact count
    r = cli("flops", "llama3-8b", "--tokens", "1,500T", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["training_compute"]["tokens"] == 1.5e15


def test_train_time_warns_an_assumed_mfu_past_any_run_or_below_one_percent(cli) -> None:
    base = ("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--mfu")
    high, low, fine = cli(*base, "0.9"), cli(*base, "0.005"), cli(*base, "0.4")
    assert high.code == 0 and "warning: --mfu: 90.0%" in high.err
    assert low.code == 0 and "warning: --mfu: 0.50%" in low.err
    assert "warning" not in fine.err


def test_doc_tokens_not_below_seq_is_refused(cli) -> None:
    r = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--global-batch", "64",
            "--doc-tokens", "100000")
    assert r.code == 2 and "--doc-tokens" in r.err and r.err.count("\n") == 1


def test_absurd_or_zero_prices_are_refused(cli) -> None:
    base = ("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "1T")
    huge = cli(*base, "--num-gpus", "8", "--price", "1e308")
    free = cli(*base, "--budget", "1e6", "--price", "0")
    assert huge.code == 2 and "--price" in huge.err
    assert free.code == 2 and "--price" in free.err and "budget" in free.err


def test_report_train_says_which_token_count_its_days_are_for(cli) -> None:
    r = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--num-gpus", "8")
    assert r.code == 0, r.err
    assert "1T (--tokens)" in r.out and "--tokens not given" in r.err
    given = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--num-gpus", "8", "--tokens", "15T")
    assert "15T (--tokens)" in given.out and "--tokens not given" not in given.err


def test_train_time_json_says_does_not_fit(cli) -> None:
    # as train-step / train-plan print their JSON before the exit-2 line when nothing fits
    r = cli("train-time", "llama3.1-405b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T", "--json")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus: does not fit")
    data = json.loads(r.out)
    assert data["fits"] is False and data["fit"] == "does not fit" and data["num_gpus"] == 8
