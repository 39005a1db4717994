"""HFU counts the FLOPs the GPUs execute: a causal flash kernel never computes the masked half of the scores, so
train-step's HFU leaves it out (calc.training.step.executed_flops); an unfused kernel computes every score."""

from __future__ import annotations

import pytest

from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost
from calc.training.layout import Layout
from calc.training.step import executed_flops, hfu_flops

S, D, L = 4096, 4096, 32  # llama3-8b: 32 query heads x 128 = 4096 query width, 32 layers


def _masked_forward(s: int = S) -> int:
    """Forward attention FLOPs the full s x s convention counts beyond the causal s(s+1)/2 pairs, by hand:
    QK^T and PV are 2 x pairs x d each per layer: 4 d L (s^2 - s(s+1)/2) = 2 d L s (s - 1)."""
    return 2 * D * L * s * (s - 1)


@pytest.mark.parametrize(("recompute", "forwards"), [("none", 3), ("selective", 4), ("full", 4), ("sac", 3)])
def test_executed_leaves_out_the_masked_scores(recompute: str, forwards: int) -> None:
    # forward + backward (3 forwards' worth), and one more forward when the recomputation repeats attention
    cost = ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), S)
    lay = Layout(dp=8, zero=3, recompute=recompute)
    assert hfu_flops(cost, lay, 2) - executed_flops(cost, lay, 2) == pytest.approx(2 * forwards * _masked_forward(), rel=1e-9)


def test_unfused_attention_executes_every_score() -> None:
    cost = ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), S, eff=Efficiencies(flash=False))
    lay = Layout(dp=8, zero=3, recompute="full")
    assert executed_flops(cost, lay, 2) == hfu_flops(cost, lay, 2)


def test_a_million_token_sequence_has_hfu_under_one(cli) -> None:
    # the QA case: attention is most of the FLOPs; the full convention put HFU at 101% while the kernels ran near 50%
    r = cli("train-step", "qwen3-0.6b", "--gpu", "h200", "--cp", "8", "--seq", "1048576", "--global-batch", "8",
            "--num-gpus", "64", "--recompute", "full", "--zero", "3", "--attention", "fa3", "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert d["mfu_causal"] < d["hfu"] < 1  # executed FLOPs include the recomputed forward
