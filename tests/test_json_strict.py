"""`--json` is strict JSON (RFC 8259): no Infinity or NaN words, which Python writes by default and no strict parser
reads (QA finding: an unmet serving target printed "ttft_ms": Infinity, in serve and report)."""

from __future__ import annotations

import json

import pytest


def _strict(text: str) -> object:
    def refuse(word: str) -> object:
        raise ValueError(f"not JSON: {word}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("args", [
    ("serve", "llama3-70b", "--gpu", "h100", "--num-gpus", "8", "--prompt", "2000", "--output", "300", "--rate", "20"),
    ("report", "llama3-70b", "--gpu", "h100", "--num-gpus", "8", "--prompt", "2000", "--output", "300", "--rate", "20"),
    ("compare", "llama3-70b", "h100", "a100", "--prompt", "2000", "--output", "300", "--rate", "20", "--num-gpus", "8"),
])
def test_unmet_targets_print_strict_json(cli, args) -> None:
    r = cli(*args, "--json")
    assert r.out.strip(), r.err
    payload = _strict(r.out)
    assert "Infinity" not in r.out and "NaN" not in r.out
    assert payload is not None

