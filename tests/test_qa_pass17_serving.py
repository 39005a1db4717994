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
