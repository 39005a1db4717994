"""--global-batch-tokens: the global batch in tokens, read as tokens / --seq sequences, in train-step, train-plan and
train-time; refused when not a whole number of sequences or when --global-batch is given too."""

from __future__ import annotations

import pytest

PLAN = ("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--seq", "8192", "--json")


def test_tokens_form_equals_sequences_form(cli):
    # Llama 3's 16M-token batch: 2,048 sequences x 8,192 tokens = 16,777,216 tokens
    by_tokens = cli(*PLAN, "--global-batch-tokens", "16777216")
    by_sequences = cli(*PLAN, "--global-batch", "2048")
    assert by_tokens.code == 0, by_tokens.err
    assert by_tokens.json() == by_sequences.json()


@pytest.mark.parametrize("command", ["train-plan", "train-step", "train-time"])
def test_not_a_whole_number_of_sequences_is_refused_with_the_nearest(cli, command):
    # 16,000,000 / 8,192 = 1953.125 sequences; the nearest whole counts are 1953 and 1954 x 8,192
    extra = ("--tokens", "1T") if command == "train-time" else ()
    r = cli(command, "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--seq", "8192", *extra,
            "--global-batch-tokens", "16M")
    assert r.code == 2
    assert "--global-batch-tokens" in r.err and "15,998,976" in r.err and "16,007,168" in r.err
    assert "Traceback" not in r.err


def test_both_forms_are_refused(cli):
    r = cli(*PLAN, "--global-batch", "2048", "--global-batch-tokens", "16777216")
    assert r.code == 2 and "--global-batch-tokens" in r.err and "not both" in r.err
