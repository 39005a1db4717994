"""train-step --method lora: LoRA on a frozen base (calc.training.adapters). Expected numbers are worked out by hand
from Llama-3-8B's shapes (hidden 4096, 32 layers, 8 KV heads of 128, intermediate 14336, vocab 128256)."""

from __future__ import annotations

import pytest

from calc.hardware.efficiency import gemm_time
from calc.model.flops import forward_flops
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.adapters import Lora
from calc.training.cost import ModelCost
from calc.training.layout import Layout
from calc.training.step import train_step

SEQ = 2048
# (k, n) of each weight GEMM of a Llama-3-8B block: q, k, v, o, gate, up, down
BLOCK = [(4096, 4096), (4096, 1024), (4096, 1024), (4096, 4096), (4096, 14336), (4096, 14336), (14336, 4096)]


def _cost(lora):
    return ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), SEQ, "bf16", lora=lora)


def test_adapter_parameters_and_model_flops_by_hand():
    """r = 8 on q and v: 32 layers x 8 x ((4096 + 4096) + (4096 + 1024)) = 3,407,872 adapter parameters. Model FLOPs
    per sequence of a frozen-base step: forward F + input gradients (F - A) + attention backward 2A + 3 x the adapters'
    forward 2 s r (d_in + d_out) per matrix."""
    cost = _cost(Lora(8, ("q", "v")))
    assert cost.trainable_params == 3_407_872 and cost.trainable_expert_params == 0
    f = forward_flops(load_model("llama3-8b"), 1, SEQ)
    adapters = 32 * 2 * SEQ * 8 * ((4096 + 4096) + (4096 + 1024))
    assert cost.model_flops_per_seq == pytest.approx(2 * f.forward_flops + f.forward_attention_flops + 3 * adapters)
    assert _cost(None).model_flops_per_seq == pytest.approx(3 * f.forward_flops)


def test_frozen_base_drops_the_weight_gradient_gemms():
    """Same layout, full vs LoRA (r = 1 on q: the adapters cost almost nothing): the compute term shrinks by one
    forward's worth of weight GEMMs per micro-batch, the layers' and the head's (their weight gradients), less the
    small adapter work. Hand sum: 32 x the block's GEMMs + the head [T, 4096] x [4096, 128256], each at gemm_time."""
    layout = Layout(dp=8, zero=3)
    full = train_step(_cost(None), layout, global_batch=8)
    lora = train_step(_cost(Lora(1, ("q",))), layout, global_batch=8)
    assert full.fits and lora.fits
    h100 = load_gpu("h100")
    weight_grads = 32 * sum(gemm_time(h100, SEQ, n, k) for k, n in BLOCK) + gemm_time(h100, SEQ, 128256, 4096)
    saved = full.compute_s - lora.compute_s
    assert 0.9 * weight_grads < saved < weight_grads * 1.001


def test_only_adapter_gradients_are_reduced_and_stepped():
    """DP 8, ZeRO 0: the gradient all-reduce moves 3,407,872 x 4 B (fp32 reduce) instead of every weight, and Adam
    reads and writes 28 B per adapter parameter (calc.memory.training.optimizer_step_bytes, bf16-adam)."""
    cost = _cost(Lora(8, ("q", "v")))
    r = train_step(cost, Layout(dp=8), global_batch=8)
    assert r.fits
    dp_total = next(t.time_s for t in r.terms if t.name == "dp_comm_s")
    assert dp_total == pytest.approx(cost.coll("allreduce", 3_407_872 * 4, 8, 1))
    assert r.optimizer_s == pytest.approx(3_407_872 * 28 / cost.hbm)


def test_memory_is_the_finetune_engines(cli):
    """One answer for the same job: train-step --method lora and memory --mode finetune --method lora (stack hf, batch
    1 of 2,048 tokens, 4 micro-batches accumulated)."""
    step = cli("train-step", "llama3-8b", "--gpu", "h100", "--global-batch", "4", "--seq", "2048", "--method", "lora",
               "--stack", "hf", "--json").json()
    mem = cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--method", "lora", "--seq", "2048",
              "--batch", "1", "--grad-accum", "4", "--stack", "hf", "--json").json()
    assert step["memory_per_gpu_bytes"] == mem["per_gpu_bytes"]
    assert step["memory_per_gpu"] == mem["per_gpu"]
    assert any("LoRA r=8 on q,v" in a for a in step["assumptions"])


def test_lora_fits_where_full_training_does_not(cli):
    args = ("train-step", "llama3-70b", "--gpu", "h100-sxm", "--tp", "2", "--pp", "4", "--sp", "--global-batch", "32",
            "--seq", "4096", "--json")
    full = cli(*args)
    assert full.code == 2  # 16 B per parameter on 8 GPUs does not fit
    lora = cli(*args, "--method", "lora", "--lora-rank", "32", "--lora-targets", "all-linear")
    assert lora.code == 0 and lora.json()["fits"] and lora.json()["step_time_s"] > 0


@pytest.mark.parametrize("args,flag,words", [
    (["--method", "dora"], "--method", "memory only"),
    (["--method", "qlora", "--dtype", "fp8"], "--dtype", "dequantizes its NF4 base to bf16"),
    (["--method", "adapter"], "--method", "unknown method"),
    (["--lora-rank", "16"], "--lora-rank", "--method lora"),
    (["--method", "lora", "--recompute", "sac"], "--recompute", "none, selective or full"),
    (["--method", "lora", "--lora-targets", "q,x"], "--lora-targets", "unknown group"),
    (["--method", "lora", "--lora-targets", ""], "--lora-targets", "an empty value"),  # never read as the default
])
def test_refusals(cli, args, flag, words):
    out = cli("train-step", "llama3-8b", "--gpu", "h100", "--global-batch", "8", *args)
    assert out.code == 2 and flag in out.err and words in out.err and "Traceback" not in out.err


@pytest.mark.parametrize("recompute,passes", [("none", 2), ("full", 3)])
def test_qlora_dequantizes_its_base_for_every_pass(recompute, passes):
    """QLoRA on one H100, 4 micro-batches of 2,048 tokens: bitsandbytes dequantizes every NF4 block weight forward and
    again for the input gradient (a third time under full recompute). Each pass over Llama-3-8B's 6,979,321,856
    block linear weights reads 4 bits + a uint8 absmax per 64 + an fp32 per 256 x 64 and writes 2 B (2.515869140625
    B per weight) at 3.35 TB/s x 0.90 (HBM efficiency): the compute term grows by exactly that over LoRA."""
    layout = Layout(recompute=recompute)
    lora = train_step(_cost(Lora(8, ("q", "v"))), layout, global_batch=4)
    qlora = train_step(_cost(Lora(8, ("q", "v"), "nf4")), layout, global_batch=4)
    assert lora.fits and qlora.fits
    per_pass = 6_979_321_856 * (0.5 + 1 / 64 + 4 / (64 * 256) + 2) / (3.35e12 * 0.90)
    grew = (qlora.compute_s + qlora.recompute_s) - (lora.compute_s + lora.recompute_s)
    assert grew == pytest.approx(4 * passes * per_pass, rel=1e-6)


def test_qlora_memory_is_the_finetune_engines(cli):
    step = cli("train-step", "llama3-8b", "--gpu", "rtx4090", "--global-batch", "8", "--seq", "2048", "--method", "qlora",
               "--recompute", "full", "--stack", "hf", "--json").json()
    mem = cli("memory", "llama3-8b", "--gpu", "rtx4090", "--mode", "finetune", "--method", "qlora", "--seq", "2048",
              "--batch", "1", "--grad-accum", "8", "--recompute", "full", "--stack", "hf", "--json").json()
    assert step["fits"] and step["memory_per_gpu_bytes"] == mem["per_gpu_bytes"]
    assert any("QLoRA (NF4 base) r=8 on q,v" in a for a in step["assumptions"])


def test_train_plan_lora_plans_are_train_step_lora(cli):
    """train-plan --method lora ranks layouts a LoRA step is priced for, and its best plan is exactly what train-step
    --method lora answers for that layout (same step time, same memory); it is faster than the best full-training plan
    on the same GPUs (no weight gradients, no base optimizer)."""
    common = ("llama3-8b", "--gpu", "h100", "--num-gpus", "16", "--global-batch", "64", "--seq", "4096")
    lora = cli("train-plan", *common, "--method", "lora", "--json").json()
    full = cli("train-plan", *common, "--json").json()
    best = lora["plans"][0]
    assert all(p["ep"] == 1 and p["recompute"] in ("none", "selective", "full") for p in lora["plans"])
    step = cli("train-step", *common, "--method", "lora", "--tp", str(best["tp"]), "--pp", str(best["pp"]),
               "--dp", str(best["dp"]), "--micro-batch", str(best["micro_batch"]), "--zero", str(best["zero"]),
               "--recompute", best["recompute"], "--vpp", str(best["vpp"]), *(["--sp"] if best["sp"] else []),
               "--json").json()
    assert step["step_time_s"] == pytest.approx(best["step_time_s"], rel=1e-9)
    assert step["memory_per_gpu_bytes"] == best["memory_per_gpu_bytes"]
    assert best["step_time_s"] < full["plans"][0]["step_time_s"]


def test_train_plan_lora_refuses_expert_parallelism(cli):
    out = cli("train-plan", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "16", "--global-batch", "64", "--method", "lora",
              "--ep", "2")
    assert out.code == 2 and "--ep" in out.err and "LoRA" in out.err


def test_empty_lora_targets_refused_in_memory_too(cli):
    out = cli("memory", "llama3-8b", "--mode", "finetune", "--lora-targets", "")
    assert out.code == 2 and out.err.startswith("llmcalc: error: --lora-targets: an empty value")
    out = cli("memory", "llama3-8b", "--mode", "finetune", "--lora-targets", ",")
    assert out.code == 2 and "--lora-targets" in out.err and "at least one group" in out.err


def test_train_time_lora_is_its_plan_step_time(cli):
    """train-time --method lora: days = D / (the best LoRA plan's tokens per second), the plan's MFU being in a frozen
    base's FLOP convention (train_time counts the same FLOPs per token); fewer GPU-hours than full training."""
    common = ("llama3-8b", "--gpu", "h100", "--num-gpus", "16", "--global-batch", "64", "--seq", "4096")
    plan = cli("train-plan", *common, "--method", "lora", "--json").json()["plans"][0]
    lora = cli("train-time", *common, "--tokens", "1B", "--method", "lora", "--json").json()
    full = cli("train-time", *common, "--tokens", "1B", "--json").json()
    tokens_per_s = 64 * 4096 / plan["step_time_s"]
    assert lora["days"] * 86400 == pytest.approx(1e9 / tokens_per_s, rel=1e-9)
    assert lora["gpu_hours"] < full["gpu_hours"]


def test_train_time_lora_days_finds_the_fewest_whole_nodes(cli):
    """train-time --method lora --days D: the smallest multiple of 8 H100s whose best LoRA plan finishes in D days,
    so one node fewer (timed with --num-gpus) takes longer than D."""
    common = ("llama3-70b", "--gpu", "h100", "--tokens", "10B", "--method", "lora")
    r = cli("train-time", *common, "--days", "2", "--json").json()
    n = r["num_gpus"]
    assert n % 8 == 0 and r["days"] <= 2
    fewer = cli("train-time", *common, "--num-gpus", str(n - 8), "--json")
    assert fewer.code != 0 or fewer.json()["days"] > 2
