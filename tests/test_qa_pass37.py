"""Findings of the pass-37 hostile QA sweep (cross-command consistency), each with numbers worked out by hand."""

from __future__ import annotations


def test_latency_prefill_counts_the_windowed_pairs_flops_counts(cli) -> None:
    """Mistral 7B (32 layers, 32 heads of 128, sliding window 4,096) at an 8,000-token causal prefill: each layer sees
    W(W+1)/2 + (S-W)W = 8,390,656 + 15,990,784 = 24,381,440 (query, key) pairs, 780,206,080 over 32 layers, and
    2 x 32 heads x (128 + 128) x 780,206,080 = 12,782,896,414,720 FLOPs of attention. latency took the mean context
    (8,001 / 2 = 4,000.5 < W) and charged the full causal 32 x 8,000 x 8,001 / 2 pairs: 16,779,313,152,000, so
    --attention-windows full and applied gave one TTFT. The two prefills differ by exactly the attention."""
    pairs = 32 * (4096 * 4097 // 2 + (8000 - 4096) * 4096)
    assert pairs == 780_206_080
    windowed, full = 2 * 32 * 256 * pairs, 2 * 32 * 256 * 32 * 8000 * 8001 // 2
    flops = cli("flops", "mistral-7b", "--seq", "8000", "--attention-pairs", "causal", "--json").json()
    assert flops["forward_attention_flops"] == windowed
    run = {w: cli("latency", "mistral-7b", "--gpu", "h200", "--prompt", "8000", "--output", "1", "--attention-windows", w,
                  "--json").json() for w in ("applied", "full")}
    assert run["full"]["prefill_flops"] - run["applied"]["prefill_flops"] == full - windowed
    assert run["applied"]["ttft_s"] < run["full"]["ttft_s"]


def test_a_deployment_that_does_not_fit_has_no_time_figures_in_json(cli) -> None:
    """Llama 3 70B's 70.55e9 bf16 weights (131 GiB) do not load on one 80 GB H100: the table refuses before any time
    figure, and the JSON carries no TTFT / TPOT either (null), though it keeps what the step would move."""
    r = cli("latency", "llama3-70b", "--gpu", "h100-sxm", "--json")
    assert r.code == 2
    d = r.json()
    assert d["fits"] is False and d["fit"] == "does not fit"
    assert d["ttft_s"] is None and d["tpot_s"] is None and d["e2e_s"] is None and d["tokens_per_s"] is None
    # the step still says what it would stream: every weight but the embedding table, 2 x (70.55e9 - 1.05e9) B
    assert "ttft_s" not in d.get("bands", {}) and d["decode_bytes_per_step"] > 2 * 69.5e9
    fits = cli("latency", "llama3-70b", "--gpu", "h100-sxm", "--num-gpus", "4", "--json").json()
    assert fits["fits"] is True and fits["ttft_s"] > 0 and "ttft_s" in fits["bands"]


def test_full_recompute_flops_and_hfu_agree_across_flops_mfu_and_train_step(cli) -> None:
    """Full recomputation re-runs the layers' forward, not the output head's: Llama 2 7B at 2,048 tokens has a forward
    of 29,261,612,187,648 FLOPs (the flops doctest) and a 32,000 x 4,096 head, 2 x 2,048 x 131,072,000 =
    536,870,912,000 FLOPs of it, so 4 x forward - head = 116,509,577,838,592 (was 4 x forward). `mfu`'s HFU with
    full recomputation counts what train-step's HFU counts (causal flash), from the same step time."""
    f = cli("flops", "llama2-7b", "--seq", "2048", "--json").json()
    assert f["forward_flops"] == 29_261_612_187_648
    assert f["training_flops_full_recompute"] == 4 * 29_261_612_187_648 - 2 * 2048 * 32000 * 4096 == 116_509_577_838_592
    step = cli("train-step", "qwen3-30b-a3b", "--gpu", "h100-sxm", "--num-gpus", "8", "--global-batch", "256", "--ep", "8",
               "--zero", "1", "--recompute", "full", "--json").json()
    m = cli("mfu", "qwen3-30b-a3b", "--gpu", "h100-sxm", "--num-gpus", "8", "--global-batch", "256", "--step-time",
            repr(step["step_time_s"]), "--json").json()
    assert abs(m["mfu"] / step["mfu"] - 1) < 1e-9
    assert abs(m["hfu_full_recompute"] / step["hfu"] - 1) < 1e-9


def test_three_pipeline_stages_are_searched_where_latency_runs_them(cli) -> None:
    """Llama 3 70B's 141 GB of bf16 weights leave no KV room on 2 x 80 GB H100 (70.5 GB a GPU, above vLLM's 0.9 x
    79.2 GiB less its reserves) but fit on three as TP1 x PP3 (27 of 80 layers on the busiest stage, ~48 GB): latency
    and concurrency run --pp 3, so serve finds that layout on 3 GPUs and the fewest-GPUs advice says 3, not 4."""
    assert cli("latency", "llama3-70b", "--gpu", "h100-sxm", "--pp", "3", "--json").json()["fits"] is True
    two = cli("concurrency", "llama3-70b", "--gpu", "h100-sxm", "--num-gpus", "2")
    assert two.code == 2
    one = cli("concurrency", "llama3-70b", "--gpu", "h100-sxm")
    assert one.code == 2 and "needs >= 3 GPUs" in one.err
    plan = cli("serve", "llama3-70b", "--gpu", "h100-sxm", "--num-gpus", "3", "--json").json()
    assert plan["best"]["pp"] == 3 and plan["best"]["tp"] == 1


def test_latency_refuses_a_dtype_the_gpu_lacks_before_the_fit(cli) -> None:
    """The T4 datasheet lists fp16 (65 TFLOPS) and int8 tensor peaks, no bf16: latency named the GPU count first
    ("needs 2 GPUs"), then at 2 GPUs the dtype; serve names the dtype first, and now latency does too (a --dtype bf16
    given; as shipped, a bf16 checkpoint runs in fp16 there, as vLLM's --dtype auto resolves it)."""
    r = cli("latency", "llama3-8b", "--gpu", "t4", "--dtype", "bf16")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --dtype: t4 has no bf16 tensor peak")
    r = cli("latency", "llama3-8b", "--gpu", "t4", "--dtype", "fp16")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus")


def test_report_train_on_a_gpu_without_a_node_type_prices_the_placement(cli) -> None:
    """No node type ships for the A10, so no plan is searched and the MFU is assumed (0.4), as train-time does: report
    crashed in its table (no memory section) and its JSON said a 70B job fits 8 x 24 GB. Llama 3 70B's bf16-adam
    states alone are 16 B x 70.55e9 = 1.13 TB, 141 GB a GPU over 8: refused as train-time refuses it."""
    args = ("--gpu", "a10", "--num-gpus", "8", "--tokens", "1T")
    r = cli("report", "llama3-70b", "--mode", "train", *args)
    assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus: does not fit")
    t = cli("train-time", "llama3-70b", *args)
    assert t.code == 2 and t.err.startswith("llmcalc: error: --num-gpus: does not fit")
    small = cli("report", "qwen3-0.6b", "--mode", "train", "--gpu", "a10", "--num-gpus", "8", "--tokens", "1e10")
    assert small.code == 0 and "internal error" not in small.err
    d = cli("report", "qwen3-0.6b", "--mode", "train", "--gpu", "a10", "--num-gpus", "8", "--tokens", "1e10", "--json").json()
    assert d["fits"] is True and d["memory"]["per_gpu_bytes"] < 24e9
    assert d["train_time"]["mfu_source"] == "assumed (0.4: no node type ships for a10)"


def test_calibrate_keeps_an_unconstrained_efficiency_at_the_default_it_replaces(cli, tmp_path) -> None:
    """Four decode runs of Llama 3 8B on one H100, each slower than predicted, are all memory-bound: they say nothing
    of the GEMM rate, so the calibration's compute efficiency stays where latency and train-step have it without a
    calibration (the Hopper GEMM plateau), not at seed 001's 80%, which made every prefill 27% faster after a
    calibration that measured the GPU slower."""
    from calc.hardware.efficiency import gemm_plateau
    from calc.sources.catalog import load_gpu

    runs = tmp_path / "runs.csv"
    runs.write_text("model,gpu,num_gpus,batch,prompt,output,tpot_s\nllama3-8b,h100,1,1,1024,256,0.009\n"
                    "llama3-8b,h100,1,8,1024,256,0.010\nllama3-8b,h100,1,32,2048,256,0.013\n"
                    "llama3-8b,h100,1,64,1024,256,0.016\n")
    d = cli("calibrate", "--from-runs", str(runs), "--json").json()
    assert d["compute_runs"] == 0 and d["memory_runs"] == 4
    assert d["compute_efficiency"] == gemm_plateau(load_gpu("h100"), "bf16") < 0.8


def test_an_int8_or_fp32_kv_cache_is_refused_for_engines_that_cannot_start_one(cli) -> None:
    """vLLM's --kv-cache-dtype takes auto / bfloat16 / fp8 formats and SGLang's auto / bf16 / fp8: an int8 cache
    doubled vLLM's admitted requests for a launch the engine refuses (only --emit said so). TensorRT-LLM keeps it."""
    for engine in ("vllm", "sglang"):
        for kv in ("int8", "fp32"):
            r = cli("concurrency", "llama3-8b", "--gpu", "h100-sxm", "--engine", engine, "--kv-dtype", kv)
            assert r.code == 2 and r.err.startswith("llmcalc: error: --kv-dtype"), (engine, kv, r.err)
    r = cli("latency", "llama3-8b", "--gpu", "h100-sxm", "--kv-dtype", "int8")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --kv-dtype")
    assert cli("concurrency", "llama3-8b", "--gpu", "h100-sxm", "--engine", "trtllm", "--kv-dtype", "int8").code == 0


def test_training_flags_a_gpu_count_past_any_cluster_as_serving_does(cli) -> None:
    """2,000,000 GPUs is ten times the largest clusters built (~200K); serve warned of such a count, train-time priced
    it silently."""
    r = cli("train-time", "llama3-8b", "--gpu", "h100-sxm", "--num-gpus", "2000000", "--tokens", "1e12")
    assert r.code == 0 and "warning: --num-gpus: 2,000,000 GPUs, more than 1,000,000" in r.err
    r = cli("train-time", "llama3-8b", "--gpu", "h100-sxm", "--num-gpus", "1024", "--tokens", "1e12")
    assert "more than 1,000,000" not in r.err


def test_prefill_intensity_prices_the_head_on_the_last_positions_only(cli) -> None:
    """An engine's prefill computes logits for each prompt's last token: Llama 2 7B's 32,000 x 4,096 head adds
    2 x 131,072,000 FLOPs for one 1,024-token prompt, not 2 x 1,024 x 131,072,000 = 268.4 GFLOP (38% of what the
    'layer' figure was). One layer's GEMMs and scores stay: 700,079,669,248 - 268,435,456,000 + 262,144,000."""
    d = cli("flops", "llama2-7b", "--seq", "1024", "--intensity", "--json").json()["intensity_prefill"]
    assert d["layer_flops"] == 700_079_669_248 - 2 * 1024 * 131_072_000 + 2 * 131_072_000 == 431_906_357_248
