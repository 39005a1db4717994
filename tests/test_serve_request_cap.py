"""serve's table: the batch column is the request cap each replica is launched with, and the table says which flag
of the engine that is; the --emit line carries the same number."""

from __future__ import annotations

import re

import pytest

ARGS = ("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1K", "--output", "256", "--rate", "5")


@pytest.mark.parametrize(("engine", "flag"), [("vllm", "--max-num-seqs"), ("sglang", "--max-running-requests"),
                                              ("trtllm", "--max_batch_size")])
def test_batch_is_the_launch_request_cap(cli, engine, flag) -> None:
    table = cli(*ARGS, "--engine", engine, "--emit", engine)
    assert table.code == 0
    assert (f"batch = the most requests a replica runs at once, its figures timed there (the {flag} an --emit line "
            "starts it with") in " ".join(table.out.split())
    best = cli(*ARGS, "--engine", engine, "--json").json()["best"]
    line = table.out.strip().splitlines()[-1]
    # a dense model on one TP x PP replica: one attention group, so the cap is the batch itself
    assert best["ep"] == 1 and re.search(rf"{re.escape(flag)} (\d+)", line).group(1) == str(best["batch"])
