"""MoE routing modes of the step model (calc.hardware.moe_ops.MOE_ROUTINGS, ModelCost.ep_imbalance): the load spread
the most-loaded EP rank waits for under learned aux-loss routing, Megatron's force-balanced benchmark routing (random
top-k logits) and token drop padded to capacity, each checked against a figure worked out by hand."""

from __future__ import annotations

import math

import pytest

from calc.errors import LLMCalcError
from calc.hardware.moe_ops import force_balanced_load_cv
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost

# Qwen3-30B-A3B (config.json): 128 experts, top-8, hidden 2048; one micro-batch of 4096 tokens per rank, EP 8, TP 1
TOKENS, EP = 4096, 8


def _qwen30b(routing: str) -> ModelCost:
    return ModelCost(load_model("qwen3-30b-a3b"), load_gpu("b200"), load_system("dgx-b200"), TOKENS, "bf16",
                     Efficiencies(moe_routing=routing))


def test_force_balanced_cv_is_binomial() -> None:
    # an expert is picked by each token with probability k/E = 8/128 = 1/16; over 2048 expected picks the load is
    # binomial: variance 2048 x (1 - 1/16) = 1920, sd 43.82, cv 43.82 / 2048 = 0.021395
    assert force_balanced_load_cv(2048, 128, 8) == pytest.approx(math.sqrt(1920) / 2048, rel=1e-12)
    assert force_balanced_load_cv(2048, 128, 8) == pytest.approx(0.021395, abs=1e-6)
    assert force_balanced_load_cv(256, 256, 256) == 0.0  # every token picks every expert: no spread


def test_imbalance_by_routing() -> None:
    # 16 experts per EP rank; the expected maximum over 8 ranks of a load with cv_rank: 1 + cv_rank x sqrt(2 ln 8),
    # sqrt(2 ln 8) = 2.039334
    z = 2.039334
    # aux-loss: the assumed expert cv 0.3, a rank's cv 0.3 / sqrt(16) = 0.075 -> 1 + 0.075 x 2.039334 = 1.152950
    assert _qwen30b("aux-loss").ep_imbalance(EP, TOKENS) == pytest.approx(1 + 0.075 * z, rel=1e-6)
    assert _qwen30b("aux-loss").ep_imbalance(EP, TOKENS) == pytest.approx(1.152950, rel=1e-6)
    # force-balanced: an expert receives 4096 x 8 ranks x 8 / 128 = 2048 tokens, cv 0.021395 (above), a rank's
    # 0.021395 / 4 = 0.0053488 -> 1.010908
    assert _qwen30b("force-balanced").ep_imbalance(EP, TOKENS) == pytest.approx(1.010908, rel=1e-6)
    # token drop padded to capacity: every expert processes exactly its capacity
    assert _qwen30b("token-drop").ep_imbalance(EP, TOKENS) == 1.0


def test_routing_sets_the_all_to_all_bytes() -> None:
    # one dispatch of T k cf H bf16 = 4096 x 8 x 1 x 2048 x 2 B = 134,217,728 B, times the imbalance
    balanced = 4096 * 8 * 2048 * 2
    assert balanced == 134_217_728
    assert _qwen30b("token-drop").ep_routed_bytes(TOKENS, EP) == pytest.approx(balanced, rel=1e-12)
    assert _qwen30b("force-balanced").ep_routed_bytes(TOKENS, EP) == pytest.approx(balanced * 1.010908, rel=1e-6)
    assert _qwen30b("aux-loss").ep_routed_bytes(TOKENS, EP) == pytest.approx(balanced * 1.152950, rel=1e-6)


def test_routing_moves_the_slowest_ranks_expert_gemm_tokens() -> None:
    # routed experts of the MoE layer: 16 local, each fed 4096 x 8 x 8 / 128 = 2048 tokens x the imbalance
    def expert_rows(routing: str) -> float:
        cost = _qwen30b(routing)
        gemms = cost.layer_gemms(0, 1, 1, 1, EP, 1)
        return next(g[1] for g in gemms if g[0].startswith("experts.") and g[4] == 16)

    assert expert_rows("token-drop") == pytest.approx(2048, rel=1e-12)
    assert expert_rows("force-balanced") == pytest.approx(2048 * 1.010908, rel=1e-6)


def test_unknown_routing_is_refused() -> None:
    with pytest.raises(LLMCalcError, match="--moe-routing"):
        _qwen30b("random")


def test_cli_routing_flag(cli) -> None:
    args = ("train-step", "qwen3-30b-a3b", "--gpu", "b200", "--num-gpus", "8", "--seq", "4096", "--global-batch", "64",
            "--ep", "8", "--micro-batch", "1", "--explain")
    r = cli(*args, "--moe-routing", "force-balanced")
    assert r.code == 0, r.err
    assert "imbalance 1.011 (most-loaded EP rank, force-balanced routing)" in r.out
    dense = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--seq", "4096", "--global-batch", "64",
                "--moe-routing", "token-drop")
    assert dense.code == 2 and dense.err.strip().count("\n") == 0 and "--moe-routing" in dense.err


def test_train_time_takes_the_routing_of_its_plan(cli) -> None:
    """--moe-routing in train-time is train-plan's option: the days come from the best plan's MFU under the same
    routing (days x MFU fixed: the same FLOPs), printed by --explain; refused with --mfu (no plan) and for a dense
    model, one line each."""
    run = ("qwen3-30b-a3b", "--gpu", "b200", "--num-gpus", "8", "--seq", "4096")
    pins = ("--ep", "8", "--micro-batch", "1", "--host-op-us", "0")  # the GPU, not the host, sets the pace
    times = {r: cli("train-time", *run, "--tokens", "100B", "--global-batch", "64", *pins, "--moe-routing", r, "--json").json()
             for r in ("aux-loss", "token-drop")}
    plan = cli("train-plan", *run, "--global-batch", "64", *pins, "--moe-routing", "token-drop", "--top", "1",
               "--json").json()["plans"][0]
    assert times["token-drop"]["plan"] == plan["layout"] and times["token-drop"]["mfu"] == pytest.approx(plan["mfu"])
    # no load spread under token-drop: the busiest EP rank waits for no more than the mean, so the step is shorter
    assert times["token-drop"]["mfu"] > times["aux-loss"]["mfu"]
    assert times["token-drop"]["days"] * times["token-drop"]["mfu"] == pytest.approx(
        times["aux-loss"]["days"] * times["aux-loss"]["mfu"])
    explained = cli("train-time", *run, "--tokens", "100B", "--global-batch", "64", *pins, "--moe-routing", "token-drop",
                    "--explain").out
    assert "MoE routing token-drop" in " ".join(explained.split())
    r = cli("train-time", *run, "--tokens", "100B", "--mfu", "0.4", "--moe-routing", "token-drop")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --moe-routing:") and r.err.count("\n") == 1
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "100B", "--moe-routing", "token-drop")
    assert r.code == 2 and r.err.strip() == "llmcalc: error: --moe-routing: llama3-8b has no experts"


@pytest.mark.parametrize(("flag", "value"), [("--moe-routing", "token-drop"), ("--dispatcher", "deepep")])
def test_ep_options_refused_without_expert_parallelism(cli, flag: str, value: str) -> None:
    """train-step at --ep 1 (the default): every rank holds all experts, so neither the busiest EP rank's load nor the
    EP token exchange exists; the option would change nothing and is refused in one line. At --ep 2 it is taken."""
    args = ("train-step", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "32", "--tp", "4", "--pp", "4", "--zero", "1",
            "--global-batch", "64", "--seq", "4096")
    r = cli(*args, flag, value)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}:") and "--ep 1" in r.err and r.err.count("\n") == 1
    assert cli(*args, "--ep", "2", flag, value).code == 0
