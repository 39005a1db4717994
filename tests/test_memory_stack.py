"""The training stack is the one named input that sets the memory engine's framework settings (loss buffers, fusions,
allocator fragmentation, gradient buffer, FSDP unit gradient bytes; calc.training.stack.MEMORY) in `memory --mode
train` / train-step and `memory --mode finetune --method full` alike: with the same --stack and the same batch the two
modes print the same bytes; each mode defaults to its users' stack (train: megatron, finetune: hf) and says what the
other mode's default would give (issue 21: "--mode train and --mode finetune --method full give the same peak")."""

from __future__ import annotations

import pytest

STACKS = ("hf", "megatron", "fsdp", "llm-foundry", "deepspeed")

JOBS = [  # (layout, gradient accumulation = micro-batches per step per DP rank)
    (("--num-gpus", "8", "--zero", "3"), 1),
    (("--num-gpus", "8", "--zero", "3", "--seq", "8192"), 1),
    (("--num-gpus", "8", "--zero", "3", "--recompute", "full", "--seq", "8192"), 2),
    (("--num-gpus", "8", "--zero", "3", "--recompute", "sac", "--seq", "2048"), 1),
    (("--num-gpus", "8", "--zero", "1"), 1),  # accumulation 1: only a persistent gradient buffer keeps the gradients
    (("--num-gpus", "4", "--zero", "0", "--seq", "2048"), 2),
    (("--tp", "2", "--dp", "4", "--sp", "--zero", "1", "--recompute", "full"), 1),
    (("--tp", "2", "--pp", "2", "--dp", "2", "--zero", "1"), 2),
    (("--tp", "2", "--cp", "2", "--dp", "2", "--zero", "1", "--seq", "8192"), 2),
]


def _dp(layout: tuple[str, ...]) -> int:
    return int(layout[layout.index("--num-gpus") + 1]) if "--num-gpus" in layout else int(layout[layout.index("--dp") + 1])


def _pair(cli, layout: tuple[str, ...], accum: int, *extra: str):
    """The same job in both modes: --global-batch (train) = --grad-accum (finetune) x DP micro-batches of 1."""
    common = ("llama3-8b", "--gpu", "h100", *layout, *extra, "--json")
    train = cli("memory", *common, "--mode", "train", "--global-batch", str(accum * _dp(layout)))
    full = cli("memory", *common, "--mode", "finetune", "--method", "full", "--grad-accum", str(accum))
    assert train.code in (0, 2) and full.code in (0, 2), (train.err, full.err)
    return train.json(), full.json()


def _pipelined(layout: tuple[str, ...]) -> bool:
    return "--pp" in layout and layout[layout.index("--pp") + 1] != "1"


def _zero(layout: tuple[str, ...]) -> str:
    return layout[layout.index("--zero") + 1]


# every stack with every job, except HF Trainer and LLM Foundry with pipeline stages, which they do not run
# (test_hf_stack_runs_no_pipeline; tests/test_pipeline_states.py), and FSDP at ZeRO-1, which it has not
# (test_fsdp_has_no_zero_1)
@pytest.mark.parametrize(("stack", "layout", "accum"),
                         [(s, lay, a) for s in STACKS for lay, a in JOBS
                          if not (s in ("hf", "llm-foundry") and _pipelined(lay)) and not (s == "fsdp" and _zero(lay) == "1")],
                         ids=lambda x: " ".join(x) if isinstance(x, tuple) else str(x))
def test_same_stack_same_bytes_in_both_modes(cli, stack, layout, accum) -> None:
    train, full = _pair(cli, layout, accum, "--stack", stack)
    assert train["stack"] == full["stack"] == stack
    assert train["per_gpu_bytes"] == full["per_gpu_bytes"]
    for part in ("weights", "activations", "FSDP unsharded layers", "allocator fragmentation", "CUDA context"):
        assert train["per_gpu"].get(part, 0) == full["per_gpu"].get(part, 0), part


def test_each_mode_defaults_to_its_users_stack(cli) -> None:
    """No --stack: train prices megatron, fine-tuning hf (full and adapters); the default is the named stack's figure."""
    job = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--json")
    train = cli("memory", *job, "--mode", "train").json()
    full = cli("memory", *job, "--mode", "finetune", "--method", "full").json()
    lora = cli("memory", *job, "--mode", "finetune").json()
    assert (train["stack"], full["stack"], lora["stack"]) == ("megatron", "hf", "hf")
    assert train["per_gpu_bytes"] == cli("memory", *job, "--mode", "train", "--stack", "megatron").json()["per_gpu_bytes"]
    assert full["per_gpu_bytes"] == cli("memory", *job, "--mode", "finetune", "--method", "full",
                                        "--stack", "hf").json()["per_gpu_bytes"]
    assert train["per_gpu_bytes"] != full["per_gpu_bytes"]


def test_the_stacks_differ_where_their_sources_say(cli) -> None:
    """llama3-8b, 8 GPUs, ZeRO-3, s = 4096, worked by hand. The FSDP root unit (embedding + head 2 x 128,256 x 4096 +
    norm 4096 = 1,050,677,248 params) is in flight in bf16 with its gradient: bf16 on Megatron-FSDP (grad_reduce_in_fp32
    False) 4 x 1,050,677,248 = 4,202,708,992 B, fp32 under PyTorch FSDP (hf) 6 x 1,050,677,248 = 6,304,063,488 B (two
    blocks, 2 x 218,112,000 x 4 = 1,744,896,000 or x 6 = 2,617,344,000, are smaller). Megatron runs expandable
    segments (no fragmentation); HF Trainer the default caching allocator (5% of the allocated peak)."""
    job = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--seq", "4096", "--json")
    for mode in (("--mode", "train"), ("--mode", "finetune", "--method", "full")):
        meg = cli("memory", *job, *mode, "--stack", "megatron").json()["per_gpu"]
        hf = cli("memory", *job, *mode, "--stack", "hf").json()["per_gpu"]
        assert meg["FSDP unsharded layers"] == 4_202_708_992 and hf["FSDP unsharded layers"] == 6_304_063_488
        assert meg.get("allocator fragmentation", 0) == 0
        allocated = sum(hf.values()) - hf["allocator fragmentation"] - hf["CUDA context"]
        assert hf["allocator fragmentation"] == -(-allocated * 5 // 100)


@pytest.mark.parametrize(("layout", "accum"), JOBS[:5], ids=lambda x: " ".join(x) if isinstance(x, tuple) else str(x))
def test_flags_override_the_stack_in_both_modes(cli, layout, accum) -> None:
    """--loss, --compile/--no-compile and --fragmentation replace the stack's field in either mode: megatron with hf's
    loss, eager kernels and 5% is, field by field, hf but for the gradient buffer and the FSDP gradient bytes; each mode
    moves alike."""
    flags = ("--stack", "megatron", "--loss", "fp32", "--no-compile", "--fragmentation", "0.05")
    train, full = _pair(cli, layout, accum, *flags)
    assert train["per_gpu_bytes"] == full["per_gpu_bytes"]
    base, _ = _pair(cli, layout, accum, "--stack", "megatron")
    assert train["per_gpu"]["activations"] > base["per_gpu"]["activations"]  # silu(gate) kept, 12 B/logit CE


def test_each_output_gives_the_other_modes_default(cli) -> None:
    """Where the two modes' default stacks price the job differently, each output adds the other default's peak, the
    figure the other mode prints; with --stack set to the other mode's default the line is not needed."""
    job = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--seq", "8192", "--json")
    train = cli("memory", *job, "--mode", "train").json()
    full = cli("memory", *job, "--mode", "finetune", "--method", "full").json()
    assert f"under --stack hf (--mode finetune's default) this job peaks at {full['per_gpu_bytes'] / 2**30:.2f} GiB" \
        in train["stack_note"]
    assert f"under --stack megatron (--mode train and train-step's default) this job peaks at {train['per_gpu_bytes'] / 2**30:.2f} GiB" \
        in full["stack_note"]
    assert train["stack_note"] in train["assumptions"] and full["stack_note"] in full["assumptions"]
    assert cli("memory", *job, "--mode", "train", "--stack", "hf").json()["stack_note"] is None
    assert cli("memory", *job, "--mode", "finetune", "--method", "full", "--stack", "megatron").json()["stack_note"] is None
    # LoRA (the default method): train-step prices adapters too, on its megatron stack, and the note names that figure
    assert cli("memory", *job, "--mode", "finetune").json()["stack_note"].startswith("under --stack megatron")
    table = cli("memory", *job[:-1], "--mode", "finetune", "--method", "full", "--explain")
    assert "stack hf: fp32 cross-entropy" in table.out and "under --stack megatron" in table.out


@pytest.mark.parametrize(("args", "flag"), [
    (("--mode", "infer", "--stack", "hf"), "--stack"),
    (("--mode", "infer", "--compile"), "--compile"),
    (("--mode", "infer", "--fragmentation", "0"), "--fragmentation"),
    (("--mode", "train", "--grad-accum", "2"), "--grad-accum"),
    (("--mode", "finetune", "--method", "full", "--stack", "nemo"), "--stack"),
])
def test_stack_flags_are_refused_where_they_do_not_apply(cli, args, flag) -> None:
    r = cli("memory", "llama3-8b", *args)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}"), r.err


@pytest.mark.parametrize("stack", STACKS)
def test_train_step_prices_the_stack_as_memory_does(cli, stack) -> None:
    """train-step --stack S and `memory --mode train --stack S` of one plan: one per-GPU figure (calc.training.step
    .engine_options reads the stack's memory settings for both)."""
    job = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--global-batch", "16", "--stack", stack, "--json")
    step = cli("train-step", *job).json()
    assert step["memory_per_gpu_bytes"] == cli("memory", *job, "--mode", "train").json()["per_gpu_bytes"]


@pytest.mark.parametrize("stack", [None, "hf", "megatron"])
def test_report_finetune_takes_the_stack_as_memory_does(cli, stack) -> None:
    """report --mode finetune takes --stack with memory --mode finetune's default (hf) and prints its finetune page
    byte for byte."""
    job = ["llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--mode", "finetune", "--method", "full",
           *(["--stack", stack] if stack else []), "--json"]
    page = cli("report", *job).json()["finetune"]
    assert page == cli("memory", *job).json()
    assert page["stack"] == (stack or "hf")


def test_fsdp_has_no_zero_1(cli) -> None:
    """QA43 A13: PyTorch FSDP shards gradients with the optimizer states (SHARD_GRAD_OP, ZeRO-2) or the parameters too
    (FULL_SHARD, ZeRO-3), or replicates (NO_SHARD): no ZeRO-1, which train-plan's search already left out under
    --stack fsdp; a pinned --zero 1 is refused in every mode, naming the stages it runs."""
    for args in (("memory", "--mode", "train"), ("memory", "--mode", "finetune", "--method", "full"),
                 ("train-step", "--global-batch", "64"), ("train-plan",)):
        r = cli(args[0], "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "1", "--stack", "fsdp", *args[1:])
        assert r.code == 2 and r.err.startswith("llmcalc: error: --zero: --stack fsdp has no ZeRO-1"), args
        assert "--zero 0, 2 or 3" in r.err and r.err.count("\n") == 1


@pytest.mark.parametrize(("stack", "zero"), [("megatron", "1"), ("fsdp", "2")])
def test_adapters_on_any_stack_are_priced_as_train_step_prices_them(cli, stack, zero) -> None:
    """NeMo / Megatron-Bridge run LoRA (the corpus's DGX Cloud LoRA rows), as FSDP stacks do (torchtune); train-step
    --method lora prices its memory with the fine-tuning engine under the stack's settings (default megatron), so
    `memory --mode finetune --method lora --stack S` and report take the same job and give the same bytes, where
    they used to refuse any stack but hf."""
    step = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", zero, "--global-batch", "256",
               "--method", "lora", "--stack", stack, "--json")
    assert step.code == 0, step.err
    # the same job: 256 sequences a step on 8 ranks = 32 accumulated micro-batches (above ZeRO-1 the accumulated
    # adapter gradients are a buffer of their own)
    job = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", zero, "--mode", "finetune", "--method", "lora",
           "--stack", stack, "--json")
    mem = cli("memory", *job, "--grad-accum", "32")
    assert mem.code == 0, mem.err
    assert mem.json()["per_gpu_bytes"] == step.json()["memory_per_gpu_bytes"]
    assert mem.json()["stack"] == stack
    mem = cli("memory", *job)
    page = cli("report", *job)
    assert page.code == 0 and page.json()["finetune"] == mem.json(), page.err


@pytest.mark.parametrize("cmd", [
    ("train-step", "llama3-70b", "--gpu", "h100", "--tp", "4", "--pp", "4", "--dp", "4", "--global-batch", "512"),
    ("memory", "llama3-8b", "--gpu", "h100", "--mode", "train", "--pp", "2", "--dp", "4"),
    ("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--pp", "2", "--dp", "4"),
    ("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--method", "full", "--pp", "2", "--dp", "4"),
])
def test_hf_stack_runs_no_pipeline(cli, cmd) -> None:
    """QA finding: HF Trainer / accelerate have no pipeline schedule (DDP, FSDP, DeepSpeed ZeRO, TP), yet train-plan
    --stack hf recommended TP4 PP4x3 and train-step and memory priced it. Every command now refuses --pp > 1 under
    --stack hf (memory --mode finetune's default stack) naming --pp, and train-plan searches PP 1 only."""
    args = [*cmd, "--stack", "hf"] if "--mode" not in cmd or "train" in cmd else list(cmd)
    r = cli(*args)
    assert r.code == 2 and r.err.startswith("llmcalc: error: --pp: --stack hf runs no pipeline"), r.err


def test_hf_stack_plans_have_one_stage(cli) -> None:
    r = cli("train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "512", "--stack", "hf",
            "--top", "10", "--json")
    assert r.code == 0, r.err
    plans = r.json()["plans"]
    assert plans and all(p["pp"] == 1 for p in plans)
    mega = cli("train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "512", "--top", "10",
               "--json").json()["plans"]
    assert any(p["pp"] > 1 for p in mega)  # the pipeline is a real option where the stack has one


def test_min_gpus_keeps_the_expert_parallel_groups(cli) -> None:
    """QA finding: memory --mode train --tp 2 --ep 8 answered min_gpus 2 for Mixtral 8x7B (46.7B parameters x 16 B
    = 747 GB of training state: at least 9 H100s), pricing a DP of 1 as if it held 8-way expert parallelism. The
    count now keeps EP dividing DP x CP, as train-plan's layouts do: TP 2 x DP 8 = 16 GPUs at the least."""
    r = cli("memory", "mixtral-8x7b", "--mode", "train", "--gpu", "h100", "--num-gpus", "64", "--tp", "2", "--ep", "8",
            "--sp", "--zero", "1", "--json")
    assert r.code == 0, r.err
    n = r.json()["min_gpus"]
    assert n is not None and n >= 16 and n % 16 == 0 and n * 85.52e9 >= 46.7e9 * 16
