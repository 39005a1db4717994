"""--recipe (calc.memory.training.RECIPES): the training states' bytes per parameter, one option for `memory --mode
train`, train-step, train-plan, train-time and report --mode train. bf16-adam-bf16-states is NeMo's SFT / PEFT
optimizer (NeMo-Framework-Launcher 24.07 conf/peft/llama/sft.yaml: distributed_fused_adam, dtype bf16,
grad_sync_dtype bf16): m and v in bf16 (2 + 2 B) and no fp32 master, against bf16-adam's fp32 master + m + v (4 + 4 + 4 B)."""

from __future__ import annotations

import json
from dataclasses import replace

from calc.cli.options import TRAINING_RECIPES
from calc.memory.training import RECIPES
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost
from calc.training.layout import Layout
from calc.training.step import memory_per_gpu


def test_the_cli_names_every_recipe_the_engine_prices() -> None:
    assert set(TRAINING_RECIPES) == set(RECIPES)


def test_bf16_states_are_a_third_of_the_fp32_master_and_moments() -> None:
    cost = ModelCost(load_model("llama2-70b"), load_gpu("h100"), load_system("dgx-h100"), 4096)
    lay = Layout(tp=4, pp=4, dp=1, sp=True, zero=1)
    base = memory_per_gpu(cost, lay, 32)
    nemo = memory_per_gpu(replace(cost, eff=Efficiencies(recipe="bf16-adam-bf16-states")), lay, 32)
    # optimizer 4 B against 12 B per parameter; weights (2 B) and gradients (2 B) as bf16-adam's
    assert abs(nemo["optimizer"] * 3 - base["optimizer"]) <= 3
    assert nemo["weights"] == base["weights"] and nemo["gradients"] == base["gradients"]


def test_train_step_and_memory_price_the_recipe_alike(cli) -> None:
    def _json(args: list[str]) -> dict:
        r = cli(*args)
        assert r.code == 0, r.err
        return json.loads(r.out)

    layout = ["--gpu", "h100", "--num-gpus", "16", "--tp", "4", "--pp", "4", "--seq", "4K", "--sp", "--zero", "1",
              "--global-batch", "32", "--recipe", "bf16-adam-bf16-states"]
    step = _json(["train-step", "llama2-70b", *layout, "--json"])
    mem = _json(["memory", "llama2-70b", "--mode", "train", *layout, "--json"])
    assert step["memory_per_gpu_bytes"] == mem["per_gpu_bytes"]
    # with bf16-adam's 16 B per parameter (4.3e9 parameters per GPU: 64 GiB of states) the same job does not fit
    default = cli("train-step", "llama2-70b", *layout[:-2], "--json")
    assert default.code == 2 and "does not fit" in default.err


def test_an_unknown_recipe_is_one_line_exit_2(cli) -> None:
    r = cli("train-step", "llama2-70b", "--gpu", "h100", "--num-gpus", "16", "--tp", "4", "--pp", "4",
            "--global-batch", "32", "--recipe", "adam16")
    assert r.code == 2
    assert "--recipe" in r.err and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1


def test_train_time_reads_the_recipe_as_train_step_does(cli) -> None:
    # The same pinned layout as above (TP4 PP4 ZeRO-1, no recompute, llama2-70b on 16 H100): bf16-adam's 16 B per
    # parameter (64 GiB of states for 4.3e9 parameters per GPU) leaves no room, NeMo's bf16 states (8 B: 32 GiB) do.
    pins = ["llama2-70b", "--gpu", "h100", "--num-gpus", "16", "--tokens", "100B", "--tp", "4", "--pp", "4", "--zero",
            "1", "--micro-batch", "1", "--recompute", "none", "--global-batch", "32", "--seq", "4K"]
    refused = cli("train-time", *pins)
    assert refused.code == 2 and "does not fit" in refused.err and "--recompute full" in refused.err
    r = cli("train-time", *pins, "--recipe", "bf16-adam-bf16-states", "--json")
    assert r.code == 0, r.err
    assert "rc:none SP" in json.loads(r.out)["plan"]


def test_train_time_refuses_a_recipe_beside_an_assumed_mfu(cli) -> None:
    r = cli("train-time", "llama2-70b", "--gpu", "h100", "--num-gpus", "16", "--tokens", "100B", "--mfu", "0.4",
            "--recipe", "fp32-adam")
    assert r.code == 2 and "--recipe" in r.err and len(r.err.strip().splitlines()) == 1


def test_report_train_prices_the_recipe_as_train_time_and_memory_do(cli) -> None:
    # With an assumed MFU the page is memory --mode train of DP16 ZeRO-1 (it fits a 7B model): the optimizer states are
    # sharded 16 ways, so bf16-adam (fp32 master + m + v, 12 B) against bf16 states (m + v, 4 B) is 8 B x 6,738,415,616
    # parameters (llama2-7b, the HF checkpoint's count) / 16 = 3,369,207,808 B less per GPU.
    small = ["report", "llama2-7b", "--gpu", "h100", "--num-gpus", "16", "--mode", "train"]
    adam = cli(*small, "--mfu", "0.4", "--json").json()["memory"]["per_gpu_bytes"]
    states = cli(*small, "--mfu", "0.4", "--recipe", "bf16-adam-bf16-states", "--json").json()["memory"]["per_gpu_bytes"]
    assert adam - states == 8 * 6_738_415_616 // 16
    page = ["report", "llama2-70b", "--gpu", "h100", "--num-gpus", "16", "--mode", "train"]
    # without --mfu the page times train-time's plan for the same recipe (one search, one answer)
    searched = cli(*page, "--tokens", "1T", "--recipe", "bf16-adam-bf16-states", "--json").json()["train_time"]
    alone = cli("train-time", "llama2-70b", "--gpu", "h100", "--num-gpus", "16", "--tokens", "1T", "--recipe",
                "bf16-adam-bf16-states", "--json").json()
    assert searched["mfu_source"] == alone["mfu_source"] and searched["days"] == alone["days"]
    assert searched["mfu_source"] != cli(*page, "--tokens", "1T", "--json").json()["train_time"]["mfu_source"]


def test_report_refuses_the_recipe_outside_train_mode(cli) -> None:
    for mode in ("infer", "finetune"):
        r = cli("report", "llama2-7b", "--gpu", "h100", "--mode", mode, "--recipe", "fp32-adam")
        assert r.code == 2 and "--recipe" in r.err and len(r.err.strip().splitlines()) == 1
