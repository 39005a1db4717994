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
