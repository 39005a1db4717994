"""`memory --mode train` takes train-step's layout flags through the same builder (calc.cli.training.training_layout)
and prices the plan through the same engine options (calc.training.step.engine_options): for one job the two commands
print one per-GPU peak, and `--mode finetune --method full` prints it too where its layout applies (issue 21 item 2)."""

from __future__ import annotations

import pytest

JOBS = [  # (model, layout flags with --micro-batch as train-step spells it)
    ("llama3-8b", "--num-gpus", "16", "--tp", "2", "--pp", "2", "--sp", "--zero", "1", "--global-batch", "64"),
    ("llama3-8b", "--num-gpus", "16", "--tp", "2", "--cp", "4", "--sp", "--zero", "1", "--seq", "32768",
     "--global-batch", "16"),
    ("llama3-8b", "--num-gpus", "8", "--zero", "3", "--global-batch", "16", "--micro-batch", "2"),
    ("mixtral-8x7b", "--num-gpus", "32", "--ep", "8", "--zero", "1", "--global-batch", "1024"),
    ("mixtral-8x7b", "--num-gpus", "64", "--tp", "2", "--pp", "4", "--ep", "4", "--etp", "1", "--sp", "--zero", "1",
     "--global-batch", "256"),
    ("llama3-70b", "--num-gpus", "64", "--tp", "8", "--pp", "4", "--vpp", "5", "--pp-microbatch-group", "8", "--sp",
     "--zero", "1", "--recompute", "selective", "--global-batch", "64"),
    ("llama3-70b", "--num-gpus", "32", "--tp", "8", "--pp", "4", "--sp", "--zero", "1", "--recompute", "full",
     "--global-batch", "32"),
    ("llama3-8b", "--num-gpus", "8", "--tp", "8", "--sp", "--recompute", "selective", "--recompute-modules", "layernorm,mlp",
     "--global-batch", "8"),
    ("llama3-8b", "--num-gpus", "8", "--zero", "1", "--recompute", "sac", "--dtype", "fp8", "--global-batch", "8"),
    ("llama3-8b", "--num-gpus", "8", "--tp", "2", "--sp", "--offload-modules", "core_attn,attn_proj",
     "--cpu-offload-layers", "4", "--global-batch", "8"),
    ("llama3-8b", "--num-gpus", "16", "--pp", "2", "--zero", "3", "--sharding", "fsdp-pp", "--stack", "fsdp",
     "--global-batch", "32"),
]


def _memory_args(job: tuple[str, ...]) -> list[str]:
    """The same job in memory's spelling: --batch is the micro-batch of --mode train."""
    args = list(job)
    if "--micro-batch" in args:
        args[args.index("--micro-batch")] = "--batch"
    return args


@pytest.mark.parametrize("job", JOBS, ids=lambda job: " ".join(job[:1] + job[3:9]))
def test_memory_train_is_train_step_memory(cli, job) -> None:
    step = cli("train-step", job[0], "--gpu", "h100", *job[1:], "--json")
    memory = cli("memory", job[0], "--gpu", "h100", "--mode", "train", *_memory_args(job[1:]), "--json")
    assert step.code in (0, 2) and memory.code in (0, 2), (step.err, memory.err)
    assert memory.json()["per_gpu_bytes"] == step.json()["memory_per_gpu_bytes"]
    assert memory.json()["per_gpu"] == step.json()["memory_per_gpu"]


def test_expert_parallelism_shards_the_experts_in_memory(cli) -> None:
    """mixtral-8x7b (46.70e9 parameters, 45.10e9 of them routed experts: 32 layers x 8 experts x 3 x 4096 x 14336),
    32 GPUs, ZeRO-1: EP 8 keeps one of the 8 experts per rank, so the bf16 weights drop by 7/8 of the expert weights,
    2 x 45,097,156,608 x 7/8 = 78,920,024,064 B (the QA finding: memory could not take --ep and priced EP 1)."""
    job = ("mixtral-8x7b", "--gpu", "h100", "--mode", "train", "--num-gpus", "32", "--zero", "1", "--json")
    ep1, ep8 = cli("memory", *job).json(), cli("memory", *job, "--ep", "8").json()
    assert ep1["per_gpu"]["weights"] - ep8["per_gpu"]["weights"] == 78_920_024_064


def test_default_step_fills_the_interleaved_pipeline(cli) -> None:
    """Without --global-batch, memory prices a step long enough that the first stage holds its most. PP 4 x VPP 2
    (group N = PP = 4): in flight (min(2(p-1) + (v-1)N, m v) + 1, capped at m v) / v is 4 at m = 4 and 5.5 from m = 8
    (p(1 + (p-1)/(p v)) = 4 x 11/8): m = 8 micro-batches of 1 on DP 2, a global batch of 16."""
    job = ("llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--tp", "8", "--pp", "4", "--vpp", "2", "--sp", "--zero", "1")
    memory = cli("memory", *job, "--mode", "train", "--json").json()
    assert memory["per_gpu_bytes"] == cli("train-step", *job, "--global-batch", "16", "--json").json()["memory_per_gpu_bytes"]
    assert memory["per_gpu_bytes"] > cli("train-step", *job, "--global-batch", "8", "--json").json()["memory_per_gpu_bytes"]


FINETUNE_JOBS = [  # (layout, gradient accumulation)
    (("--num-gpus", "8", "--zero", "3"), 1),
    (("--num-gpus", "8", "--zero", "3", "--recompute", "full"), 1),
    (("--num-gpus", "8", "--zero", "3", "--recompute", "sac", "--seq", "8192"), 2),
    (("--num-gpus", "8", "--zero", "1"), 2),
    (("--tp", "2", "--dp", "4", "--sp", "--zero", "1"), 4),
    (("--tp", "2", "--pp", "2", "--dp", "2", "--zero", "1"), 2),
    (("--tp", "2", "--cp", "2", "--dp", "2", "--zero", "1", "--seq", "8192"), 2),
]


@pytest.mark.parametrize(("layout", "accum"), FINETUNE_JOBS, ids=lambda x: " ".join(x) if isinstance(x, tuple) else str(x))
def test_finetune_full_is_train_for_the_same_job(cli, layout, accum) -> None:
    """The same job in both modes: fine-tuning's eager PyTorch defaults set to what --mode train prices (--compile: fused
    norms and SwiGLU; --fragmentation 0: expandable segments; --loss megatron), the same micro-batches per step
    (--grad-accum = --global-batch / DP), and a stack that reduces FSDP units in fp32 as PyTorch FSDP does
    (--stack deepspeed; the default Megatron stack reduces them in bf16)."""
    dp = 8 if "--num-gpus" in layout else int(layout[layout.index("--dp") + 1])
    common = ("llama3-8b", "--gpu", "h100", *layout, "--json")
    train = cli("memory", *common, "--mode", "train", "--stack", "deepspeed", "--global-batch", str(accum * dp))
    # HF Trainer, fine-tuning's default stack, runs no pipeline (calc.training.stack.NO_PIPELINE): a pipelined job
    # names the stack whose memory --mode train prices it
    stack = ("--stack", "deepspeed") if "--pp" in layout else ()
    full = cli("memory", *common, "--mode", "finetune", "--method", "full", "--compile", "--fragmentation", "0",
               "--loss", "megatron", "--grad-accum", str(accum), *stack)
    assert train.code == full.code == 0, (train.err, full.err)
    assert train.json()["per_gpu_bytes"] == full.json()["per_gpu_bytes"]


def test_training_total_sums_every_gpu(cli) -> None:
    """The QA case: llama3-8b (N = 8,030,261,248), DP 4 x TP 2 x CP 8 = 64 GPUs, ZeRO-1. Each GPU holds the bf16
    weights of its TP half, 2 N / 2 = 8,030,261,248 B, and Adam's 12 B per parameter sharded over DP x CP = 32 ranks
    of its TP half, 12 N / 64 = 1,505,673,984 B; the total is what the 64 GPUs hold together, 64 x the per-GPU peak
    (not one copy of the states plus activations per DP x CP replica)."""
    r = cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "train", "--dp", "4", "--tp", "2", "--cp", "8",
            "--seq", "131072", "--sp", "--zero", "1", "--json").json()
    assert r["per_gpu"]["weights"] == 8_030_261_248 and r["per_gpu"]["optimizer"] == 1_505_673_984
    assert r["num_gpus"] == 64 and r["total_bytes"] == 64 * r["per_gpu_bytes"]


@pytest.mark.parametrize(("mode", "flag"), [
    (("--mode", "infer"), ("--vpp", "2")), (("--mode", "finetune", "--method", "full"), ("--ep", "2")),
    (("--mode", "finetune", "--method", "full"), ("--global-batch", "8")),
])
def test_layout_flags_are_refused_where_they_do_not_apply(cli, mode, flag) -> None:
    r = cli("memory", "llama3-8b", *mode, *flag)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag[0]}: "), r.err


def test_report_at_an_assumed_mfu_prices_memory_as_memory_does(cli) -> None:
    """report --mode train --mfu times no plan; its memory page is `memory --mode train` of the same placement."""
    report = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--num-gpus", "8", "--zero", "3", "--mfu", "0.4",
                 "--tokens", "1T", "--json")
    memory = cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "train", "--num-gpus", "8", "--zero", "3", "--json")
    assert report.code == memory.code == 0, (report.err, memory.err)
    assert report.json()["memory"]["per_gpu_bytes"] == memory.json()["per_gpu_bytes"]
