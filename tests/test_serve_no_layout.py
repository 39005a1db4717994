"""`serve` whose targets no layout meets: the closest layout in the table and JSON (with its three-valued `fit`), then
one error line naming the target and exit 2; an --emit says it printed no launch line (QA finding: exit 0, no `fit`,
`--emit` silently printed nothing)."""

from __future__ import annotations


def test_unmet_targets_answer_then_exit_2(cli) -> None:
    r = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--tpot-ms", "0.001", "--json")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --tpot-ms: no layout meets the targets")
    d = r.json()
    assert d["fit"] == "fits" and d["best"] is None and d["layouts"]


def test_emit_says_there_is_no_line(cli) -> None:
    r = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--tpot-ms", "0.001", "--rate", "5", "--emit",
            "vllm")
    assert r.code == 2 and "no launch line" in r.err and "vllm serve" not in r.out
