"""A serving planner's QA sweep (pass 17): a launch line that would start another KV cache than the plan priced,
and a vLLM step budget below its request cap accepted when one of the two was the engine's default."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("kv", ["int8", "fp32"])
def test_emit_refuses_a_kv_dtype_the_engine_line_cannot_start(cli, kv: str) -> None:
    # vLLM's --kv-cache-dtype takes auto (the model's bf16) or fp8: an int8 / fp32 plan would start as auto
    r = cli("serve", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "1", "--kv-dtype", kv, "--emit", "vllm")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --kv-dtype") and r.err.count("\n") == 1


def test_emit_writes_the_kv_dtype_it_was_priced_with(cli) -> None:
    fp8 = cli("serve", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "1", "--kv-dtype", "fp8", "--emit", "vllm")
    bf16 = cli("serve", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "1", "--emit", "sglang")
    assert fp8.code == 0 and "--kv-cache-dtype fp8 " in fp8.out
    assert bf16.code == 0 and "--kv-cache-dtype auto" in bf16.out


def test_trtllm_line_cannot_carry_an_fp8_kv_cache(cli) -> None:
    r = cli("serve", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "1", "--kv-dtype", "fp8", "--engine", "trtllm",
            "--emit", "trtllm")
    assert r.code == 2 and "--kv-dtype" in r.err and "extra_llm_api_options" in r.err


@pytest.mark.parametrize("args, flag", [
    (("--max-num-seqs", "16384"), "--max-num-seqs"),  # default step budget 8,192 on an H100 (vLLM V1 server)
    (("--max-num-batched-tokens", "512"), "--max-num-batched-tokens"),  # default request cap 1,024
    (("--max-num-seqs", "1024", "--max-num-batched-tokens", "512"), "--max-num-batched-tokens"),
])
def test_vllm_step_budget_below_request_cap_is_refused_with_defaults_too(cli, args: tuple[str, ...], flag: str) -> None:
    r = cli("concurrency", "llama3.1-8b", "--gpu", "h100", *args)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}") and "max_num_batched_tokens must be >=" in r.err
    assert cli("concurrency", "llama3.1-8b", "--gpu", "h100", "--max-num-seqs", "512").code == 0


def test_compare_refuses_one_gpu_named_twice(cli) -> None:
    r = cli("compare", "llama3.1-8b", "h100", "h100-sxm")
    assert r.code == 2 and "h100-sxm twice" in r.err


def test_traffic_past_any_cluster_is_warned_naming_the_flag_given(cli) -> None:
    compare = cli("compare", "llama3.1-8b", "h100", "--rate", "1e12")
    serve = cli("serve", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "1e9")
    assert compare.code == 0 and "warning: --rate: needs" in compare.err
    assert "warning: --num-gpus: needs 1,000,000,000 GPUs" in serve.err and "--users" not in serve.err


def test_pool_queue_against_hand_numbers() -> None:
    # Sakasegawa M/D/c wait (calc.serving.queueing): rho^(sqrt(2(c+1)) - 1) / (c (1 - rho)) x S / 2.
    # 5 replicas x 4 slots, S = 1 s, R = 10/s. Least-loaded: one queue, c = 20, rho = 0.5:
    # 0.5^(sqrt(42) - 1) / (20 x 0.5) / 2 = 0.022394 / 20 = 0.0011197 s.
    # Random: 5 queues of c = 4 at 2/s, rho = 0.5: 0.5^(sqrt(10) - 1) / (4 x 0.5) / 2 = 0.22340 / 4 = 0.055851 s.
    from calc.serving.queueing import pool_queue_s

    assert pool_queue_s(10, 5, 4, 1.0, "least-loaded") == pytest.approx(0.0011197, rel=1e-3)
    assert pool_queue_s(10, 5, 4, 1.0, "random") == pytest.approx(0.055851, rel=1e-3)


def test_router_sizes_a_rate_near_the_ttft_floor(cli) -> None:
    # QA: DeepSeek-V3, 1 req/s, TTFT 300 ms on a ~286-297 ms prefill: a queue per replica needs 64 replicas of
    # TP16 x PP4 (4,096 GPUs); behind a least-loaded router the replicas share one queue (16 x TP16 = 256 GPUs). How
    # many times fewer depends on how near the prefill sits to the target (pass 25's refit: 224 against 704 GPUs)
    base = ("serve", "deepseek-v3", "--gpu", "h200", "--rate", "1", "--ttft-ms", "300", "--tpot-ms", "20",
            "--prompt", "8000", "--output", "500", "--json")
    pooled, random = cli(*base).json(), cli(*base, "--router", "random").json()
    assert pooled["gpus_needed"] * 2 <= random["gpus_needed"]
    assert any("one queue" in line for line in pooled["assumptions"])
    refused = cli("serve", "llama3-8b", "--gpu", "h100", "--router", "random")
    assert refused.code == 2 and refused.err.startswith("llmcalc: error: --router")


def test_vllm_v0_past_its_removal_is_refused(cli) -> None:
    # vLLM removed V0 in 0.11 (huggingface/optimum-neuron PR 1027: "completely removed ... starting with 0.11.0")
    late = cli("concurrency", "llama3-8b", "--gpu", "h100", "--engine", "vllm-v0", "--engine-version", "0.11")
    assert late.code == 2 and late.err.startswith("llmcalc: error: --engine-version") and "0.11" in late.err
    assert cli("concurrency", "llama3-8b", "--gpu", "h100", "--engine", "vllm-v0", "--engine-version", "0.10").code == 0
