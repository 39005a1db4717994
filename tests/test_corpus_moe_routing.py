"""A training row's MoE routing (benchmarks/corpus_predict.moe_routing_of): the Megatron-Bridge performance pages'
footnote ("MoE benchmarks force-balance tokens among experts and are token-dropless") reaches the engine as
Efficiencies.moe_routing "force-balanced" (calc.hardware.moe_ops.force_balanced_load_cv: a binomial expert load), where
a row that says nothing keeps the engine's default aux-loss spread (CV 0.3)."""

from __future__ import annotations

import math

import pytest


def test_the_first_word_names_the_routing_and_an_unknown_one_is_refused() -> None:
    import corpus_predict as cp

    assert cp.moe_routing_of({}) == "aux-loss"
    assert cp.moe_routing_of({"moe_routing": "force-balanced, token-dropless"}) == "force-balanced"
    assert cp.moe_routing_of({"moe_routing": "token-drop"}) == "token-drop"
    with pytest.raises(cp.CannotPredict, match="moe_routing"):
        cp.moe_routing_of({"moe_routing": "sinkhorn"})


def test_a_force_balanced_row_waits_for_a_binomial_straggler_not_the_assumed_spread() -> None:
    """Qwen3-30B-A3B (128 experts, top 8) at EP 8, 8,192 tokens per micro-batch on a rank (MBS 2 x 4,096): the
    busiest rank's factor 1 + cv / sqrt(E/EP) x sqrt(2 ln EP) with cv = sqrt((1 - 8/128) / mu), mu = 8,192 x 8 x 8 /
    128 = 4,096 tokens per expert -> cv = 0.01513, against the assumed aux-loss cv 0.3; sqrt(2 ln 8) / sqrt(16) = 0.50984:
    factor 1.00771 vs 1.15295."""
    from calc.sources.catalog import load_gpu, load_model, load_system
    from calc.training.cost import Efficiencies, ModelCost

    def factor(routing: str) -> float:
        cost = ModelCost(load_model("qwen3-30b-a3b"), load_gpu("h100-sxm"), load_system("dgx-h100"), 4096, "bf16",
                         Efficiencies(moe_routing=routing))
        return cost.ep_imbalance(8, tokens=8192)

    per_rank = 128 / 8
    spread = math.sqrt(2 * math.log(8)) / math.sqrt(per_rank)
    assert factor("aux-loss") == pytest.approx(1 + 0.3 * spread, rel=1e-9)
    assert factor("force-balanced") == pytest.approx(1 + math.sqrt((1 - 8 / 128) / 4096) * spread, rel=1e-6)
    assert factor("aux-loss") == pytest.approx(1.15295, abs=1e-5)
    assert factor("force-balanced") == pytest.approx(1.00771, abs=1e-5)


def test_a_bridge_row_is_priced_with_its_stated_routing() -> None:
    """The same Bridge MoE row said aux-loss (the knob dropped) predicts a longer step, so fewer tokens/s."""
    import corpus_predict as cp
    import corpus_schema as cs

    row = {r.id: r for r, _g, _s in cs.load_corpus()}["bridge-25.11-pretrain-qwen3-30b-a3b-h100-sxm-16-fp8-cs"]
    assert row.assumed["moe_routing"].value.startswith("force-balanced")
    plain = row.model_copy(update={"assumed": {k: v for k, v in row.assumed.items() if k != "moe_routing"}})
    assert cp.predict(row) > cp.predict(plain)  # tokens/s
