"""Stacks that loop over an MoE model's experts in Python (calc.training.stack.LOOPED_EXPERTS): train-step says its
time is a lower bound, and the corpus does not time such rows."""

from __future__ import annotations

import pytest
from conftest import run_cli

ARGS = ("train-step", "qwen3-30b-a3b", "--gpu", "h100", "--num-gpus", "8", "--ep", "8", "--global-batch", "16",
        "--seq", "4096", "--zero", "1", "--recompute", "full")


def test_hf_stack_flags_an_moe_step_as_a_lower_bound() -> None:
    hf = run_cli(*ARGS, "--stack", "hf")
    assert hf.code == 0
    assert "--stack: hf runs an MoE model's experts one by one in a Python loop" in hf.err
    assert "lower bound" in hf.err
    megatron = run_cli(*ARGS, "--stack", "megatron")
    assert megatron.code == 0 and "Python loop" not in megatron.err


def test_the_lower_bound_is_in_the_json_of_every_training_command() -> None:
    # the warning rides on the result (TrainStepResult.warnings), so --json readers get it, once on stderr too
    step = run_cli(*ARGS, "--stack", "hf", "--json")
    assert step.code == 0 and step.err.count("Python loop") == 1
    assert any("Python loop" in w and w.startswith("--stack: ") for w in step.json()["warnings"])
    assert run_cli(*ARGS, "--stack", "megatron", "--json").json()["warnings"] == []
    plan = run_cli("train-plan", *ARGS[1:12], "--stack", "hf", "--json")
    assert plan.code == 0 and plan.err.count("Python loop") == 1
    assert all(any("Python loop" in w for w in p["warnings"]) for p in plan.json()["plans"])
    days = run_cli("train-time", "qwen3-30b-a3b", "--gpu", "h100", "--num-gpus", "8", "--seq", "4096", "--tokens", "1B",
                   "--stack", "hf", "--json")
    assert days.code == 0 and any("Python loop" in w for w in days.json()["warnings"])


def test_dense_model_under_hf_stack_is_not_flagged() -> None:
    dense = run_cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "16", "--seq", "4096",
                    "--stack", "hf", "--zero", "3")
    assert dense.code == 0 and "Python loop" not in dense.err


def test_corpus_does_not_time_looped_expert_rows() -> None:
    """The ms-swift `swift sft` (HF Trainer + DeepSpeed) MoE rows are not timed; its Megatron-SWIFT rows are."""
    import corpus_predict as cp
    from corpus_schema import load_corpus

    rows = {r.id: r for r, source, _ in load_corpus() if source == "ms-swift-megatron-swift-benchmarks"}
    looped = [r for r in rows.values() if "deepspeed" in r.id]
    assert len(looped) == 3
    for r in looped:
        value, why = cp.predict_or_reason(r)
        assert value is None and "Python loop" in why
    value, why = cp.predict_or_reason(rows["ms-swift-qwen3-30b-a3b-a800x16-megatron"])
    assert value is not None and value > 0


@pytest.mark.parametrize("name,expected", [("hf-trainer", True), ("peft", True), ("torchtitan", False), ("nemo", False)])
def test_loops_experts_by_alias(name: str, expected: bool) -> None:
    from calc.training.stack import loops_experts

    assert loops_experts(name) is expected
