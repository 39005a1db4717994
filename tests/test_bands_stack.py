"""The unseen-stack rule of the bands reaches every banded result (issue 23): train-step, train-plan and train-time
results name their training stack, latency results their engine, so a figure whose band group holds no rows of
that stack or engine family takes its pool's band (calc.bands.band).

The band table is built by hand here (small and synthetic), so every expected band follows from calc/bands.py's
documented rule on these numbers: a time p lies in [p exp(-q90), p exp(-q10)], a rate in [p exp(q10), p exp(q90)].
"""

from __future__ import annotations

import math

import pytest

GROUP = {"q10": -0.1, "q90": 0.2, "rows": 20}  # the band group's own residual quantiles
POOL = {"q10": -0.3, "q90": 0.4, "rows": 60}  # its pool, over all generations: visibly different
TRAIN = ("train-step", "llama3-8b", "--gpu", "h100", "--global-batch", "32", "--num-gpus", "8", "--zero", "3")
LATENCY = ("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1024")


@pytest.fixture
def table(monkeypatch):
    """Use a band table holding one group (with the stacks given) and its pool in place of the shipped one."""
    def use(group: str, pool: str, stacks: list[str]) -> None:
        from calc import bands
        from calc.report import confidence

        data = {"level": 0.8, "min_rows": 8, "min_sources": 2, "max_half_width": 1.0,
                "wide_default": {"q10": -math.log(2), "q90": math.log(2)},
                "groups": {group: {**GROUP, "stacks": stacks}}, "pools": {pool: POOL}, "families": {}}
        monkeypatch.setattr(bands, "fitted", lambda: {"bands": data})
        monkeypatch.setattr(confidence, "fitted", lambda: {"bands": data})
    return use


def _time_band(p: float, q: dict) -> tuple[float, float]:
    return p * math.exp(-q["q90"]), p * math.exp(-q["q10"])


@pytest.mark.parametrize(("stacks", "q"), [(["fsdp", "megatron"], GROUP), (["megatron", "deepspeed"], POOL)],
                         ids=["group holds fsdp rows", "group holds none"])
def test_a_training_figure_takes_its_group_band_only_where_the_group_holds_its_stack(cli, table, stacks, q) -> None:
    table("training|Hopper|16-bit|dense", "training", stacks)
    data = cli(*TRAIN, "--stack", "fsdp", "--json").json()
    assert data["stack"] == "fsdp"
    b = data["bands"]["step_time_s"]
    assert (b["low"], b["high"], b["rows"]) == (*map(pytest.approx, _time_band(data["step_time_s"], q)), q["rows"])
    mfu = data["bands"]["mfu"]  # a rate: [p exp(q10), p exp(q90)]
    assert (mfu["low"], mfu["high"]) == (pytest.approx(data["mfu"] * math.exp(q["q10"])),
                                         pytest.approx(data["mfu"] * math.exp(q["q90"])))
    if q is POOL:
        assert b["group"] == "training (all generations: training|Hopper|16-bit|dense holds no fsdp rows)"
    else:
        assert b["group"] == "training|Hopper|16-bit|dense"


def test_without_stack_a_training_figure_is_banded_as_megatron(cli, table) -> None:
    """No --stack: the step model runs as Megatron (calc.training.stack.REFERENCE_STACK), and so does its band."""
    table("training|Hopper|16-bit|dense", "training", ["fsdp"])
    data = cli(*TRAIN, "--json").json()
    assert data["stack"] == "megatron"
    assert data["bands"]["step_time_s"]["group"].endswith("holds no megatron rows)")
    table("training|Hopper|16-bit|dense", "training", ["megatron"])
    assert cli(*TRAIN, "--json").json()["bands"]["step_time_s"]["group"] == "training|Hopper|16-bit|dense"


def test_train_plan_and_train_time_carry_the_stack_of_their_plan(cli, table) -> None:
    table("training|Hopper|16-bit|dense", "training", ["fsdp"])
    plan = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "32", "--top", "1",
               "--stack", "fsdp", "--json").json()["plans"][0]
    assert plan["stack"] == "fsdp" and plan["bands"]["step_time_s"]["group"] == "training|Hopper|16-bit|dense"
    time = cli("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T", "--json").json()
    assert time["stack"] == "megatron"  # train-time sizes its plan with the default stack
    assert time["bands"]["days"]["group"].endswith("holds no megatron rows)")
    assert time["bands"]["days"]["rows"] == POOL["rows"]
    assumed = cli("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T", "--mfu", "0.4",
                  "--json").json()
    assert assumed["stack"] is None  # no plan, no stack: an assumed MFU gets the stated default, not a corpus band


@pytest.mark.parametrize(("engine", "stacks", "q"), [
    ("sglang", ["sglang", "vllm"], GROUP), ("sglang", ["vllm"], POOL), ("vllm-v0", ["vllm"], GROUP)],
    ids=["group holds sglang rows", "group holds none", "vLLM V0 is the vllm family"])
def test_a_latency_figure_takes_its_group_band_only_where_the_group_holds_its_engine(cli, table, engine, stacks, q) -> None:
    table("serving_decode|Hopper|16-bit|dense", "serving_decode", stacks)
    data = cli(*LATENCY, "--engine", engine, "--json").json()
    assert data["engine"] == engine
    for key in ("tpot_s", "e2e_s"):
        b = data["bands"][key]
        assert (b["low"], b["high"], b["rows"]) == (*map(pytest.approx, _time_band(data[key], q)), q["rows"])
    family = {"vllm-v0": "vllm"}.get(engine, engine)
    assert data["bands"]["tpot_s"]["group"] == ("serving_decode|Hopper|16-bit|dense" if q is GROUP else
                                                f"serving_decode (all generations: serving_decode|Hopper|16-bit|dense "
                                                f"holds no {family} rows)")


def test_explain_names_the_stack_or_engine_a_band_was_read_for(cli, table) -> None:
    table("training|Hopper|16-bit|dense", "training", ["megatron"])
    out = " ".join(cli(*TRAIN, "--stack", "fsdp", "--explain").out.split())
    assert ("band of step_time_s: 80% band" in out and "training (all generations: training|Hopper|16-bit|dense holds "
            "no fsdp rows); read for stack fsdp" in out)
    assert "; read for stack megatron" in " ".join(cli(*TRAIN, "--explain").out.split())
    out = " ".join(cli(*LATENCY, "--engine", "sglang", "--explain").out.split())
    assert "band of tpot_s: 80% band" in out and "; read for engine sglang" in out


def test_the_stack_key_is_the_one_a_corpus_row_of_that_framework_carries() -> None:
    """benchmarks/fit_corpus.row_stack keys a training row by the named stack it runs as (calc.training.stack.ALIASES:
    torchtitan and torchtune run FSDP, NeMo runs Megatron), an unknown framework by its own name in lower case."""
    from calc.training.stack import band_stack

    assert [band_stack(s) for s in (None, "torchtitan", "NeMo", "composer", "MaxText")] == \
        ["megatron", "fsdp", "megatron", "llm-foundry", "maxtext"]
