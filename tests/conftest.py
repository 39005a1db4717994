"""Shared helpers: run the CLI in-process and capture stdout, stderr and the exit code."""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def run_cli(*args: str) -> CliResult:
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
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli
