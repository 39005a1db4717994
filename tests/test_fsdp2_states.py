"""ZeRO-3 on the fsdp stack is PyTorch FSDP2 mixed precision: the fp32 DTensor shard is the master (no bf16 shard
persists) and gradients are reduce-scattered into fp32 shards, counted once (calc.memory.training.fsdp2_states).

llama3-8b has N = 8,030,261,248 parameters; over 8 ranks: optimizer (fp32 master + Adam m, v) 12 N / 8 =
12,045,391,872 B; fp32 gradient shards 4 N / 8 = 4,015,130,624 B."""

from __future__ import annotations

import pytest

N = 8_030_261_248
JOB = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--seq", "4096", "--stack", "fsdp")


def test_accumulating_gradients_are_the_fp32_shards(cli) -> None:
    d = cli("memory", *JOB, "--mode", "train", "--global-batch", "16", "--json").json()  # 2 micro-batches per rank
    parts = d["per_gpu"]
    assert parts["weights"] == 0 and parts["optimizer"] == 12 * N // 8 and parts["gradients"] == 4 * N // 8
    assert not any(k.startswith("allocator: reduce-scatter") and v for k, v in parts.items())  # not counted twice


def test_without_accumulation_the_shards_sit_in_the_reduce_scatter_pool(cli) -> None:
    d = cli("memory", *JOB, "--mode", "train", "--global-batch", "8", "--json").json()
    parts = d["per_gpu"]
    assert parts["weights"] == 0 and parts["gradients"] == 0  # freed by zero_grad before the activation peak
    assert parts["allocator: reduce-scatter stream pool (sharded fp32 gradients)"] == 4 * N // 8


@pytest.mark.parametrize("accum", [1, 2])
def test_finetune_full_prices_the_same_job_alike(cli, accum: int) -> None:
    train = cli("memory", *JOB, "--mode", "train", "--global-batch", str(8 * accum), "--json").json()
    full = cli("memory", *JOB, "--mode", "finetune", "--method", "full", "--compile", "--fragmentation", "0", "--loss",
               "megatron", "--grad-accum", str(accum), "--json").json()
    assert train["per_gpu_bytes"] == full["per_gpu_bytes"]
    assert full["per_gpu"]["fp32 master"] + full["per_gpu"]["optimizer states"] == 12 * N // 8


def test_a_pure_bf16_recipe_keeps_its_own_placement(cli) -> None:
    # bf16 parameters with bf16 Adam states (KempnerForge casts the model to bf16): 2 + 2 + 4 B per parameter.
    # llama3-70b (70,553,706,496 parameters) at TP 4 x FSDP 2 on 8 H200: 2 N / 8, 4 N / 8; it fits (the run happened)
    n70 = 70_553_706_496
    d = cli("train-step", "llama3-70b", "--gpu", "h200", "--num-gpus", "8", "--tp", "4", "--sp", "--dp", "2", "--zero", "3",
            "--micro-batch", "2", "--global-batch", "16", "--seq", "4096", "--recompute", "full", "--stack", "fsdp",
            "--recipe", "bf16-adam-bf16-states", "--json").json()
    assert d["memory_per_gpu"]["weights"] == 2 * n70 // 8 and d["memory_per_gpu"]["optimizer"] == 4 * n70 // 8
    assert d["fits"]


def test_the_pool_and_the_gradients_are_one_set_of_blocks(cli) -> None:
    # llama3-70b (N = 70,553,706,496) on 8 GPUs, 512 tokens, no accumulation: the fp32 gradients, 4N/8 = 35.3 GB,
    # outgrow the activations. Reserved peak = activations + gradients (the pool zero_grad left at the forward end vs
    # the gradients at the backward end, one set of blocks): the part "gradients" max(g - a, 0) and the pool min(g, a)
    n70 = 70_553_706_496
    d = cli("memory", "llama3-70b", "--gpu", "h200", "--num-gpus", "8", "--zero", "3", "--seq", "512", "--stack", "fsdp",
            "--mode", "train", "--global-batch", "8", "--json").json()
    parts = d["per_gpu"]
    pool = parts["allocator: reduce-scatter stream pool (sharded fp32 gradients)"]
    assert parts["gradients"] + pool == 4 * n70 // 8
    assert parts["gradients"] == 4 * n70 // 8 - parts["activations"] > 0
