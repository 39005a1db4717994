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
