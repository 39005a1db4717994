"""The one option vocabulary (issue 12): same names everywhere, human numbers, old spellings as
hidden aliases, options that do not apply refused, fit first, the context window checked."""

from __future__ import annotations

import pytest


def test_human_numbers_on_integer_options(cli) -> None:
    # 4K = 4000 sequences of 2K = 2000 tokens: forward FLOPs scale with B*S, so 4K x 2K == 4000 x 2000.
    human = cli("flops", "llama2-7b", "--batch", "4K", "--seq", "2K", "--json").json()
    plain = cli("flops", "llama2-7b", "--batch", "4000", "--seq", "2000", "--json").json()
    assert human["forward_flops"] == plain["forward_flops"]


@pytest.mark.parametrize(("args", "flag"), [
    (["flops", "llama2-7b", "--batch", "1.5"], "--batch: must be a whole number"),
    (["flops", "llama2-7b", "--seq", "-4"], "--seq: must be >= 1"),
    (["memory", "llama2-7b", "--zero", "4", "--mode", "train"], "--zero: must be <= 3"),
    (["latency", "llama2-7b", "--gpu", "h100", "--prompt", "0"], "--prompt: must be >= 1"),
    (["flops", "llama2-7b", "--output", "0"], "--output: must be >= 1"),
])
def test_bad_numbers_name_their_flag(cli, args: list[str], flag: str) -> None:
    r = cli(*args)
    assert r.code == 2 and flag in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_model_is_positional_and_old_model_option_still_works(cli) -> None:
    args = ["--gpu", "h100", "--tokens", "15T", "--gpu-hours", "6.4M", "--seq", "8192", "--json"]
    new = cli("mfu", "llama3-70b", *args).json()
    old = cli("mfu", "--model", "llama3-70b", *args).json()
    assert new == old
    # Seed 001 question 1: 15e12 tokens x 6N / (6.4e6 GPU-h x 3600 s x 989.4 TFLOPS), N = 70,553,706,496.
    assert new["mfu_6n"] == pytest.approx(15e12 * 6 * 70_553_706_496 / (6.4e6 * 3600 * 989.4e12))  # datasheet dense bf16
    both = cli("mfu", "llama3-70b", "--model", "llama3-70b", *args)
    assert both.code == 2 and "--model" in both.err


def test_old_spellings_are_hidden_aliases(cli) -> None:
    new = cli("concurrency", "llama2-70b", "--gpu", "a800", "--num-gpus", "2", "--max-model-len", "4000", "--json").json()
    old = cli("concurrency", "llama2-70b", "--gpu", "a800", "--num-gpus", "2", "--max-tokens", "4000", "--json").json()
    # seed 001 question 4 as vLLM V1 allocates it: 2020 blocks (worked by hand in tests/test_serving_memory.py
    # test_vllm_v1_blocks_llama2_70b_tp2_a800, on the CUDA total 81157 MiB, TP 2's NCCL buffers on the HGX A800
    # subtracted) / 250 per request = 8
    assert new == old and new["num_gpu_blocks"] == 2020 and new["max_concurrency"] == 8
    help_text = cli("concurrency", "--help").out
    assert "--max-model-len" in help_text and "--max-tokens" not in help_text
    price_new = cli("train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "2T", "--price", "2",
                    "--json").json()
    price_old = cli("train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "2T",
                    "--price-per-gpu-hour", "2", "--json").json()
    assert price_new["cost"] == price_old["cost"] == pytest.approx(2 * price_new["gpu_hours"])


@pytest.mark.parametrize(("args", "flag"), [
    (["memory", "llama2-7b", "--zero", "3"], "--zero"),
    (["memory", "llama2-7b", "--recompute", "full"], "--recompute"),
    (["memory", "llama2-7b", "--dp", "2"], "--dp"),
    (["memory", "llama2-7b", "--mode", "train", "--dtype", "int4"], "--dtype"),
    (["memory", "llama2-7b", "--mode", "train", "--kv-dtype", "fp8"], "--kv-dtype"),
    (["memory", "llama2-7b", "--mode", "train", "--group-size", "128"], "--group-size"),
    (["report", "llama2-7b", "--gpu", "h100", "--mode", "train", "--prompt", "100"], "--prompt"),
    (["report", "llama2-7b", "--gpu", "h100", "--zero", "2"], "--zero"),
    (["report", "llama2-7b", "--gpu", "h100", "--json", "--format", "markdown"], "--format"),
    (["mfu", "llama2-7b", "--gpu", "h100", "--tokens-per-s", "1e6", "--step-time", "2", "--global-batch", "8"], "--step-time"),
    (["mfu", "llama2-7b", "--gpu", "h100", "--tokens", "1T"], "--gpu-hours"),
    (["latency", "llama2-7b", "--gpu", "h100", "--prompt", "100", "--pp", "2", "--num-gpus", "3"], "--pp"),
    (["latency", "llama2-7b", "--gpu", "h100", "--prompt", "100", "--tp", "2", "--num-gpus", "4"], "--tp"),
    (["memory", "llama2-7b", "--mode", "train", "--sp"], "--sp"),
    (["train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T", "--dtype", "int4"], "--dtype"),
    (["mfu", "llama2-7b", "--gpu", "h100", "--tokens-per-s", "1e5", "--dtype", "int8"], "--dtype"),
    (["train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T", "--price", "a100=2"], "--price"),
])
def test_options_that_do_not_apply_are_refused(cli, args: list[str], flag: str) -> None:
    r = cli(*args)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}"), r.err


def test_fit_first_latency_refuses_with_gpus_needed(cli) -> None:
    # Llama-2-70B in bf16 is 68,976,648,192 x 2 B = 128.5 GiB of weights alone: more than one H100's
    # 79.65 GiB, less than two; so one GPU is refused and the answer names 2.
    r = cli("latency", "llama2-70b", "--gpu", "h100", "--prompt", "1000")
    assert r.code == 2 and "does not fit" in r.err and "needs 2 GPUs" in r.err and r.out == ""
    assert cli("latency", "llama2-70b", "--gpu", "h100", "--num-gpus", "2", "--prompt", "1000").code == 0


def test_fit_first_train_time(cli) -> None:
    # 70.55e9 params x 16 B (bf16 Adam) over ZeRO-3 on 2 GPUs = 564 GB per GPU > 85.5 GB.
    r = cli("train-time", "llama3-70b", "--gpu", "h100", "--num-gpus", "2", "--tokens", "1T")
    assert r.code == 2 and "does not fit" in r.err


def test_context_window_checked(cli) -> None:
    r = cli("latency", "llama2-7b", "--gpu", "h100", "--prompt", "100K")
    assert r.code == 2 and "context window of 4,096" in r.err


def test_concurrency_defaults_to_the_context_window(cli) -> None:
    # vLLM's max_model_len defaults to the model's context: llama2-7b 4096 tokens.
    data = cli("concurrency", "llama2-7b", "--gpu", "h100", "--json").json()
    assert data["max_tokens"] == 4096


def test_version_and_bare_help(cli) -> None:
    from calc import __version__

    assert cli("--version").out.strip() == f"llmcalc {__version__}"
    bare = cli()
    assert bare.code == 0 and "Usage" in bare.out and bare.err == ""


def test_one_default_dtype(cli) -> None:
    import inspect

    from calc.cli import memory, model, report, serving

    for command in (memory.memory, serving.latency, serving.concurrency, report.report, report.compare, model.flops):
        assert inspect.signature(command).parameters["dtype"].default == "bf16", command.__name__


# Options whose default legitimately differs by command, each with its reason; every other option must
# show one default wherever it is taken.
_OWN_DEFAULTS = {
    ("--batch", "bench"), ("--seq", "bench"), ("--tp", "bench"), ("--prompt", "bench"),  # measurement sweeps (--sizes)
    ("--prompt", "validate"),  # sized for the device the layers run on (GPU or CPU)
    ("--dtype", "bench"),  # what the device measures: bf16 on a GPU, fp32 on a CPU (its device spec's peak is fp32)
    # mode-dependent (inference 1 GiB, training 0.5 GiB); the serving engines' accounting reserves 0.5 GiB:
    # one value once `memory --mode infer` and the serving capacity path are merged (issue 20)
    ("--reserve-gib", "memory"), ("--reserve-gib", "train-step"),
    # what trains, mode-dependent: train-step / train-plan / train-time time training and mfu counts its FLOPs (every
    # weight unless --method lora); memory and report take --method for --mode finetune only, where adapters are the
    # default (lora)
    ("--method", "train-step"), ("--method", "train-plan"), ("--method", "train-time"), ("--method", "mfu"),
}
_SEARCHED = ("search", "the lightest that fits")  # train-plan / train-time / report search what is not pinned


def _help_defaults(text: str) -> dict[str, str | None]:
    """Each option of a command's --help and the default it shows (`[default: X]` or `default X` in its help)."""
    import re

    helps: dict[str, str] = {}
    flag = None
    for line in text.splitlines():
        match = re.match(r"^  (?:-\w, )?(--[\w-]+)(.*)$", line)
        if match:
            flag, helps[match.group(1)] = match.group(1), match.group(2)
        elif flag and line.startswith("   "):
            helps[flag] += " " + line.strip()
        elif not line.strip():
            flag = None
    shown = {}
    for name, help_ in helps.items():
        help_ = " ".join(help_.split())
        match = re.search(r"\[default: ([^\]]+)\]", help_) or re.search(r"\bdefault:? ([^;,)\]]+)", help_)
        shown[name] = match.group(1).strip() if match else None
    return shown


def test_every_command_shows_one_default_per_option(cli) -> None:
    from calc.cli.shell import SHORT_HELP

    seen: dict[str, dict[str, str]] = {}
    for command in SHORT_HELP:
        r = cli(command, "--help")
        assert r.code == 0, r.err
        for flag, default in _help_defaults(r.out).items():
            if default and (flag, command) not in _OWN_DEFAULTS and not default.startswith(_SEARCHED):
                seen.setdefault(flag, {})[command] = default
    # the workload options have a default in these commands at least (the parser must find them)
    assert {"latency", "serve", "report", "compare"} <= set(seen["--output"])
    assert {"memory", "flops", "mfu", "train-time", "train-step", "train-plan", "report"} <= set(seen["--seq"])
    differing = {flag: by for flag, by in seen.items() if len(set(by.values())) > 1}
    assert not differing, differing
    assert set(seen["--output"].values()) == {"256"} and set(seen["--seq"].values()) == {"4096"}


def test_bench_on_a_cpu_measures_fp32_by_default(cli) -> None:
    """QA finding: bench's help said CPU runs use fp32, yet a CPU run measured bf16 by default, while the CPU device
    spec it writes holds an fp32 (tf32) peak and its calibration is read back with --dtype fp32. Without --dtype a CPU
    run now measures fp32; a given --dtype is measured as given."""
    pytest.importorskip("torch", reason="bench needs the optional torch extra")
    r = cli("bench", "--sizes", "128", "--json")
    assert r.code == 0, r.err
    if r.json()["device"] == "CPU":
        assert r.json()["dtype"] == "fp32"
    r = cli("bench", "--sizes", "128", "--dtype", "bf16", "--json")
    assert r.code == 0 and r.json()["dtype"] == "bf16", r.err


def test_one_quantity_answers_to_the_training_commands_name(cli) -> None:
    """QA finding: memory --mode train took the micro-batch as --batch and refused --micro-batch (train-step's name),
    and --mode finetune took the CUDA context as --cuda-context-gib and refused --reserve-gib (--mode train's name).
    Both spellings now give the same bytes; giving the two names of one quantity at once is refused."""
    job = ("memory", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--json")
    a = cli(*job, "--mode", "train", "--micro-batch", "2").json()["per_gpu_bytes"]
    b = cli(*job, "--mode", "train", "--batch", "2").json()["per_gpu_bytes"]
    step = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--micro-batch", "2",
               "--global-batch", "16", "--json").json()["memory_per_gpu_bytes"]
    assert a == b == step
    base = cli(*job, "--mode", "finetune").json()["per_gpu_bytes"]
    r3 = cli(*job, "--mode", "finetune", "--reserve-gib", "3").json()["per_gpu_bytes"]
    c3 = cli(*job, "--mode", "finetune", "--cuda-context-gib", "3").json()["per_gpu_bytes"]
    assert r3 == c3 == base + int(2.5 * 2**30)  # 3 GiB of context instead of the default 0.5
    both = cli(*job, "--mode", "finetune", "--reserve-gib", "3", "--cuda-context-gib", "2")
    assert both.code == 2 and both.err.startswith("llmcalc: error: --cuda-context-gib"), both.err


@pytest.mark.parametrize(("args", "flag"), [
    (("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T", "--mfu", "0.4",
      "--global-batch-tokens", "4M"), "--global-batch-tokens"),
    (("mfu", "llama3-8b", "--gpu", "h100", "--tokens-per-s", "1e5", "--num-gpus", "64", "--global-batch", "256"),
     "--global-batch"),
    (("memory", "llama3-8b", "--gpu", "h100", "--reserve-gib", "4000"), "--reserve-gib"),
    (("memory", "llama3-8b", "--gpu", ""), "--gpu"),
])
def test_refusals_name_the_flag_the_user_gave(cli, args, flag) -> None:
    """QA findings: each of these named a flag the user had not typed (--global-batch, --tokens, --num-gpus) or, for
    an empty --gpu, answered as if no GPU were given."""
    r = cli(*args)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}:"), r.err


@pytest.mark.parametrize(("args", "flag"), [
    (("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--global-batch", "256",
      "--tp-overlap", "0.5"), "--tp-overlap"),
    (("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--global-batch", "256",
      "--pp-embedding"), "--pp-embedding"),
    (("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--global-batch", "256",
      "--pp-loss"), "--pp-loss"),
    (("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "256", "--ep-overlap-1f1b"),
     "--ep-overlap-1f1b"),
    (("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--max-model-len", "1000"), "--max-model-len"),
])
def test_options_that_change_nothing_here_are_refused(cli, args, flag) -> None:
    """QA findings: accepted with an identical answer (TP overlap at TP 1, the embedding / loss slots at PP 1, the
    combined-1F1B expert overlap on a dense model, an engine limit latency never read), where their neighbours
    (--cp-comm at CP 1, --pp-p2p-overlap at PP 1, --ep-overlap on a dense model) were refused."""
    r = cli(*args)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}:"), r.err


@pytest.mark.parametrize(("args", "flag"), [  # --dtype fp32 changes the bytes (tests/test_pass19_vocabulary.py)
    (("--dtype", "fp16"), "--dtype"),
    (("--fp8-recipe", "mxfp8"), "--fp8-recipe"),
])
def test_memory_train_refuses_dtypes_that_change_no_byte(cli, args, flag) -> None:
    """QA finding: memory --mode train gave the same bytes for --dtype bf16, fp16, fp32 and tf32 (its bytes follow
    --recipe) and accepted --fp8-recipe without fp8 GEMMs, which train-step refuses."""
    r = cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "train", "--num-gpus", "8", "--zero", "1", *args)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}:"), r.err
    fp8 = cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "train", "--num-gpus", "8", "--zero", "1", "--dtype", "fp8",
              "--json")
    assert fp8.code == 0, fp8.err  # fp8 GEMM inputs are saved in fp8: a different answer, accepted


def test_optimizer_in_backward_is_a_full_finetune_option(cli) -> None:
    """QA finding: --optimizer-in-backward with the default LoRA gave an identical answer (it frees full gradients,
    which an adapter run does not hold; torchtune offers it in its full-finetune recipes): refused there."""
    r = cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--optimizer-in-backward")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --optimizer-in-backward:"), r.err
    job = ("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--method", "full", "--seq", "512", "--json")
    full, oib = cli(*job).json(), cli(*job, "--optimizer-in-backward").json()
    assert oib["per_gpu_bytes"] < full["per_gpu_bytes"]  # a short sequence: the gradients set the peak


@pytest.mark.parametrize("cmd", [("report", "llama3-8b", "--gpu", "h100"), ("memory", "llama3-8b", "--gpu", "h100")])
def test_no_compile_is_refused_where_compile_is(cli, cmd) -> None:
    """QA finding: --compile was refused where it changes nothing (report, memory --mode infer) but --no-compile,
    the same tri-state option's other value, was accepted silently."""
    for flag in ("--compile", "--no-compile"):
        r = cli(*cmd, flag)
        assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}:"), r.err


def test_the_workload_has_one_default_in_every_serving_command(cli) -> None:
    """QA finding: --prompt was required in latency and serve but defaulted to 1,024 in compare and report. Every
    serving command now takes the same default request, 1,024 prompt + 256 output tokens."""
    for cmd in (("latency", "llama3-8b", "--gpu", "h100"), ("serve", "llama3-8b", "--gpu", "h100", "--rate", "5")):
        r = cli(*cmd, "--json")
        assert r.code == 0, r.err
        assert (r.json()["prompt"], r.json()["output"]) == (1024, 256)
