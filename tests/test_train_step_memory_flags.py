"""train-step and train-plan take the memory flags `memory --mode train` takes (--loss, --compile, --fragmentation),
so the peak that command prints for a plan can be reproduced where the plan is timed."""

from __future__ import annotations

import pytest

JOB = ("llama3-8b", "--gpu", "h100", "--dp", "8", "--global-batch", "64", "--zero", "1")


@pytest.mark.parametrize("flags", [("--loss", "fp32"), ("--no-compile",), ("--fragmentation", "0.1")])
def test_train_step_and_memory_train_agree(cli, flags: tuple[str, ...]) -> None:
    step = cli("train-step", *JOB, *flags, "--json").json()["memory_per_gpu_bytes"]
    memory = cli("memory", *JOB, "--mode", "train", *flags, "--json").json()["per_gpu_bytes"]
    plain = cli("train-step", *JOB, "--json").json()["memory_per_gpu_bytes"]
    assert step == memory and step != plain  # each flag changes the answer


def test_fp32_logits_cost_12_bytes_more_than_megatrons_6_per_logit(cli) -> None:
    # one micro-batch of 4096 tokens x 128,256 vocab on the last (only) stage: megatron 6 B/logit, torch fp32 CE 12 B
    megatron = cli("memory", *JOB, "--mode", "train", "--json").json()["per_gpu"]["activations"]
    fp32 = cli("memory", *JOB, "--mode", "train", "--loss", "fp32", "--json").json()["per_gpu"]["activations"]
    assert fp32 - megatron == pytest.approx(4096 * 128_256 * 6, rel=0.02)


def test_an_unknown_loss_is_refused(cli) -> None:
    r = cli("train-step", *JOB, "--loss", "bogus")
    assert r.code == 2 and "--loss" in r.err and "fp32" in r.err
