"""Pass 20: a predicted figure beyond anything measured says so (the brief: results outside physical limits are
refused or flagged)."""

from __future__ import annotations

import json

from calc.sanity import HIGHEST_PUBLISHED_MFU, check_predicted_mfu


def test_the_bound_is_the_published_torchtitan_a100_figure() -> None:
    """torchtitan docs/performance.md: "MFU 61.1%" for Llama 2 13B on 64 A100 80GB (FSDP2, local batch 2, no AC):
    the highest training MFU the corpus quotes."""
    assert HIGHEST_PUBLISHED_MFU == 0.611
    assert check_predicted_mfu(0.611) == [] and check_predicted_mfu(None) == []
    (line,) = check_predicted_mfu(0.62)
    assert line.startswith("MFU: predicted 62.0% is above") and "61.1%" in line


def _json(out: str) -> dict:
    return json.JSONDecoder().raw_decode(out)[0]


def test_a_planner_flags_a_predicted_mfu_above_every_published_run(cli) -> None:
    """Llama 3 70B on 16 A100 at 512 x 4K sequences: TP8 x PP2 with 256 micro-batches has no bubble to speak of and
    no recompute, so its predicted MFU exceeds 61.1%: train-plan, train-step (the same plan) and train-time each say
    so on stderr, once, and still answer."""
    common = ["--gpu", "a100-80g", "--seq", "4096"]
    plan = cli("train-plan", "llama3-70b", *common, "--num-gpus", "16", "--global-batch", "512", "--json")
    assert plan.code == 0
    best = _json(plan.out)["plans"][0]
    assert best["mfu"] > HIGHEST_PUBLISHED_MFU
    assert plan.err.count("llmcalc: warning: MFU: predicted") == 1
    step = cli("train-step", "llama3-70b", *common, "--tp", "8", "--pp", "2", "--sp", "--global-batch", "512", "--json")
    assert step.code == 0 and _json(step.out)["mfu"] > HIGHEST_PUBLISHED_MFU
    assert "warning: MFU: predicted" in step.err
    time = cli("train-time", "llama3-70b", *common, "--num-gpus", "16", "--tokens", "1T", "--json")
    assert time.code == 0 and "warning: MFU: predicted" in time.err


def test_a_plan_below_the_bound_is_not_flagged(cli) -> None:
    """Llama 3 8B on 8 H100 with FSDP at 8K (one sequence per GPU): a plan well below 61.1% carries no such line."""
    r = cli("train-step", "llama3.1-8b", "--gpu", "h100", "--dp", "8", "--seq", "8192", "--zero", "3", "--stack", "fsdp",
            "--global-batch", "16", "--json")
    assert r.code == 0 and _json(r.out)["mfu"] < HIGHEST_PUBLISHED_MFU
    assert "MFU: predicted" not in r.err


def test_report_warns_a_tight_plan_once(cli) -> None:
    """report --mode train holds the plan and the days computed from it: one plan, one margin, one warning line (it
    printed two, worded apart, for the same 0.71 GiB)."""
    r = cli("report", "llama3-70b", "--gpu", "a100-80g", "--mode", "train", "--num-gpus", "16", "--seq", "4096",
            "--tokens", "1T")
    assert r.code == 0
    assert r.err.count("warning: fit: tight:") == 1, r.err
