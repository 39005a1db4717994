"""calc.bands.band: the 80% band around a prediction from the corpus residual quantiles of its group."""

from __future__ import annotations

import math

import pytest

from calc.bands import band
from calc.fitted import fitted


def test_no_comparable_measurement_gives_the_stated_factor_of_two() -> None:
    assert "kv_capacity" not in fitted()["bands"]["families"]  # fewer than min_rows fit rows today
    b = band("kv_capacity", 10.0, gpu="NoSuchGeneration")
    assert (b.low, b.high, b.rows) == (pytest.approx(5.0, rel=1e-3), pytest.approx(20.0, rel=1e-3), 0)  # log 2 kept to 4 places
    assert b.group.startswith("wide default")


def test_a_rate_band_is_the_reciprocal_of_the_time_band() -> None:
    # throughput = work / time: a time band [lo, hi] around t maps to [work/hi, work/lo] around work/t.
    t = band("training_step_time", 2.0, gpu="Ampere")
    r = band("training_throughput", 1 / 2.0, gpu="Ampere")
    assert (r.low, r.high) == (pytest.approx(1 / t.high), pytest.approx(1 / t.low))
    assert r.low < 0.5 < r.high


def test_a_group_with_rows_uses_its_own_quantiles() -> None:
    groups = fitted()["bands"]["groups"]
    q = groups["training|Ampere|16-bit|dense"]
    b = band("training_mfu", 0.5, gpu="Ampere", dtype="bf16")
    # measured = predicted x exp(-r) with r = log(pred/measured) of the time-like step: for MFU (a rate) exp(+r)
    assert (b.low, b.high) == (pytest.approx(0.5 * math.exp(q["q10"])), pytest.approx(0.5 * math.exp(q["q90"])))
    assert b.rows == q["rows"] >= fitted()["bands"]["min_rows"]
    assert b.level == 0.8


def test_a_thin_group_falls_back_to_its_family() -> None:
    fam = fitted()["bands"]["families"]["serving"]
    b = band("serving_ttft", 100.0, gpu="Blackwell", dtype="fp8")
    assert b.rows == fam["rows"] and b.group.startswith("serving (all generations")


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="no band for kind"):
        band("latency", 1.0, gpu="Ampere")
