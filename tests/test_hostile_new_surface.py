"""Hostile inputs on the options added late (train-time --days/--budget, --global-batch-tokens, --engine-version,
--emit, serving targets) and on the hybrid models and new GPUs, found by a ~600-invocation sweep.

Same rule as tests/test_hostile.py: a refusal is exit 2 and ONE stderr line `llmcalc: error: FLAG: ...` naming the
flag at fault, never a traceback; an answer is exit 0 with only warning/note lines on stderr. The expected flag and
text in each row are written down from the input, not copied from the output.
"""

from __future__ import annotations

import pytest
from conftest import run_cli

TT = ["train-time", "llama3-8b", "--tokens", "1T"]
LAT = ["latency", "llama3-8b", "--gpu", "h100-sxm", "--prompt", "512"]
STEP = ["train-step", "llama3-8b", "--gpu", "h100-sxm", "--num-gpus", "8", "-s", "4096"]

# (args, exit code, what stderr must contain)
CASES: dict[str, tuple[list[str], int, list[str]]] = {
    # --engine-version: a release number, not any text that happens to contain one ("-0.5" was read as 0.5).
    "engine-version negative": ([*LAT, "--engine-version", "-0.5"], 2, ["--engine-version", "'-0.5'"]),
    "engine-version trailing text": ([*LAT, "--engine-version", "0.5 junk"], 2, ["--engine-version"]),
    "engine-version trailing dot": ([*LAT, "--engine-version", "0.5."], 2, ["--engine-version"]),
    "engine-version exponent": ([*LAT, "--engine-version", "1e30"], 2, ["--engine-version"]),
    # a release past the newest whose defaults are read (vLLM 0.11) would silently get 0.11's: refused (QA finding)
    "engine-version from the future": ([*LAT, "--engine-version", "99.0"], 2, ["--engine-version", "0.11"]),
    # --kv-dtype names a storage dtype in every command: tf32 (a math mode) and int4 (no engine) were priced by memory
    "kv-dtype tf32": (["memory", "llama3-8b", "--mode", "infer", "--kv-dtype", "tf32"], 2, ["--kv-dtype", "fp8, int8"]),
    "kv-dtype int4": (["memory", "llama3-8b", "--mode", "infer", "--kv-dtype", "int4"], 2, ["--kv-dtype", "not stored"]),
    "engine-version v-prefixed": ([*LAT, "--engine-version", "v0.6.3"], 0, []),
    "engine-version dev build": ([*LAT, "--engine-version", "0.6.3.dev114"], 0, []),
    "engine-version release candidate": ([*LAT, "--engine-version", "0.11.0rc2"], 0, []),
    "engine-version post release": (["serve", "llama3-8b", "--gpu", "h100-sxm", "--prompt", "512", "--engine", "sglang",
                                     "--engine-version", "0.4.3.post2"], 0, []),
    # A refusal after a warning stays one line: the warning about the MFU assumed for a GPU with no node type (or a
    # batch beyond any published run) is dropped when the command then refuses the input.
    "train-time t4 bf16: error alone": ([*TT, "--num-gpus", "32", "--gpu", "t4"], 2, ["--dtype", "bf16"]),
    "train-time v100 bf16: error alone": ([*TT, "--num-gpus", "64", "--gpu", "v100-32g", "--dtype", "bf16"], 2,
                                          ["--dtype", "fp16"]),
    "train-step 1e15-token batch that does not fit: error alone": ([*STEP, "--global-batch-tokens", "1e15"], 2,
                                                                   ["--num-gpus", "does not fit"]),
    # ... and on an answer the warning still prints.
    "train-time 1e29-token batch: warned": (["train-time", "llama3-8b", "--tokens", "1e30", "--gpu", "h100-sxm",
                                             "--num-gpus", "64", "--global-batch-tokens", "4096e14"], 0,
                                            ["warning", "--global-batch"]),
    # ... and a token budget below one such step is refused, naming --tokens
    "train-time tokens below one step": ([*TT, "--gpu", "h100-sxm", "--num-gpus", "64", "--global-batch-tokens", "4096e14"], 2,
                                         ["--tokens", "one optimizer step"]),
    # --global-batch-tokens 1.5 is 1.5 tokens, not "2 tokens" (it was printed rounded to a whole number).
    "global-batch-tokens fraction shown as typed": ([*STEP, "--global-batch-tokens", "1.5"], 2,
                                                    ["--global-batch-tokens: 1.5 tokens", "use 4,096"]),
    "global-batch-tokens 4M shown whole": ([*STEP, "--global-batch-tokens", "4M"], 2,
                                           ["4,000,000 tokens", "3,997,696 or 4,001,792"]),
    # A pure Mamba-2 model has no q/k/v/o/gate/up/down/experts matrix: no --lora-targets value can help, so the fix
    # offered is --method full, not another target list.
    "lora on an SSM-only model": (["memory", "tests/fixtures/hf/mamba-codestral-7b-v0.1.json", "--mode", "finetune"], 2,
                                  ["--lora-targets", "--method full"]),
    "lora experts on a dense model": (["memory", "llama3-8b", "--mode", "finetune", "--lora-targets", "experts"], 2,
                                      ["--lora-targets", "experts need an MoE model"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_new_surface(case: str) -> None:
    args, code, needles = CASES[case]
    r = run_cli(*args)
    assert "Traceback" not in r.err + r.out, r.err
    assert r.code == code, (r.code, r.err[-500:])
    lines = r.err.strip().splitlines()
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("llmcalc: error: "), r.err
    else:
        assert all(line.startswith(("llmcalc: warning: ", "llmcalc: note: ")) for line in lines), r.err
    for needle in needles:
        assert needle in r.err, (needle, r.err)


def test_library_warnings_go_through_pythons_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    """Outside the CLI (and after a CLI refusal) `warn` does not hold the line and does not print it: a library call
    gets an LLMCalcWarning at once (the engine does no I/O); holding back and printing are the CLI's."""
    from calc.errors import LLMCalcWarning
    from calc.sanity import warn

    run_cli(*TT, "--num-gpus", "32", "--gpu", "t4")  # a refusal that had held a warning
    capsys.readouterr()
    with pytest.warns(LLMCalcWarning, match=r"^llmcalc: warning: --x: y$"):
        warn("--x", "y")
    assert capsys.readouterr().err == ""


def test_the_batch_warning_names_the_form_the_user_typed(cli) -> None:
    # 128M tokens at seq 4,096 = 31,250 sequences: beyond the ~63M-token largest published batch either way.
    tokens = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--global-batch-tokens", "128M", "--seq", "4096")
    assert "--global-batch-tokens: 128M tokens per step (31,250 sequences of 4,096)" in tokens.err
    seqs = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "31250", "--seq", "4096")
    assert "--global-batch: 31,250 sequences (the batch is in sequences, not tokens)" in seqs.err
