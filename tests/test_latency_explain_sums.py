"""latency --explain: each step's terms add up to the step it prints (QA finding: the prefill line read "weight GEMMs
25.288 ms of which 20.928 + 5.045" and "step = 27.906 ms" after a 2.00 ms overhead, the attention left out)."""

from __future__ import annotations

import re

import pytest

TERMS = re.compile(r"weight GEMMs \(shape by shape\) ([0-9.,]+) ms \+ attention ([0-9.,]+) ms .*?"
                   r"(?:\+ MoE routing ([0-9.,]+) ms )?\+ TP / PP communication ([0-9.,]+) ms = forward ([0-9.,]+) ms; "
                   r"step = forward \+ overhead ([0-9.]+) ms = ([0-9.,]+) ms")


def _f(x: str | None) -> float:
    return float(x.replace(",", "")) if x else 0.0


@pytest.mark.parametrize("args", [
    ("llama3-8b", "--gpu", "h100", "--prompt", "1024"),
    ("mixtral-8x7b", "--gpu", "h100", "--num-gpus", "2", "--prompt", "1024", "--batch", "16"),
    ("llama3-70b", "--gpu", "a100", "--num-gpus", "4", "--prompt", "2048", "--batch", "8"),
])
def test_step_terms_add_up(cli, args) -> None:
    r = cli("latency", *args, "--json")
    assert r.code == 0, r.err
    lines = [x for x in r.json()["explain"] if x.startswith(("prefill", "decode"))]
    assert len(lines) == 2
    for line in lines:
        m = TERMS.search(line)
        assert m, line
        gemm, attention, routing, comm, forward, overhead, step = (_f(x) for x in m.groups())
        assert gemm + attention + routing + comm == pytest.approx(forward, rel=2e-4, abs=0.002)  # printed to 3 decimals (1 from 100 ms)
        assert forward + overhead == pytest.approx(step, rel=2e-4, abs=0.002)
