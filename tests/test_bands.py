"""calc.bands.band: the 80% band around a prediction from the corpus residual quantiles of its group."""

from __future__ import annotations

import math

import pytest

from calc.bands import band
from calc.fitted import fitted


def test_no_comparable_measurement_gives_the_stated_factor_of_two() -> None:
    assert "inference_peak_memory" not in fitted()["bands"]["kinds"]  # fewer than min_rows fit rows today
    b = band("inference_peak_memory", 10.0, gpu="NoSuchGeneration")
    assert (b.low, b.high, b.rows) == (pytest.approx(5.0, rel=1e-3), pytest.approx(20.0, rel=1e-3), 0)  # log 2 kept to 4 places
    assert b.group.startswith("wide default")


def test_a_time_band_reads_the_quantiles_the_other_way_round() -> None:
    # time-like: measured = predicted x exp(-r), so the band is [t exp(-q90), t exp(-q10)] (a rate's is [v exp(q10), ...])
    q = fitted()["bands"]["groups"]["training_step_time|Ampere|16-bit|dense"]
    t = band("training_step_time", 2.0, gpu="Ampere")
    assert (t.low, t.high) == (pytest.approx(2.0 * math.exp(-q["q90"])), pytest.approx(2.0 * math.exp(-q["q10"])))


def test_a_group_with_rows_uses_its_own_quantiles() -> None:
    groups = fitted()["bands"]["groups"]
    q = groups["training_throughput|Ampere|16-bit|dense"]
    b = band("training_throughput", 0.5, gpu="Ampere", dtype="bf16")
    # measured = predicted x exp(-r) with r = log(pred/measured) of the time-like step: for MFU (a rate) exp(+r)
    assert (b.low, b.high) == (pytest.approx(0.5 * math.exp(q["q10"])), pytest.approx(0.5 * math.exp(q["q90"])))
    assert b.rows == q["rows"] >= fitted()["bands"]["min_rows"]
    assert b.level == 0.8


def test_a_thin_group_falls_back_to_its_kind() -> None:
    kind = fitted()["bands"]["kinds"]["serving_ttft"]
    b = band("serving_ttft", 100.0, gpu="Blackwell", dtype="fp8")
    assert b.rows == kind["rows"] and b.group.startswith("serving_ttft (all generations")


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="no band for kind"):
        band("latency", 1.0, gpu="Ampere")
