"""Every docstring example in the engine runs (QA finding: one doctest printed 0.06274 where its own arithmetic,
16 x 256 x 257/2 / (4096 x 4097/2) = 0.0627288, and the function give 0.06273; nothing collected the doctests)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import calc

PACKAGES = ("calc", "calc.model", "calc.memory", "calc.training", "calc.serving", "calc.hardware", "calc.sources",
            "calc.specs")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        if hasattr(module, "__path__") and package != "calc":
            names += [f"{package}.{info.name}" for info in pkgutil.iter_modules(module.__path__)]
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_the_doctests_are_collected():
    assert sum(doctest.testmod(importlib.import_module(n)).attempted for n in ("calc.memory.kv", "calc.model.params")) > 0
    assert "latency" in dir(calc)
