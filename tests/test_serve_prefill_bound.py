"""`serve` in steady state computes every request's prompt once: B requests per service carry B prompts. With short
outputs (O = 1: prefill only; O = 2: one decode step) the prompts dominate, and the requests per second of a replica
can never exceed what its prefill compute allows (QA finding: 225 req/s of 8,000-token prompts on one H100 was
~28,900 TFLOP/s of prefill on a 989 TFLOP/s part)."""

from __future__ import annotations

import pytest

# llama3-8b: 2 x 8,030,261,248 FLOPs per prompt token before attention (a lower bound on the prefill work);
# H100 SXM dense bf16 peak 989.4 TFLOP/s (NVIDIA datasheet)
FLOPS_PER_TOKEN, PEAK = 2 * 8_030_261_248, 989.4e12


@pytest.mark.parametrize("output", ["1", "2", "4", "16"])
def test_requests_per_second_stay_under_the_prefill_compute_bound(cli, output: str) -> None:
    r = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "8000", "--output", output, "--num-gpus", "1", "--json")
    assert r.code == 0, r.err
    for layout in r.json()["layouts"]:
        prefill_flops_per_s = layout["requests_per_s_per_replica"] * 8000 * FLOPS_PER_TOKEN / layout["gpus_per_replica"]
        assert prefill_flops_per_s < PEAK, layout


def test_a_prefill_only_batch_waits_for_the_others_prompts(cli) -> None:
    """O = 1: B slots share the prompt steps, so a request's TTFT at batch B is about B prompts' worth."""
    one = cli("latency", "llama3-8b", "--gpu", "h100", "--prompt", "8000", "--output", "1", "--json").json()
    best = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "8000", "--output", "1", "--num-gpus", "1",
               "--json").json()["best"]
    assert best["ttft_ms"] >= 0.9 * best["batch"] * one["ttft_s"] * 1e3
