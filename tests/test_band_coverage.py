"""Issue 23: on the held-out split each kind's 80% band holds about 80% of the measured values, and a band read
from a fitted group is exactly what that group's residual quantiles say (calc/bands.py)."""

from __future__ import annotations

import math
from functools import cache

import pytest
import validate_corpus

from calc.bands import KINDS, NO_BAND
from calc.fitted import fitted

MIN_HELD_OUT_ROWS = 10
COVERAGE = (0.6, 0.95)  # loose bounds on the 70-90% target: 10-50 rows give a share this noisy
# Kinds whose held-out coverage is outside COVERAGE today, and why (README "misses:" line). A known miss is
# an expected failure while it lasts; it passes (XPASS, not hidden) once the engine's physics brings it in.
KNOWN_MISSES = {
    "serving_e2e": "the decode pool's band is wider than the held-out e2e rows' error (every one inside)",
    "serving_tpot": "few rows (12-19) near the lower bound: 7 of 12 (58%) from the sixteenth pass's refit (the decode "
                    "pool's band scale k read at 1.05 from the fit split) to the twenty-first's 9 of 13 (69%); 11 of 19 "
                    "(58%) with the thirtieth pass's closed-loop TPOTs (the SGLang Cookbook's Llama 3.1 70B at "
                    "concurrency 16-64, 0.3-0.6 of their measured TPOT). The held-out rows are not used to widen it",
    "training_mfu": "45 of 67 (67%) after the twenty-sixth pass's corpus (nanotron's 25 held-out layouts; 21 of 42, 50%, at "
                    "the twenty-fifth, 26 of 37, 70%, before it): the MoE rows (Megatron-Core DeepSeek-V3 on GB200, "
                    "ModelZoo Qwen3 at long context), Hopper fp8 long-sequence rows and nanotron's small models on many "
                    "nodes fall outside bands read from fit groups of other shapes; the held-out rows are not used to "
                    "widen them",
    "training_peak_memory": "2 of 10 (20%) since the twenty-fifth pass's corpus brought it to 10 rows (torchtitan runs on B200 "
                            "and H200, max_memory_reserved): a training peak reads the fine-tuning pool's band "
                            "(calc.bands.SAME_ENGINE_POOL) while the engine prices the fit split's own training peaks "
                            "about 22% under; the held-out rows are not used to widen it",
    "training_step_time": "2 of 16 (12%) since the twenty-sixth pass's corpus (1 of 15 at the twenty-fifth; MoE step times on "
                          "H100, MI325X runs, Ling-V2's log); the held-out rows are not used to widen it",
}


@cache
def predicted(split: str) -> tuple[dict, ...]:
    """The rows of a split that ran and were predicted, with their bands (one corpus pass per session)."""
    return tuple(r for r in _results() if r["split"] == split and r["outcome"] == "ran" and r["predicted"])


@cache
def _results() -> tuple[dict, ...]:
    return tuple(validate_corpus.results())


def held_out() -> tuple[dict, ...]:
    return predicted("held_out")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_held_out_coverage_of_each_kind(kind: str) -> None:
    rows = [r for r in held_out() if r["kind"] == kind]
    if len(rows) < MIN_HELD_OUT_ROWS:
        pytest.skip(f"{len(rows)} held-out rows of {kind}: too few to judge a coverage")
    rows = validate_corpus.banded(rows)  # a "no band" row claims no coverage (counted apart in the table)
    if len(rows) < MIN_HELD_OUT_ROWS:
        pytest.skip(f"{len(rows)} held-out rows of {kind} with a band: too few to judge a coverage")
    share, _ = validate_corpus.coverage(rows)
    if not COVERAGE[0] <= share <= COVERAGE[1] and kind in KNOWN_MISSES:
        pytest.xfail(f"{kind}: {share:.0%} in band: {KNOWN_MISSES[kind]}")
    assert COVERAGE[0] <= share <= COVERAGE[1], (kind, share, len(rows))


def test_a_fitted_groups_band_is_its_quantiles() -> None:
    """Every held-out row whose band comes from a fitted group: half-width / prediction = (exp(hi) - exp(lo)) / 2 with
    [lo, hi] = [-q90, -q10] for a time, [q10, q90] for a rate (calc/bands.py), and the group's row count; a row with
    no comparable measurement says so, with rows 0 and the stated factor of 2."""
    data = fitted()["bands"]
    seen = 0
    for r in held_out():
        b = r["band"]
        if b.group in data["groups"]:
            q = data["groups"][b.group]
            lo, hi = (-q["q90"], -q["q10"]) if KINDS[r["kind"]][1] > 0 else (q["q10"], q["q90"])
            half = (math.exp(hi) - math.exp(lo)) / 2
            assert (b.high - b.low) / 2 / r["predicted"] == pytest.approx(half, rel=1e-9), r["id"]
            assert b.rows == q["rows"] >= data["min_rows"]
            seen += 1
        elif b.rows == 0 and b.group == NO_BAND:  # no usable rows: the stated factor of 2
            assert b.high / r["predicted"] == pytest.approx(math.exp(data["wide_default"]["q90"]))
        elif b.rows == 0:  # rows too scattered: a band wider than max_half_width either way, its ends kept
            assert b.group.startswith(f"{NO_BAND} (the nearest rows")
            assert math.sinh(math.log(b.high / b.low) / 2) > data["max_half_width"]  # log width w = q90 - q10
    assert seen >= MIN_HELD_OUT_ROWS


def test_fitted_group_rows_are_the_fit_rows_of_that_group() -> None:
    """A group's row count is the number of fit-split rows the fit could predict in that group."""
    counts: dict[str, int] = {}
    for r in predicted("fit"):
        counts[r["band_group"]] = counts.get(r["band_group"], 0) + 1
    for group, q in fitted()["bands"]["groups"].items():
        assert q["rows"] == counts.get(group), group
