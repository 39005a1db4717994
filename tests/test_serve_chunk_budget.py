"""serve's steady state within the engine's tokens per step (QA finding: `serve llama3-8b --gpu h100 --prompt 4000
--output 16 --num-gpus 1` ran batch 105, whose steps needed 105 x 4000 / 15 = 28,000 prompt tokens each against
vLLM's 8,192-token budget, a 715 ms "TPOT" and a TTFT (119 ms) shorter than the step it comes out of)."""

from __future__ import annotations

import math


def test_batch_fits_the_tokens_per_step(cli) -> None:
    r = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "4000", "--output", "16", "--num-gpus", "1", "--json")
    assert r.code == 0, r.err
    best = r.json()["best"]
    # vLLM V1 on an H100: max_num_batched_tokens 8,192. Each step: B decode tokens + (B - 1) x 4000 / 15 prompt tokens
    # <= 8,192  ->  B <= (8,192 + 4000/15) / (1 + 4000/15) = 31.6
    cap = math.floor((8192 + 4000 / 15) / (1 + 4000 / 15))
    assert cap == 31 and best["batch"] <= cap
    assert best["binding"] == "tokens per step (max_num_batched_tokens)"
    # the first token comes out at the end of a steady-state step: TTFT is at least one TPOT step
    assert best["ttft_ms"] >= best["tpot_ms"] * (1 - 1e-9)


def test_long_outputs_are_not_capped(cli) -> None:
    """With 1,000 output tokens per 1,000-token prompt a step carries about one prompt token per request: the budget
    admits thousands, so memory or max_num_seqs binds as before."""
    r = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "1000", "--num-gpus", "1", "--json")
    assert r.code == 0, r.err
    assert r.json()["best"]["binding"] != "tokens per step (max_num_batched_tokens)"


def test_a_layout_no_batch_of_which_meets_the_targets_names_the_target(cli) -> None:
    """QA finding: TP1 x PP4 and TP1 x PP8 at batch 1, TPOT 49.6 ms against a 40 ms target, said "binds memory (KV)"
    (they hold hundreds of requests): what stops them is the target they miss even at batch 1."""
    r = cli("serve", "llama3-70b", "--gpu", "h100", "--prompt", "2000", "--output", "300", "--ttft-ms", "1000",
            "--tpot-ms", "40", "--rate", "20", "--json")
    assert r.code == 0, r.err
    unmet = [x for x in r.json()["layouts"] if not x["meets_targets"]]
    assert unmet
    for x in unmet:
        assert x["tpot_ms"] > 40 and x["binding"] == "TPOT target (missed at batch 1)", x
