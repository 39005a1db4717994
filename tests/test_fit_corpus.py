"""The shipped defaults are the fitting procedure's output (benchmarks/fit_corpus.py): re-running the fit gives
calc/data/fitted_defaults.json exactly (its date aside), so a default cannot be edited by hand."""

from __future__ import annotations

import fit_corpus as fc
import pytest

from calc.hardware.efficiency import GEMM_PLATEAU, SUSTAINED_FRACTION
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS


def test_the_fit_reproduces_the_shipped_file() -> None:
    import json

    assert json.loads(json.dumps(fc.run())) == fc.shipped_without_date()


def test_engine_defaults_are_the_files() -> None:
    doc = fc.shipped_without_date()["parameters"]
    assert GEMM_PLATEAU["Ampere"] == doc["gemm_plateau"]["Ampere"]["value"]
    assert SUSTAINED_FRACTION == doc["sustained_fraction"]["all"]["value"]
    assert DEFAULT_ASSUMPTIONS.step_overhead_s == doc["step_overhead_s"]["vllm"]["value"]


def test_adoption_never_reads_held_out_rows() -> None:
    """The fit's rows and its CV folds are fit-split rows only, and a parameter is adopted exactly when its CV error
    beats the prior's (no held-out veto list)."""
    import corpus_schema as cs

    held = {row.id for row, _g, split in cs.load_corpus() if split == "held_out"}
    rows, _ = fc.entries()
    assert held and not held & {e.row.id for e in rows}
    assert not hasattr(fc, "HELD_BACK")
    for values in fc.shipped_without_date()["parameters"].values():
        for e in values.values():
            if "cv_error" in e and e["status"] == "fitted":
                assert e["cv_error"] < e["prior_error"]
            elif "cv_error" in e:  # lost in CV, or ended on the edge of its range (fit_corpus.BOUNDS)
                assert e["cv_error"] >= e["prior_error"] or e["status"].startswith("unfitted: the fit runs to the edge")


def test_a_generation_without_data_keeps_its_prior_and_says_so() -> None:
    entry = fc.shipped_without_date()["parameters"]["gemm_plateau"]["CDNA3/fp8"]
    assert entry["value"] == fc.PRIOR["gemm_plateau"]["CDNA3/fp8"]
    assert entry["status"].startswith("unfitted: no data")


def test_serving_prediction_is_affine_in_the_step_overhead() -> None:
    """The fit's shortcut (three engine calls per plateau) equals a direct engine call at another fixed and
    per-sequence overhead, on a latency row and a max-load throughput row of each engine family (a throughput whose
    batches moved with the step time would not be affine in either)."""
    import corpus_predict as cp

    rows, _ = fc.entries()
    dense = [e for e in rows if "step_overhead_s" in e.keys and "moe_serving_rate" not in e.keys]
    picked = {(e.row.kind == "serving_throughput", e.keys["step_overhead_s"]): e for e in dense}
    assert len(picked) >= 4 and any(kind for kind, _ in picked)
    preds = fc.Predictions()
    for e in picked.values():
        params = {name: dict(v) for name, v in fc.PRIOR.items()}
        params["step_overhead_s"][e.keys["step_overhead_s"]] = 3.7e-3
        params["step_overhead_per_seq_s"][e.keys["step_overhead_per_seq_s"]] = 23e-6
        direct = cp.predict(e.row, {"gemm_plateau": params["gemm_plateau"], "step_overhead_s": 3.7e-3,
                                    "step_overhead_per_seq_s": 23e-6, "moe_serving_rate": params["moe_serving_rate"]})
        assert preds.predict(e, params) == pytest.approx(direct, rel=1e-9)


def test_moe_serving_prediction_is_affine_in_the_overhead_and_the_inverse_rate() -> None:
    """The fit's MoE shortcut (four engine calls per plateau) equals a direct engine call at other (overhead,
    per-sequence overhead, MoE rate) triples, on MoE rows of every kind and engine the fit reads (throughput, TPOT,
    TTFT; vLLM, SGLang, TensorRT-LLM), at both ends of the rate's range: a step whose time were not
    c + o + q B + e / rate (a host-bound eager step, max(forward, launches), would not be) misses by far more than
    the tolerance."""
    import corpus_predict as cp

    rows, _ = fc.entries()
    moe_rows = [e for e in rows if "moe_serving_rate" in e.keys]
    picked = {(e.row.kind, e.keys["step_overhead_s"]): e for e in moe_rows}
    assert len(picked) >= 4
    preds = fc.Predictions()
    for e in picked.values():
        for overhead, per_seq, rate in ((3.7e-3, 0.0, fc.BOUNDS["moe_serving_rate"][0]),
                                        (0.5e-3, 31e-6, fc.BOUNDS["moe_serving_rate"][1])):
            params = {name: dict(v) for name, v in fc.PRIOR.items()}
            params["step_overhead_s"][e.keys["step_overhead_s"]] = overhead
            params["step_overhead_per_seq_s"][e.keys["step_overhead_per_seq_s"]] = per_seq
            params["moe_serving_rate"][e.keys["moe_serving_rate"]] = rate
            direct = cp.predict(e.row, {"gemm_plateau": params["gemm_plateau"], "step_overhead_s": overhead,
                                        "step_overhead_per_seq_s": per_seq, "moe_serving_rate": params["moe_serving_rate"]})
            assert preds.predict(e, params) == pytest.approx(direct, rel=1e-9)


def test_a_source_of_memory_rows_never_moves_the_folds() -> None:
    """folds() deals only groups with a row that depends on a fitted parameter: adding a KV-capacity source (no
    parameter) leaves every other group in its fold."""
    rows, _ = fc.entries()
    memory_only = {e.group for e in rows} - {e.group for e in rows if e.keys}
    assert "vllm-issue-17469-qwen3-30b-a3b-a10x4" in memory_only
    dealt = fc.folds(rows)
    assert set().union(*dealt) == {e.group for e in rows if e.keys}
    without = fc.folds([e for e in rows if e.group != "vllm-issue-17469-qwen3-30b-a3b-a10x4"])
    assert without == dealt


# A synthetic corpus whose true parameters are known by construction (fit_corpus.Predictions takes the engine):
# a row's time is G / (plateau x stack) + X, the fp8 Hopper plateau and the fsdp stack factor, confounded.
TRUE_PLATEAU, TRUE_FSDP = 0.62, 0.85


def _model(row, overrides):
    plateau = overrides["gemm_plateau"]["Hopper/fp8"]
    stack_factor = overrides["stack_efficiency"][row.stack]
    return row.gemm / (plateau * stack_factor) + row.rest


def _synthetic(sources: dict[str, tuple[str, int, float]]) -> list:
    """Rows of each source (stack, row count, the source's bias: every one of its rows measured x bias)."""
    from types import SimpleNamespace

    rows = []
    for group, (stack_name, n, bias) in sources.items():
        for i in range(n):
            gemm, rest = 1.0 + 0.1 * i, 0.2 + 0.05 * (i % 3)
            stack_factor = TRUE_FSDP if stack_name == "fsdp" else 1.0
            measured = (gemm / (TRUE_PLATEAU * stack_factor) + rest) * bias  # by hand: the model at the true values
            row = SimpleNamespace(id=f"{group}-{i}", kind="training_step_time", gemm=gemm, rest=rest, stack=stack_name,
                                  measured=SimpleNamespace(value=measured))
            rows.append(fc.Entry(row, group, "fit", {"gemm_plateau": "Hopper/fp8", "stack_efficiency": stack_name}, "x"))
    return rows


# Three Megatron and three fsdp sources: the many-row one biased one way, a small one the other, the middle one exact.
# A fit weighting rows would follow the 40- and 60-row tables (a plateau near 0.62 / 0.92 = 0.67); the source-balanced
# fit lands on the middle source of each stack, i.e. the true values.
SOURCES = {"megatron-a": ("megatron", 40, 0.92), "megatron-b": ("megatron", 3, 1.0), "megatron-c": ("megatron", 5, 1.08),
           "fsdp-a": ("fsdp", 60, 1.10), "fsdp-b": ("fsdp", 4, 1.0), "fsdp-c": ("fsdp", 6, 0.90)}


def test_the_joint_fit_recovers_a_known_plateau_and_stack_factor() -> None:
    params = fc.fit(_synthetic(SOURCES), fc.Predictions(_model))
    assert params["gemm_plateau"]["Hopper/fp8"] == pytest.approx(TRUE_PLATEAU, abs=0.011)
    assert params["stack_efficiency"]["fsdp"] == pytest.approx(TRUE_FSDP, abs=0.011)
    assert params["gemm_plateau"]["Hopper"] == fc.PRIOR["gemm_plateau"]["Hopper"]  # no rows: not free


def test_duplicating_a_sources_rows_does_not_move_the_fit() -> None:
    """Every cell (a source's rows reading the same parameters) weighs 1: the 60-row fsdp table copied three times
    over, or the 3-row Megatron source doubled, leaves the answer where it was."""
    import dataclasses
    from types import SimpleNamespace

    preds = fc.Predictions(_model)
    rows = _synthetic(SOURCES)
    base = fc.fit(rows, preds)
    for group, copies in (("fsdp-a", 3), ("megatron-b", 2)):
        extra = [dataclasses.replace(e, row=SimpleNamespace(**{**vars(e.row), "id": f"{e.row.id}-copy{k}"}))
                 for k in range(1, copies) for e in rows if e.group == group]
        assert fc.fit(rows + extra, preds) == base
    weights = fc.cell_weights(_synthetic(SOURCES))
    assert sum(weights.values()) == pytest.approx(len(SOURCES))  # six cells, each of total weight 1


def test_a_parameter_from_one_source_stays_at_its_prior() -> None:
    rows = [e for e in _synthetic(SOURCES) if e.group != "fsdp-b" and e.group != "fsdp-c"]
    params = fc.fit(rows, fc.Predictions(_model))
    assert params["stack_efficiency"]["fsdp"] == fc.PRIOR["stack_efficiency"]["fsdp"]
