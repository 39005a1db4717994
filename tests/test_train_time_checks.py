"""train-time: a run that does not fit is refused on every GPU (QA finding: on a GPU without a node type the assumed-
MFU path skipped the memory check and called its 0.4 "--mfu"), and --causal changes the FLOP count and the MFU
reported, never a plan's days (QA finding: 16.69 -> 15.65 days on the same plan and step time)."""

from __future__ import annotations

import pytest


def test_a_70b_model_on_one_24_gb_card_is_refused(cli) -> None:
    # 70.55e9 parameters x 16 B of mixed-precision Adam state = 1.13 TB, on a 24 GB RTX 3090
    r = cli("train-time", "llama3-70b", "--gpu", "rtx3090", "--num-gpus", "1", "--tokens", "1T")
    assert r.code == 2 and "does not fit" in r.err and "Traceback" not in r.err


def test_the_assumed_mfu_says_where_it_came_from(cli) -> None:
    d = cli("train-time", "llama3.2-1b", "--gpu", "t4", "--num-gpus", "4", "--tokens", "1B", "--dtype", "fp16",
            "--json")
    if d.code == 2:  # does not fit on 4 T4s either: the refusal is the answer
        assert "does not fit" in d.err
        return
    assert "no node type ships for t4" in d.json()["mfu_source"] and "--mfu" not in d.json()["mfu_source"]


def test_causal_counting_does_not_change_a_plans_days(cli) -> None:
    args = ("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--json")
    full, causal = cli(*args).json(), cli(*args, "--attention-pairs", "causal").json()
    assert full["fit"] == "fits"  # the three-valued verdict on every answer that fits (a run that does not exits 2)
    assert causal["days"] == pytest.approx(full["days"], rel=1e-12)
    assert causal["total_flops"] < full["total_flops"] and causal["mfu"] < full["mfu"]
    # the MFU scales with the FLOPs counted: same time, fewer FLOPs
    assert causal["mfu"] / full["mfu"] == pytest.approx(causal["total_flops"] / full["total_flops"], rel=1e-12)


def test_one_gpu_needs_no_node_type(cli) -> None:
    """QA finding: train-step / train-plan refused any run on a GPU without a node type (rtx3090, t4, ...), a single
    GPU included, whose step moves nothing between GPUs (l40: no node type shipped; rtx3090 has one since the
    bridged-links change)."""
    step = cli("train-step", "llama3.2-1b", "--gpu", "l40", "--num-gpus", "1", "--global-batch", "8", "--micro-batch", "2",
               "--json")
    assert step.code == 0, step.err
    assert step.json()["dp_comm_s"] == 0 and step.json()["tp_comm_s"] == 0
    plan = cli("train-plan", "llama3.2-1b", "--gpu", "l40", "--num-gpus", "1", "--global-batch", "8", "--json")
    assert plan.code == 0 and plan.json()["plans"][0]["step_time_s"] == step.json()["step_time_s"]
    two = cli("train-step", "llama3.2-1b", "--gpu", "l40", "--num-gpus", "2", "--global-batch", "8")
    assert two.code == 2 and "--system" in two.err


def test_a_token_budget_below_one_step_is_refused(cli) -> None:
    """QA finding: --tokens 1 answered 0.000000000017 days; a run trains at least one optimizer step."""
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --tokens:") and "one sequence" in r.err
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1M", "--global-batch", "512")
    # 512 sequences x 4,096 tokens = 2,097,152 tokens per step, by hand: 1M is half a step
    assert r.code == 2 and "2,097,152 tokens" in r.err
    assert cli("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "3M",
               "--global-batch", "512").code == 0


def test_a_lora_rank_past_every_matrix_full_rank_is_refused(cli) -> None:
    """QA finding: --lora-rank 1M priced 426B trainable parameters for an 8B model. Llama 3 8B's q projection is
    4,096 x 4,096 (full rank 4,096), v 4,096 x 1,024: rank 4,096 is the largest that means anything."""
    assert cli("memory", "llama3-8b", "--mode", "finetune", "--method", "lora", "--lora-rank", "4096", "--json").code == 0
    r = cli("memory", "llama3-8b", "--mode", "finetune", "--method", "lora", "--lora-rank", "4097")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --lora-rank:") and "4,096" in r.err
