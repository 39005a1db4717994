"""The smallest GPU count a training answer names is one the given global batch can run on: DP must split it into
whole micro-batches. Llama 3 70B at TP 4, ZeRO-2, global batch 1,024: memory fits from DP 10 (40 GPUs), which 1,024 does
not split; the first DP >= 10 dividing 1,024 is 16, so 64 GPUs, the count train-plan finds (QA finding: train-step and
memory said 40, and train-step then refused 40)."""

from __future__ import annotations


def test_train_step_memory_and_train_plan_name_one_runnable_count(cli) -> None:
    layout = ("--gpu", "h100", "--tp", "4", "--zero", "2", "--sp", "--global-batch", "1024")
    step = cli("train-step", "llama3-70b", *layout)
    assert step.code == 2 and "fits from 64 GPUs" in step.err
    mem = cli("memory", "llama3-70b", "--mode", "train", *layout, "--json")
    assert mem.json()["min_gpus"] == 64
    forty = cli("train-step", "llama3-70b", *layout, "--num-gpus", "40")
    assert forty.code == 2 and "1024" in forty.err.replace(",", "")  # not a multiple of DP 10
    ran = cli("train-step", "llama3-70b", *layout, "--num-gpus", "64", "--json")
    assert ran.code == 0 and ran.json()["fits"] is True
    plan = cli("train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "4", "--global-batch", "1024", "--tp", "4",
               "--pp", "1", "--cp", "1", "--zero", "2", "--micro-batch", "1", "--recompute", "none", "--json")
    assert plan.code == 2 and plan.err.rstrip().endswith("fits on 64 GPUs")
