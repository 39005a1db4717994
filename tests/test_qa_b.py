"""Regression tests for defects found in the QA pass (latency, concurrency, serve, report, compare, catalog, bench)."""

from __future__ import annotations

import pytest
from conftest import run_cli


def test_latency_table_is_not_cropped_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich laid the 7-column latency table out 1 cell wider than an 80-column terminal and cropped
    # its right border; every table line must close with its border
    from calc.report import render

    monkeypatch.setattr(render.console, "_width", 80)
    r = run_cli("latency", "deepseek-v3", "--gpu", "h200", "--num-gpus", "8", "--prompt", "4K", "--output", "256", "--batch", "8")
    assert r.code == 0, r.err
    rows = [line.rstrip() for line in r.out.splitlines() if line.startswith(("┃", "│ prefill", "│ decode"))]
    assert rows and all(line.endswith(("┃", "│")) for line in rows), rows
