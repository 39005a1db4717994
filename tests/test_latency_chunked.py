"""latency prices a chunking engine's prefill as its steps (QA finding: --max-num-batched-tokens changed nothing).

vLLM V1 / SGLang / TensorRT-LLM cap a step at their token budget, so a static batch of B prompts of P tokens runs in
ceil(B x P / C) prefill steps of C tokens, each paying its step overhead and re-reading the weights (calc.serving.latency)."""

from __future__ import annotations

import math


def _latency(cli, *args: str) -> dict:
    return cli("latency", "llama3.1-8b", "--gpu", "h100", "--output", "128", "--json", *args).json()


def test_the_step_budget_changes_the_ttft(cli):
    small = _latency(cli, "--batch", "8", "--prompt", "4096", "--max-num-batched-tokens", "2048")
    large = _latency(cli, "--batch", "8", "--prompt", "4096", "--max-num-batched-tokens", "32768")
    # 8 x 4,096 = 32,768 prompt tokens: 16 steps of 2,048 (by hand) against one step of 32,768
    assert small["prefill_steps"] == 16 and large["prefill_steps"] == 1
    # every extra step pays at least its overhead again: 15 more overheads
    assert small["ttft_s"] - large["ttft_s"] >= 15 * small["step_overhead_s"]
    assert small["tpot_s"] == large["tpot_s"]  # decode is not chunked


def test_a_long_prompt_runs_in_the_default_budget_of_vllm_v1(cli):
    r = _latency(cli, "--batch", "1", "--prompt", "32768")
    assert r["prefill_steps"] == math.ceil(32768 / 8192)  # vLLM V1's max_num_batched_tokens on an 80 GB H100: 8,192
    assert r["ttft_s"] >= 4 * r["step_overhead_s"]


def test_latency_and_serve_agree_on_an_unloaded_prompt(cli):
    lat = _latency(cli, "--batch", "1", "--prompt", "32768")
    serve = cli("serve", "llama3.1-8b", "--gpu", "h100", "--prompt", "32768", "--output", "128", "--rate", "0.01",
                "--json").json()
    unloaded = serve["best"]["frontier"][0]
    assert unloaded["batch"] == 1
    assert math.isclose(unloaded["ttft_ms"], lat["ttft_s"] * 1e3, rel_tol=1e-6)
