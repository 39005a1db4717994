"""The engine's fitted defaults, read once from the shipped data file ``calc/data/fitted_defaults.json``.

The file is the output of ``python benchmarks/fit_corpus.py`` (one fitting procedure over the measurement
corpus, benchmarks/data/corpus/): each efficiency default (GEMM plateau per GPU generation and dtype,
flash-attention rate, sustained fraction, per-step serving overhead, training stack efficiency) with its status
(fitted jointly on which rows, or "unfitted: ..." and kept at its previous value), and the error bands of every
kind of figure.
No default is written in code: tests/test_fit_corpus.py re-runs the fit and compares it with this file.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

FITTED_PATH = Path(__file__).resolve().parent / "data" / "fitted_defaults.json"


@cache
def fitted() -> dict[str, Any]:
    """The whole data file (parameters, bands, how they were obtained), parsed once."""
    return json.loads(FITTED_PATH.read_text(encoding="utf-8"))


def parameter(name: str) -> dict[str, float]:
    """{key: value} of one fitted parameter family, e.g. parameter("gemm_plateau")["Hopper"]."""
    return {key: float(entry["value"]) for key, entry in fitted()["parameters"][name].items()}


def describe(name: str, key: str) -> str:
    """How one default was obtained, for --explain: 'fitted on N corpus rows, CV error E' or its unfitted status. E is
    the leave-one-source-out error, each source's rows weighing together as much as any other source's
    (benchmarks/fit_corpus.py, steps 3-4)."""
    entry = fitted()["parameters"][name].get(key) or fitted()["parameters"][name]["other"]
    if entry["status"] != "fitted":
        return entry["status"]
    return f"fitted on {len(entry['rows'])} corpus rows, leave-one-source-out mean |error| {entry['cv_error']:.1%}"
