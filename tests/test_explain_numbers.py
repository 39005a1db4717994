"""Every number an `--explain` prints is human (issue 20): thousands separators, K/M/B/T or SI suffixes,
never a Python exponent (`2e+12`, `4.286e+10`, `1e-05`) and never a raw float's long tail of digits."""

from __future__ import annotations

import re

import pytest

# One representative invocation per command that takes --explain (validate/calibrate need torch or a runs file).
EXPLAINED = [
    ["params", "llama2-7b"],
    ["flops", "llama2-7b", "--output", "128"],
    ["memory", "llama2-70b", "--gpu", "a800", "--num-gpus", "2"],
    ["memory", "llama3-8b", "--gpu", "h100", "--num-gpus", "4", "--mode", "train", "--zero", "1"],
    ["memory", "llama3-8b", "--gpu", "rtx4090", "--mode", "finetune", "--method", "qlora", "--seq", "1024"],
    ["mfu", "llama3-70b", "--gpu", "h100", "--tokens", "15T", "--gpu-hours", "6.4M", "--seq", "8192"],
    ["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "16", "--tp", "2", "--pp", "2", "--global-batch", "64",
     "--zero", "1", "--cp", "2"],
    ["train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "64", "--top", "2"],
    ["train-time", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--mfu", "0.4"],
    ["train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T"],
    ["latency", "llama2-70b", "--gpu", "a800", "--num-gpus", "8", "--batch", "16", "--prompt", "4000", "--output", "1"],
    ["latency", "mixtral-8x7b", "--gpu", "h100", "--tp", "2", "--prompt", "1000", "--output", "200"],
    ["concurrency", "llama2-70b", "--gpu", "a800", "--num-gpus", "2", "--max-model-len", "4000"],
    ["serve", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "200", "--rate", "4"],
]

_EXPONENT = re.compile(r"\d(?:\.\d+)?[eE][+-]?\d")
_LONG_FLOAT = re.compile(r"(?<![\w.])\d[\d,]*\.\d+")  # a decimal number; its significant digits are counted


def _too_precise(text: str) -> list[str]:
    """Decimal numbers with more than 6 significant digits (a raw float, `0.30000000000000004`, `123.456789`)."""
    bad = []
    for match in _LONG_FLOAT.finditer(re.sub(r"arXiv:? ?\d+\.\d+", "", text)):  # a paper's number, not a figure
        digits = match.group(0).replace(",", "").replace(".", "").lstrip("0")
        if len(digits) > 6:
            bad.append(match.group(0))
    return bad


@pytest.mark.parametrize("args", EXPLAINED, ids=lambda a: " ".join(a[:2]))
def test_explain_prints_human_numbers(cli, args: list[str]) -> None:
    r = cli(*args, "--explain")
    assert r.code == 0, r.err
    text = r.out + r.err
    lines = [line for line in text.splitlines() if _EXPONENT.search(line) or _too_precise(line)]
    assert not lines, "\n".join(lines)


def test_the_scanner_catches_raw_floats() -> None:
    assert _EXPONENT.search("2e+12 x 4.286e+10") and _EXPONENT.search("1e-05 s")
    assert not _too_precise("(Dao 2023, arXiv 2307.08691)") and _too_precise("0.30000000000000004") and _too_precise("mean 123.456789 ms")
    assert not _EXPONENT.search("llama3-8b on h100-sxm, 4.3 x 10^27, 1,234.5") and not _too_precise("1,234.5 B 12,345,678 tokens")
