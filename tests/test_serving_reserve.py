"""--reserve-gib in the serving commands: a value given is used, whatever it is."""

from __future__ import annotations


def test_reserve_gib_given_is_given_whatever_its_value(cli) -> None:
    """QA finding: `--reserve-gib 0.5` (the value the option's old default carried) was read as "not given", so vLLM V1
    kept its 0.1 GiB above-baseline default and 0.5 reserved less than 0.3. The KV cache now shrinks with every GiB
    reserved: 0.5 GiB more is 0.5 x 2^30 / 131,072 B per token = 4,096 tokens fewer (llama3-8b bf16), to whole 16-token
    blocks; leaving the option out is vLLM's own default, 0.1 GiB above its baseline snapshot."""
    kv = {}
    for r in (None, 0.0, 0.3, 0.5, 1.0):
        out = cli("concurrency", "llama3-8b", "--gpu", "h100", *(["--reserve-gib", str(r)] if r is not None else []), "--json")
        assert out.code == 0, out.err
        kv[r] = out.json()["kv_cache_tokens"]
    assert kv[0.0] > kv[0.3] > kv[0.5] > kv[1.0]
    assert abs((kv[0.5] - kv[1.0]) - 4096) <= 16
    assert kv[0.0] > kv[None] > kv[0.3]  # the default reserves 0.1 GiB


def test_latency_reads_the_kv_cache_at_the_width_it_stores_it(cli) -> None:
    """QA finding: latency --dtype fp8 stored the KV cache in bf16 (vLLM's auto: the activation dtype) but timed its
    read at 1 B per element, so TPOT fell below the bandwidth floor. Llama 3.1 8B, 28 requests at 32,768 tokens on an
    H200: fp8 weights 7.50 GB + KV 28 x 32,768 x 131,072 B = 120.26 GB, over 4.8 TB/s = 26.6 ms at the least."""
    job = ("latency", "llama3.1-8b", "--gpu", "h200", "--batch", "28", "--prompt", "32768", "--output", "16",
           "--dtype", "fp8", "--json")
    auto, bf16 = cli(*job).json(), cli(*job, "--kv-dtype", "bf16").json()
    floor = (7.50e9 + 28 * 32768 * 131072) / 4.8e12
    assert auto["tpot_s"] >= floor and auto["tpot_s"] == bf16["tpot_s"]
    fp8 = cli(*job, "--kv-dtype", "fp8").json()
    assert fp8["tpot_s"] < auto["tpot_s"]  # an fp8 cache, when asked for, is read at 1 B


def test_the_prefill_floor_runs_attention_at_its_own_dtype(cli) -> None:
    """QA finding: ttft_at_full_peak_s (the floor the README calls a TTFT target unreachable by) divided the whole
    prefill, attention included, by the fp8 peak. Attention runs in bf16 over a bf16 KV cache: Llama 3.1 8B, a
    120,000-token causal prefill does 32 layers x 2 x 4,096 x 120,000^2 = 3.77e15 attention FLOPs, 3.81 s at the
    H200's 989.4 TFLOP/s bf16 peak, before any GEMM."""
    r = cli("latency", "llama3.1-8b", "--gpu", "h200", "--prompt", "120000", "--output", "16", "--dtype", "fp8", "--json")
    assert r.code == 0, r.err
    attention = 32 * 2 * 4096 * 120000**2 / 989.4e12
    assert r.json()["ttft_at_full_peak_s"] > attention
    assert r.json()["ttft_s"] >= r.json()["ttft_at_full_peak_s"]


def test_a_hybrid_models_prefill_work_does_not_grow_with_tp(cli) -> None:
    """QA finding: Qwen3-Next's Gated DeltaNet projections (in_proj_qkvz, in_proj_ba, out_proj) were priced whole on
    every TP rank, so the prefill's FLOPs summed over the GPUs grew 2.6x from TP2 to TP8 (9.3e9 -> 2.45e10 per
    token against the 7.4e9 `flops` counts). vLLM shards them column / row parallel (qwen3_next.py): the work summed
    over the ranks now stays within 10% of the model's count at every TP."""
    count = cli("flops", "qwen3-next-80b", "--seq", "1024", "--attention-pairs", "causal", "--json").json()["per_token_inference_flops"]
    for n in (2, 4, 8):
        r = cli("latency", "qwen3-next-80b", "--gpu", "h200", "--num-gpus", str(n), "--prompt", "1024", "--output", "16",
                "--json")
        assert r.code == 0, r.err
        assert abs(r.json()["prefill_flops"] * n / 1024 / count - 1) < 0.10, n
