"""Training plans at equal step time: the one with more memory to spare first; train-time's fit is its plan's
three-valued fit (QA findings: train-plan ranked a "tight" ZeRO-1 plan above a ZeRO-2 one of the same 9.757 s, and
train-time called "fits" the plan train-step called "tight")."""

from __future__ import annotations

import pytest

GIB = 2**30


def test_equal_step_times_rank_the_roomier_plan_first(cli):
    # Llama 3 8B on 40 H100 at global batch 1,040 (DP 40 x micro-batch 2 x 13 steps): ZeRO-1 and ZeRO-2 take the same
    # step (the step hides the gradient reduce-scatter either way), but ZeRO-2 shards the bf16 gradients:
    # 8,030,261,248 x 2 B x 39/40 = 15,658,009,434 B = 14.58 GiB less per GPU.
    plans = cli("train-plan", "llama3-8b", "--gpu", "h100-sxm", "--num-gpus", "40", "--global-batch", "1040",
                "--top", "6", "--json").json()["plans"]
    for a, b in zip(plans, plans[1:], strict=False):
        if a["step_time_s"] == b["step_time_s"]:
            assert a["memory_per_gpu_bytes"] <= b["memory_per_gpu_bytes"]
    first, second = plans[0], plans[1]
    assert first["step_time_s"] == second["step_time_s"]
    assert "ZeRO2" in first["layout"] and "ZeRO1" in second["layout"]
    assert (second["memory_per_gpu_bytes"] - first["memory_per_gpu_bytes"]) / GIB == pytest.approx(14.58, abs=0.01)


def test_train_time_fit_is_its_plans_fit(cli):
    time = cli("train-time", "llama3-8b", "--gpu", "h100-sxm", "--num-gpus", "16", "--seq", "8192", "--tokens", "1T",
               "--json").json()
    layout = time["plan"]  # e.g. TP1 PP1 DP16 mb1 ZeRO2 rc:none
    zero = layout.split("ZeRO")[1].split()[0]
    micro = layout.split(" mb")[1].split()[0]
    step = cli("train-step", "llama3-8b", "--gpu", "h100-sxm", "--num-gpus", "16", "--seq", "8192", "--tp", "1",
               "--pp", "1", "--dp", "16", "--micro-batch", micro, "--zero", zero, "--recompute", "none",
               "--global-batch", "512", "--json").json()  # train-time's default global batch at 8K: 4M tokens
    assert step["memory_per_gpu_bytes"] == time["memory_per_gpu_bytes"]
    assert step["fit"] == time["fit"]
    assert time["bands"]["memory_per_gpu_bytes"]["high"] >= time["memory_per_gpu_bytes"]


def test_train_step_and_memory_agree_on_the_smallest_gpu_count(cli):
    """Llama 3 70B at 32K tokens, ZeRO-3, full recompute, on 128 H100 needs more than the card's 79.2 GiB CUDA total;
    train-step doubled DP and said "fits from 256", memory --mode train searched every node and said another count.
    One search: both name the same count, one the global batch of 1,152 splits (DP 128: 9 micro-batches a rank), and it
    runs while 128 does not."""
    layout = ("--tp", "1", "--pp", "1", "--zero", "3", "--recompute", "full", "--seq", "32768")
    step = cli("train-step", "llama3-70b", "--gpu", "h100-sxm", "--num-gpus", "128", "--dp", "128", "--micro-batch",
               "1", "--global-batch", "1152", *layout)
    assert step.code == 2 and "fits from 192 GPUs" in step.err
    mem = cli("memory", "llama3-70b", "--mode", "train", "--gpu", "h100-sxm", "--num-gpus", "128", "--dp", "128",
              "--batch", "1", "--global-batch", "1152", *layout, "--json").json()
    assert mem["min_gpus"] == 192 and 1152 % 192 == 0
    ran = cli("train-step", "llama3-70b", "--gpu", "h100-sxm", "--num-gpus", "192", "--dp", "192", "--micro-batch",
              "1", "--global-batch", "1152", *layout, "--json")
    assert ran.code == 0 and ran.json()["fits"] is True
    # at ZeRO-3, full recompute and micro-batch 1 no flag of this layout is left to change: the refusal names a new
    # layout, never a --zero or --recompute it already has (calc.training.fixes)
    advice = step.err.split("micro-batches of 1")[-1]
    assert "raise --tp or --pp, or try train-plan" in step.err and "--zero" not in advice and "--recompute" not in advice


def test_tight_advice_names_only_what_the_run_can_still_change(cli):
    """At ZeRO-3, full recompute and micro-batch 1 the only training levers left are more --pp/--tp ("a higher --zero"
    named a change --zero 4 refuses); latency's KV advice leaves out --max-model-len, already prompt + output."""
    r = cli("train-step", "llama3-70b", "--gpu", "h100-sxm", "--num-gpus", "16", "--dp", "16", "--tp", "1", "--pp", "1",
            "--zero", "3", "--recompute", "full", "--micro-batch", "1", "--seq", "4096", "--global-batch", "16")
    assert "fit: tight" in r.err and "more --pp/--tp would make room" in r.err and "--zero" not in r.err.split("spare")[1]
    lat = cli("latency", "llama3-70b", "--gpu", "h100-sxm", "--tp", "4", "--prompt", "2048", "--output", "512",
              "--batch", "161")
    assert "fit: tight" in lat.err and "--max-model-len" not in lat.err
