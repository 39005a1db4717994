"""TP communication overlap (calc.training.cost.Efficiencies.resolved_tp_overlap): Megatron-class stacks hide the
overlap efficiency's share of the TP all-gathers / reduce-scatters with TP >= 2 and sequence parallelism (NeMo 2 /
Megatron-Bridge recipes: Transformer Engine userbuffers), not under LoRA and not without SP (their callbacks switch it
off); other stacks expose them; --tp-overlap sets the share."""

from __future__ import annotations

import pytest

from calc.hardware.efficiency import OVERLAP_EFFICIENCY
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.adapters import Lora
from calc.training.cost import Efficiencies, ModelCost
from calc.training.layout import Layout
from calc.training.step import step_terms


def _terms(eff: Efficiencies, layout: Layout, lora: Lora | None = None):
    cost = ModelCost(load_model("llama3-70b"), load_gpu("h100-sxm"), load_system("dgx-h100"), 8192, "bf16", eff, lora=lora)
    return step_terms(cost, layout, 8, 8)


TP4_SP = Layout(tp=4, pp=1, dp=1, sp=True)  # one stage: the step is m x the micro-batch, no bubble


def test_megatron_hides_the_overlap_share_of_the_tp_collectives() -> None:
    """Exposed TP seconds = (1 - 0.85) x the TP collectives' seconds, which the overlap leaves unchanged; the step
    is shorter by exactly the hidden 0.85 share (no other term reads the share, the host-launch check aside)."""
    on = _terms(Efficiencies(), TP4_SP)
    off = _terms(Efficiencies(tp_overlap=0.0), TP4_SP)
    assert OVERLAP_EFFICIENCY == 0.85
    assert off.totals["tp_comm_s"] > 0
    assert on.totals["tp_comm_s"] == pytest.approx(off.totals["tp_comm_s"], rel=1e-12)
    assert on.exposed["tp_comm_s"] == pytest.approx(0.15 * off.totals["tp_comm_s"], rel=1e-9)
    assert off.exposed["tp_comm_s"] == pytest.approx(off.totals["tp_comm_s"], rel=1e-12)
    assert off.step_time_s - on.step_time_s == pytest.approx(0.85 * off.exposed["tp_comm_s"], rel=1e-6)


@pytest.mark.parametrize("eff, layout, lora", [
    (Efficiencies(stack="fsdp"), TP4_SP, None),  # torchtitan: async TP is off unless asked
    (Efficiencies(), Layout(tp=4, pp=1, dp=1, sp=False), None),  # the callbacks need sequence parallelism
    (Efficiencies(), TP4_SP, Lora.of(16, "all")),  # NeMo's PEFT recipes pass tp_comm_overlap=False
])
def test_where_the_recipes_run_no_tp_overlap_the_collectives_are_exposed(eff, layout, lora) -> None:
    t = _terms(eff, layout, lora)
    assert t.totals["tp_comm_s"] > 0
    assert t.exposed["tp_comm_s"] == pytest.approx(t.totals["tp_comm_s"], rel=1e-12)


def test_a_given_share_overrides_every_stack() -> None:
    t = _terms(Efficiencies(stack="fsdp", tp_overlap=0.5), TP4_SP)
    assert t.exposed["tp_comm_s"] == pytest.approx(0.5 * t.totals["tp_comm_s"], rel=1e-9)


def test_corpus_rows_say_whether_tp_overlap_ran() -> None:
    """tp_comm_overlap knob (TE userbuffers): on = the overlap share, off = 0, absent = the stack's default (a NeMo DGX
    Cloud 70B TP4 row runs it: the same row said off predicts a longer step); torchtitan's async TP is not read."""
    import corpus_predict as cp
    import corpus_schema as cs

    assert cp.tp_overlap_of({"tp_comm_overlap": True}) == OVERLAP_EFFICIENCY
    assert cp.tp_overlap_of({"tp_comm_overlap": False}) == 0.0
    assert cp.tp_overlap_of({}) is None and cp.tp_overlap_of({"async_tp": True}) is None
    row = {r.id: r for r, _g, _s in cs.load_corpus()}["dgxc-25.04-llama3.1-70b-bf16-h100-64"]
    assert row.config["tp"] == 4 and "tp_comm_overlap" not in row.config
    off = row.model_copy(update={"config": {**row.config, "tp_comm_overlap": False}})
    assert cp.predict(off) > cp.predict(row)  # step seconds


def test_explain_names_the_share_and_the_flag_changes_it(cli) -> None:
    args = ["train-step", "llama3-70b", "--gpu", "h100", "--seq", "8K", "--tp", "4", "--pp", "2", "--sp",
            "--zero", "1", "--recompute", "full", "--global-batch", "64", "--num-gpus", "32"]
    default = cli(*args, "--explain")
    assert default.code == 0, default.err
    assert "hidden 85%" in default.out and "userbuffers" in default.out
    assert "hidden 0%" in cli(*args, "--tp-overlap", "0", "--explain").out
    fast, slow = cli(*args, "--json").json(), cli(*args, "--tp-overlap", "0", "--json").json()
    assert fast["step_time_s"] < slow["step_time_s"]
