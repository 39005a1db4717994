"""Cross-command identities of the training commands: one quantity, one answer, whichever command prints it."""

from __future__ import annotations

import pytest


def test_report_prices_the_memory_of_the_plan_it_times(cli) -> None:
    """report --mode train times the fastest plan (train-plan's first); its memory page must be that plan's memory,
    the figure train-step prints for the same layout (issue 20: 237.66 GB for another plan beside 79.53 GB)."""
    r = cli("report", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "32", "--mode", "train", "--tokens", "1T", "--json")
    assert r.code == 0, r.err
    page = r.json()
    plan = page["train_time"]["plan"]  # e.g. "TP1 PP1 DP32 EP4 mb1 ZeRO2 rc:none"
    parts = dict((p[:2] if p[:2] in ("TP", "PP", "DP", "EP", "CP") else p[:4], p) for p in plan.split())
    degree = {k: int(v[2:].split("x")[0]) for k, v in parts.items() if k in ("TP", "PP", "DP", "EP", "CP")}
    zero = int(parts["ZeRO"][4:])
    micro = int(next(p for p in plan.split() if p.startswith("mb"))[2:])
    recompute = next(p for p in plan.split() if p.startswith("rc:"))[3:]
    vpp = int(parts["PP"][2:].split("x")[1]) if "x" in parts["PP"] else 1
    args = ["train-step", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "32", "--tp", str(degree["TP"]),
            "--pp", str(degree["PP"]), "--ep", str(degree.get("EP", 1)), "--cp", str(degree.get("CP", 1)),
            "--zero", str(zero), "--micro-batch", str(micro), "--recompute", recompute, "--vpp", str(vpp),
            "--global-batch", "1024", "--seq", "4096", "--json"] + (["--sp"] if plan.endswith(" SP") else [])
    step = cli(*args)
    assert step.code == 0, step.err
    assert page["memory"]["per_gpu_bytes"] == step.json()["memory_per_gpu_bytes"]
    assert page["memory"]["fits"] is True  # the timed plan fits: no "does not fit" above its days


def test_report_memory_equals_train_step_on_a_dense_pipeline_plan() -> None:
    """The same identity through the engines, on a plan with PP and interleaving (in-flight micro-batches
    differ from p): timed_plan_memory(step) == step.memory_per_gpu_bytes."""
    from calc.report.build import timed_plan_memory
    from calc.sources.catalog import load_gpu, load_model, load_system
    from calc.training.cost import ModelCost
    from calc.training.layout import Layout
    from calc.training.step import in_flight_microbatches, train_step

    m, g = load_model("llama3-70b"), load_gpu("h100")
    cost = ModelCost(m, g, load_system("dgx-h100"), 4096)
    layout = Layout(tp=8, pp=4, dp=2, vpp=2, sp=True, micro_batch=1, zero=1, recompute="selective")
    step = train_step(cost, layout, global_batch=16)
    assert timed_plan_memory(m, g, step).per_gpu_bytes == step.memory_per_gpu_bytes
    # 16 / (2 x 1) = 8 micro-batches >= p: interleaved in-flight = p (1 + (p-1)/(p v)) = 4 x (1 + 3/8) = 5.5
    assert in_flight_microbatches(layout, 8) == pytest.approx(5.5)


@pytest.mark.parametrize("args", [
    ("train-step", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "64"),
    ("train-plan", "llama3.1-405b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "8"),
    ("memory", "llama3-8b", "--mode", "train", "--gpu", "h100"),
    ("memory", "llama3-8b", "--mode", "finetune", "--method", "full", "--gpu", "rtx4090"),
    ("report", "llama3-8b", "--mode", "finetune", "--method", "full", "--gpu", "rtx4090"),
])
def test_one_exit_code_per_outcome_whatever_the_format(cli, args) -> None:
    """"Does not fit" / "nothing fits" exits 2 as a table and as JSON (issue 20: train-step --json exited 0), with
    the JSON still on stdout and the same error line on stderr. llama2-7b ZeRO-0 on one H100 holds 16 B x 6.7e9 =
    108 GB of states alone, more than 80 GB; 405B on 8 GPUs: 16 B x 405e9 / 8 = 810 GB each."""
    table, as_json = cli(*args), cli(*args, "--json")
    assert table.code == as_json.code == 2, (table.err, as_json.err)
    assert as_json.json() and table.err == as_json.err and table.err.startswith("llmcalc: error: --num-gpus: ")
    assert len(table.err.strip().splitlines()) == 1


def test_train_plan_nothing_fits_names_what_would() -> None:
    from calc.sources.catalog import load_gpu, load_model, load_system
    from calc.training.cost import ModelCost
    from calc.training.plan import SearchSpace, enumerate_fitting, search_plans

    cost = ModelCost(load_model("llama3-70b"), load_gpu("h100"), load_system("dgx-h100"), 8192)
    pinned = SearchSpace(fixed=(("recompute", "none"), ("zero", 0)))
    r = search_plans(cost, 16, 32, space=pinned)
    # 70B, ZeRO-0 on 16 GPUs: 16 B x 70.6e9 / 16 = 70.6 GB of states per GPU at best (TP x PP = 16), leaving under
    # 10 GB for 8K-token activations of 80 layers without recomputation: nothing fits as pinned
    assert r.plans == [] and r.verdict.startswith("does not fit")
    assert "fits with --recompute full" in r.verdict  # the first relaxation tried, and it fits:
    assert enumerate_fitting(cost, 16, 32, SearchSpace(fixed=(("recompute", "full"), ("zero", 0))))[1]


def test_qlora_70b_on_two_4090s_names_the_change_that_fits(cli) -> None:
    """Answer.AI's FSDP + QLoRA (answer.ai/posts/2024-03-06-fsdp-qlora.html) trained a 70B model on 2 x 24 GB with
    FSDP, gradient checkpointing and CPU offload. Without them it does not fit: each rank holds the whole NF4 base
    (70.6e9 x ~0.52 B = 37 GB > 24 GB). The refusal must name a change, and applying it must fit."""
    args = ("memory", "llama3-70b", "--mode", "finetune", "--method", "qlora", "--gpu", "rtx4090", "--num-gpus", "2")
    r = cli(*args)
    assert r.code == 2 and "fits with --" in r.err, r.err
    change = r.err.split("fits with ")[1].split(" (")[0]
    assert "--zero 3" in change and "--recompute full" in change  # FSDP full shard + checkpointing, as the recipe
    fixed = cli(*args, *change.split(), "--json")
    assert fixed.code == 0 and fixed.json()["fits"] is True
    assert fixed.json()["per_gpu_bytes"] < 24 * 2**30


def _calibration_file(path, dtype: str = "fp8") -> str:
    from calc.hardware.calibration import Calibration, OpPoint, Roofline, save_calibration

    save_calibration(Calibration(
        gpu="h100-sxm", device_name="NVIDIA H100 80GB HBM3", is_gpu=True, dtype=dtype, date="2026-11-23",
        torch_version="2.13.0", cuda_version="12.8", roofline=Roofline(peak_tflops=1979, peak_gb_s=3350, source="datasheet"),
        ops={"gemm": [OpPoint(size=1e11, measured_s=1e-3, efficiency=0.6)],
             "memory": [OpPoint(size=1e9, measured_s=1e-3, efficiency=0.8)]}), str(path))
    return str(path)


@pytest.mark.parametrize("args", [
    ("train-step", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "64", "--zero", "1"),
    ("train-plan", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "64"),
    ("train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T"),
    ("latency", "llama2-7b", "--gpu", "h100", "--prompt", "512", "--output", "16"),
])
def test_an_fp8_calibration_is_refused_for_a_bf16_plan_by_every_command(cli, tmp_path, args) -> None:
    """The H100's fp8 dense peak (1979 TFLOPS) is twice its bf16 one (989): GEMM fractions measured at one are not
    the other's. One check (calc.hardware.calibration.check_calibration), one message, in every command."""
    r = cli(*args, "--calibration", _calibration_file(tmp_path / "fp8.yaml"))
    assert r.code == 2 and r.err.startswith("llmcalc: error: --calibration: measured in fp8; --dtype bf16"), r.err


def test_train_time_refuses_mfu_with_a_calibration(cli, tmp_path) -> None:
    path = _calibration_file(tmp_path / "bf16.yaml", "bf16")
    r = cli("train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T", "--mfu", "0.4",
            "--calibration", path)
    assert r.code == 2 and r.err.startswith("llmcalc: error: --calibration:") and "--mfu" in r.err


def test_train_step_and_train_plan_accept_the_same_layouts() -> None:
    """One validity rule: every layout train-plan times, train-step accepts; a layout train-step refuses (ZeRO-3
    with PP), train-plan never lists, and pinning it is refused with the same message."""
    from calc.errors import LLMCalcError
    from calc.sources.catalog import load_gpu, load_model, load_system
    from calc.training.cost import ModelCost
    from calc.training.layout import Layout, check_training_layout
    from calc.training.plan import SearchSpace, search_plans

    m = load_model("llama2-7b")
    cost = ModelCost(m, load_gpu("h100"), load_system("dgx-h100"), 4096)
    r = search_plans(cost, 16, 64, top=1000)
    assert r.plans
    for p in r.plans:
        layout = Layout(tp=p.tp, pp=p.pp, dp=p.dp, cp=p.cp, ep=p.ep, vpp=p.vpp, sp=p.sp, micro_batch=p.micro_batch,
                        zero=p.zero, recompute=p.recompute)
        assert check_training_layout(m, layout, 16, 64, 4096) == p.num_microbatches
        assert not (p.pp > 1 and p.zero >= 2)
    # PP 2 x VPP 3 on 32 layers: chunks of 16/3 layers, uneven; both commands accept it (documented choice)
    uneven = Layout(pp=2, dp=4, vpp=3, zero=1)
    assert check_training_layout(m, uneven, 8, 64, 4096) == 16
    assert any(p.vpp == 3 for p in search_plans(cost, 8, 64, top=1000, space=SearchSpace(fixed=(("pp", 2),))).plans)
    with pytest.raises(LLMCalcError) as step_error:
        check_training_layout(m, Layout(pp=2, dp=4, zero=3), 8, 64, 4096)
    with pytest.raises(LLMCalcError) as plan_error:
        search_plans(cost, 8, 64, space=SearchSpace(fixed=(("pp", 2), ("zero", 3))))
    assert str(step_error.value) == str(plan_error.value) and step_error.value.field == "--zero"


def test_scale_warnings_batch_in_sequences_and_part_filled_nodes(cli) -> None:
    """16M typed as --global-batch is 16e6 sequences: x 8,192 = 1.31e11 tokens per step, ~2,000x DeepSeek-V3's 63M
    (15,360 x 4,096): warned, once, saying the unit. Llama 3 405B's own 2,048 x 8,192 = 16.8M tokens is not."""
    r = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "32", "--global-batch", "16M", "--seq", "8192",
            "--zero", "1", "--json")  # 32 GPUs: a plan that fits (a refusal prints its error line alone)
    assert r.code == 0, r.err
    lines = [line for line in r.err.splitlines() if "warning: --global-batch" in line]
    assert len(lines) == 1 and "in sequences" in lines[0] and "= 131B tokens per step" in lines[0]  # 1.31e11, written without an exponent
    quiet = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "2048", "--seq", "8192",
                "--zero", "1", "--json")
    assert "warning" not in quiet.err
    # 12 H100s = one DGX (8) + half of another: the last node is part-filled, warned once per command
    for args in (("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "12", "--global-batch", "48"),
                 ("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "12", "--tokens", "1T")):
        err = cli(*args).err
        assert err.count("warning: --num-gpus: 12 is not a multiple of the 8 GPUs per node") == 1, err
