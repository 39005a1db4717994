"""Shared helpers: run the CLI in-process and capture stdout, stderr and the exit code."""

from __future__ import annotations

import io
import json
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

# CI (CI=true) runs the property tests derandomized: the same examples every run, so a submission
# that passed here passes there; locally they keep exploring new examples.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

# The validation tables' tests import the scripts in benchmarks/. The checkout goes at the END of
# sys.path so `calc` still resolves to the installed package (CI tests what `pip install .` ships).
sys.path.append(str(Path(__file__).resolve().parents[1]))
# The corpus scripts import each other by module name (corpus_schema, corpus_predict, fit_corpus).
sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def run_cli(*args: str, internal_ok: bool = False) -> CliResult:
    """Run `llmcalc ARGS` in-process. An internal error (exit 1, a bug) fails the calling test at once:
    no test may take it for a clean refusal; only a test of the error boundary itself passes
    ``internal_ok=True``."""
    from calc.cli import app as cli
    from calc.report import render

    out, err = io.StringIO(), io.StringIO()
    old_argv = sys.argv
    sys.argv = ["llmcalc", *args]
    render.console.file = out
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old_argv
        render.console.file = None  # back to sys.stdout
    result = CliResult(code, out.getvalue(), err.getvalue())
    if not internal_ok and (result.code == 1 or "internal error" in result.err):
        pytest.fail(f"internal error (a bug) from `llmcalc {' '.join(args)}`: exit {result.code}: {result.err.strip()}")
    return result


@pytest.fixture
def cli():
    return run_cli
