"""train-step / train-plan on the command line: JSON keys, refusal of plans that do not fit, bad input, plot."""

from __future__ import annotations

import importlib.util

import pytest

from calc.training.step import TERM_KEYS

STEP = ["train-step", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--tp", "8", "--pp", "2", "--sp",
        "--global-batch", "256", "--seq", "8192", "--zero", "1", "--recompute", "full"]


def test_train_step_json_keys_and_consistency(cli) -> None:
    r = cli(*STEP, "--json")
    assert r.code == 0, r.err
    data = r.json()
    required = {"step_time_s", "mfu", "hfu", "tokens_per_s", "memory_per_gpu_bytes", "fits", *TERM_KEYS}
    assert required <= data.keys()
    assert data["fits"] is True and data["dp"] == 4 and data["num_microbatches"] == 64  # 256 / (4 x 1)
    assert sum(data[k] for k in TERM_KEYS) == pytest.approx(data["step_time_s"])
    # tokens/s = B x s / step = 256 x 8192 / step
    assert data["tokens_per_s"] == pytest.approx(256 * 8192 / data["step_time_s"])
    assert data["hfu"] > data["mfu"]  # full recomputation adds a forward of the layers


def test_train_step_text_and_explain(cli) -> None:
    r = cli(*STEP, "--explain")
    assert r.code == 0, r.err
    assert "Step time by term" in r.out and "pp_bubble_s = (p-1)/v x t_mb = (2-1)/1" in r.out
    assert "assumption: collective efficiency 80%" in r.out


def test_train_step_that_does_not_fit_is_refused(cli) -> None:
    args = ["train-step", "llama3-70b", "--gpu", "h100", "--num-gpus", "8", "--tp", "8", "--global-batch", "8", "--seq", "8192"]
    r = cli(*args)
    # the page (memory per GPU, red verdict) on stdout, one error line on stderr, exit 2: as with --json
    assert r.code == 2 and "does not fit" in r.out and "Step time by term" not in r.out
    assert r.err.startswith("llmcalc: error: --num-gpus: does not fit: needs ") and "GiB per GPU" in r.err
    assert len(r.err.strip().splitlines()) == 1
    j = cli(*args, "--json")
    assert j.code == 2 and j.json()["fits"] is False and j.err == r.err
    data = cli(*args, "--json").json()
    assert data["fits"] is False and data["step_time_s"] is None and data["memory_per_gpu_bytes"] > data["gpu_memory_bytes"]


@pytest.mark.parametrize(("args", "flag"), [
    (["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--ep", "2", "--global-batch", "8"], "--ep"),
    (["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--pp", "2", "--vpp", "3", "--global-batch", "4"], "--vpp"),
    # qa: --vpp without pipeline parallelism changed nothing (8.149 s either way); now refused
    (["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--vpp", "2", "--global-batch", "64"], "--vpp"),
    (["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "12"], "--global-batch"),
    (["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "8", "--system", "dgx-a100"], "--system"),
    (["train-plan", "llama3-8b", "--gpu", "h100", "--global-batch", "8"], "--num-gpus"),
    (["train-plan", "llama3-8b", "--gpu", "t4", "--num-gpus", "8", "--global-batch", "8"], "--system"),
    (["train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "64", "--tp", "3"], "--tp"),
    (["train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "64", "--tp", "16"], "--tp"),
    (["train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "64", "--micro-batch", "3"],
     "--global-batch"),
    (["train-plan", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "64", "--ep", "3"], "--ep"),
    (["train-time", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--tp", "8", "--mfu", "0.4"], "--tp"),
])
def test_bad_input_is_one_line(cli, args: list[str], flag: str) -> None:
    r = cli(*args)
    assert r.code == 2, r.out
    assert r.err.startswith(f"llmcalc: error: {flag}:"), r.err


def test_train_plan_json_lists_plans_with_step_keys(cli) -> None:
    r = cli("train-plan", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "512", "--seq", "4096", "--json")
    assert r.code == 0, r.err
    data = r.json()
    plans = data["plans"]
    assert 1 <= len(plans) <= 10
    for p in plans:
        assert {"tp", "pp", "dp", "cp", "ep", "zero", "recompute", "step_time_s", "mfu", "fits"} <= p.keys()
        assert p["fits"] is True
    assert [p["step_time_s"] for p in plans] == sorted(p["step_time_s"] for p in plans)
    # EP plans are searched and listed: with 8 experts an EP rank holds one, so the most-loaded rank's imbalance
    # (calc.training.cost ep_imbalance) can rank TP ahead; asked for, every listed plan carries EP 2
    r = cli("train-plan", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "512", "--seq", "4096",
            "--ep", "2", "--json")
    assert r.code == 0, r.err
    assert r.json()["plans"] and all(p["ep"] == 2 and p["fits"] for p in r.json()["plans"])


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib (the plot extra) is not installed")
def test_train_plan_plot(cli, tmp_path) -> None:
    target = tmp_path / "plans.png"
    r = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "16", "--global-batch", "64", "--seq", "4096",
            "--top", "4", "--plot", str(target))
    assert r.code == 0, r.err
    assert target.stat().st_size > 1000 and target.read_bytes()[:4] == b"\x89PNG"


def test_train_time_uses_the_best_plan_unless_mfu_is_given(cli) -> None:
    args = ["train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "2T", "--seq", "4096"]
    predicted = cli(*args, "--json").json()
    plan = cli("train-plan", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--seq", "4096",
               "--global-batch", "1024", "--top", "1", "--json").json()["plans"][0]  # default batch: 4M tokens / 4096
    assert predicted["plan"] == plan["layout"] and predicted["mfu"] == pytest.approx(plan["mfu"])
    assert predicted["mfu_source"].startswith("predicted for")
    # days = FLOPs / (N x peak x MFU): the same FLOPs at a different MFU scale the days inversely
    assumed = cli(*args, "--mfu", "0.4", "--json").json()
    assert assumed["plan"] is None and assumed["mfu"] == 0.4
    assert assumed["days"] * 0.4 == pytest.approx(predicted["days"] * predicted["mfu"])
    r = cli(*args, "--mfu", "0.4", "--global-batch", "512")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --global-batch:")


def test_pinned_degrees_reach_train_time_and_train_plan(cli) -> None:
    t = cli("train-time", "llama3-70b", "--gpu", "h100", "--num-gpus", "1024", "--tokens", "15T", "--seq", "8192",
            "--tp", "8", "--pp", "4", "--recompute", "full", "--json").json()
    assert t["plan"].startswith("TP8 PP4") and "rc:full" in t["plan"]
    p = cli("train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "64", "--seq", "8192",
            "--recompute", "full", "--zero", "1", "--json").json()
    assert p["plans"] and all(x["recompute"] == "full" and x["zero"] == 1 for x in p["plans"])


def test_gpu_without_a_node_type_keeps_the_assumed_mfu(cli) -> None:
    r = cli("train-time", "llama2-7b", "--gpu", "t4", "--num-gpus", "64", "--tokens", "10B", "--seq", "2048",
            "--dtype", "fp16", "--json")
    assert r.code == 0 and "no node type ships for t4" in r.err
    assert r.json()["mfu"] == 0.4 and r.json()["plan"] is None


def test_train_step_activation_models(cli) -> None:
    # Meta's 405B layout (Llama 3 paper table 4) on 16,384 GPUs: rank 1 of the uneven split holds 15 micro-batches of
    # 8 layers (tests/test_training_memory.py): per-tensor 120 x 533,209,088 + workspace 436,207,616 B = 60.00 GiB,
    # Korthikanti's GPT formula 120 x 34 sbh/t = 63.75 GiB (the embedding's mask is rank 0's); --explain prints both,
    # --activations picks one
    meta = ["train-step", "llama3.1-405b", "--gpu", "h100", "--num-gpus", "16384", "--tp", "8", "--pp", "16", "--sp",
            "--global-batch", "2048", "--seq", "8192", "--zero", "1"]
    r = cli(*meta, "--explain")
    assert r.code == 0, r.err
    flat = " ".join(r.out.split())
    assert "activations per-tensor 60.00 GiB vs textbook (Korthikanti 2022) 63.75 GiB, per-tensor used" in flat
    textbook = cli(*meta, "--activations", "textbook", "--json")
    assert textbook.code == 0, textbook.err
    assert textbook.json()["memory_per_gpu_bytes"] - cli(*meta, "--json").json()["memory_per_gpu_bytes"] \
        == 68_451_041_280 - 64_421_298_176
    assert cli(*meta, "--activations", "guess").code == 2
