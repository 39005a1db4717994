"""A prompt + output beyond the context window is one finding, the same in every serving command (QA finding:
serve / compare / report blamed --prompt for '1,256 tokens' when the prompt was 1,000 and the default output 256
overflowed gpt2's 1,024-token window; latency capped the default output with a warning)."""

from __future__ import annotations

import pytest

COMMANDS = (("latency", "gpt2", "--gpu", "h100"), ("serve", "gpt2", "--gpu", "h100"), ("compare", "gpt2", "h100"),
            ("report", "gpt2", "--gpu", "h100"))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_default_output_is_capped_to_what_the_window_leaves(cli, command):
    r = cli(*command, "--prompt", "1000")
    assert r.code == 0, r.err
    assert "capped at 24 tokens" in r.err  # 1,024 - 1,000 by hand


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_given_output_that_overflows_is_refused_naming_output(cli, command):
    r = cli(*command, "--prompt", "1000", "--output", "100")
    assert r.code == 2
    assert r.err.startswith("llmcalc: error: --output:") and "give --output <= 24" in r.err
