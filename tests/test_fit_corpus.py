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
            if "cv_error" in e:
                assert (e["status"] == "fitted") == (e["cv_error"] < e["prior_error"])


def test_a_generation_without_data_keeps_its_prior_and_says_so() -> None:
    entry = fc.shipped_without_date()["parameters"]["gemm_plateau"]["CDNA3/fp8"]
    assert entry["value"] == fc.PRIOR["gemm_plateau"]["CDNA3/fp8"]
    assert entry["status"].startswith("unfitted: no data")


def test_serving_prediction_is_affine_in_the_step_overhead() -> None:
    """The fit's shortcut (two engine calls per plateau) equals a direct engine call at another overhead."""
    import corpus_predict as cp

    rows, _ = fc.entries()
    preds = fc.Predictions()
    for e in [e for e in rows if "step_overhead_s" in e.keys][:4]:
        params = {name: dict(v) for name, v in fc.PRIOR.items()}
        params["step_overhead_s"][e.keys["step_overhead_s"]] = 3.7e-3
        direct = cp.predict(e.row, {"gemm_plateau": params["gemm_plateau"], "step_overhead_s": 3.7e-3})
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
