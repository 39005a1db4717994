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


def test_vllm_settings_vllm_would_refuse_are_refused(cli) -> None:
    """QA finding: --block-size 7 and --max-num-batched-tokens below --max-num-seqs were emitted into a vLLM line that
    vLLM refuses to start with."""
    r = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--block-size", "7")
    assert r.code == 2 and "--block-size" in r.err and "16" in r.err
    r = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--max-num-batched-tokens", "100",
            "--max-num-seqs", "200")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --max-num-batched-tokens:")
    assert cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--block-size", "32").code == 0


def test_latency_refuses_a_batch_beyond_the_engines_running_cap(cli) -> None:
    """QA finding: latency ran 1,500 requests as one batch where vLLM runs at most max_num_seqs (1,024 on an H100) and
    serve capped the same deployment at 1,024."""
    r = cli("latency", "llama3.2-1b", "--gpu", "h100", "--prompt", "1024", "--output", "256", "--batch", "1500")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --batch:") and "1,024" in r.err
    assert cli("latency", "llama3.2-1b", "--gpu", "h100", "--prompt", "1024", "--output", "256", "--batch",
               "1024").code == 0


def test_report_admits_the_batches_latency_admits(cli) -> None:
    """QA finding: report refused 250-329 requests of 1,280 tokens on one H100 that latency / concurrency admit (329):
    its fit read the static B x S x H activation estimate, not the engine's KV capacity."""
    args = ("llama3-8b", "--gpu", "h100", "--prompt", "1024", "--output", "256", "--json")
    most = cli("concurrency", "llama3-8b", "--gpu", "h100", "--max-model-len", "1280", "--json").json()["max_concurrency"]
    for batch, code in ((most, 0), (most + 1, 2)):
        assert cli("latency", *args, "--batch", str(batch)).code == code
        assert cli("report", *args, "--batch", str(batch)).code == code


def test_a_fixed_gpu_budget_counts_its_idle_gpus(cli) -> None:
    """QA finding: --num-gpus 3 ranked 1 x TP1 x PP2 (2 GPUs busy, 1 idle) first by tokens/s over the 2 it used, above
    3 x TP1 using all three. Over a fixed budget, tokens/s per GPU divides by every GPU paid for."""
    d = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--num-gpus", "3", "--json").json()
    assert d["best"]["replicas"] * d["best"]["gpus_per_replica"] == 3


def test_report_serves_on_the_pages_gpu_count(cli) -> None:
    """QA finding: `report` headed "on 1 x h100" (memory, latency) served on a TP1 x PP2 layout of 2 GPUs."""
    d = cli("report", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--json").json()
    assert d["num_gpus"] == 1 and d["serving"]["gpus_needed"] == 1
    d = cli("report", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--num-gpus", "2", "--json").json()
    assert d["num_gpus"] == 2 and d["serving"]["gpus_needed"] <= 2


def test_the_flag_at_fault_is_named(cli) -> None:
    """QA findings: --reserve-gib 1000 and latency --pp 33 were blamed on --num-gpus."""
    r = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--reserve-gib", "1000")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --reserve-gib:")
    r = cli("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--pp", "33")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --pp:")
    r = cli("concurrency", "llama3-8b", "--gpu", "h100", "--max-num-batched-tokens", "1e9")
    assert r.code == 2 and "--max-num-batched-tokens" in r.err and "more than 64" not in r.err


def test_a_time_band_never_goes_below_physics(cli) -> None:
    """QA finding: llama3-8b batch-1 TPOT on an L40S had a band low of 16.99 ms where streaming the step's 15.08 GB at
    the 864 GB/s datasheet bandwidth takes 17.45 ms."""
    d = cli("latency", "llama3-8b", "--gpu", "l40s", "--prompt", "512", "--output", "64", "--json").json()
    floor = d["decode_bytes_per_step"] / 864e9  # L40S datasheet: 864 GB/s GDDR6
    assert d["bands"]["tpot_s"]["low"] >= floor * (1 - 1e-12)
    assert d["bands"]["ttft_s"]["low"] >= d["ttft_at_full_peak_s"] * (1 - 1e-12)
