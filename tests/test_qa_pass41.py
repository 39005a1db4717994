"""Findings of the pass-40 and pass-41 hostile QA sweeps mended in pass 41, each checked against an independent path."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Llama 3 8B's matrix weights a decode step reads whole: every parameter but the embedding table (of which a step reads
# its rows): 8,030,261,248 - 128,256 x 4,096 = 7,504,924,672 at 2 bytes; its KV cache 32 layers x 8 KV heads x 128 x
# 2 (K and V) x 2 bytes = 131,072 bytes a token. H100 SXM: 3.35 TB/s HBM3 (datasheet).
LLAMA3_8B_DECODE_WEIGHTS = 2 * (8_030_261_248 - 128_256 * 4_096)
KV_BYTES_A_TOKEN = 32 * 8 * 128 * 2 * 2


def test_latency_takes_a_tpot_target_and_a_missed_target_exits_2(cli) -> None:
    """QA40 #22: latency has --tpot-ms as serve has, and a deployment that misses a target it was given prints its
    answer and exits 2 naming the flag (serve's exit when no layout meets the targets). TPOT's floor is the decode step
    at 100% of HBM bandwidth: one H100, batch 1, 1,024 + 256 tokens: the weights plus the KV cache at a context between
    the prompt and prompt + output over 3.35 TB/s, 4.49 - 4.53 ms."""
    run = ("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--output", "256", "--json")
    free = cli(*run)
    assert free.code == 0 and free.json()["meets_targets"] is None
    tpot = free.json()["tpot_s"]
    floor = free.json()["tpot_at_full_peak_s"]
    low, high = ((LLAMA3_8B_DECODE_WEIGHTS + KV_BYTES_A_TOKEN * n) / 3.35e12 for n in (1024, 1280))
    assert low <= floor <= high * 1.001
    met = cli(*run, "--tpot-ms", f"{tpot * 1e3 * 1.1:.6f}")
    assert met.code == 0 and met.json()["meets_targets"] is True
    assert met.json()["target_tpot_s"] == pytest.approx(tpot * 1.1, rel=1e-6)
    missed = cli(*run, "--tpot-ms", f"{tpot * 1e3 * 0.9:.6f}")
    assert missed.code == 2 and missed.json()["meets_targets"] is False
    assert missed.err.count("\n") == 1 and "--tpot-ms" in missed.err and "Traceback" not in missed.err
    assert "reachable only at" in missed.json()["verdict"]
    never = cli(*run, "--tpot-ms", f"{floor * 1e3 * 0.5:.6f}")
    assert never.code == 2 and "not reachable on these GPUs even at 100% of peak" in never.json()["verdict"]
    both = cli(*run, "--tpot-ms", f"{tpot * 1e3 * 1.1:.6f}", "--ttft-ms", "1")
    assert both.code == 2 and "--ttft-ms" in both.err and both.json()["meets_targets"] is False
    table = cli(*run[:-1], "--tpot-ms", f"{tpot * 1e3 * 0.9:.6f}")
    assert table.code == 2 and "TPOT" in table.out  # the table first, then the one error line
    for bad in ("0", "-5", "nan"):
        r = cli(*run, "--tpot-ms", bad)
        assert r.code == 2 and "--tpot-ms" in r.err and "Traceback" not in r.err


def test_report_finetune_lays_out_tp_and_pp_as_memory_finetune(cli) -> None:
    """QA40 #29: report --mode finetune takes --tp / --pp and prices the same job as memory --mode finetune (one
    placement, one engine): the page's per-GPU figure is memory's byte for byte, the layout is the one given, and
    splitting the model over 2 GPUs holds less a GPU than one GPU holding it whole. --tp / --pp are refused in --mode
    infer, whose layout serve picks, naming the command that takes them (--mode train pins its plan with them)."""
    for layout in (("--tp", "2"), ("--pp", "2", "--stack", "megatron"), ("--tp", "2", "--pp", "2", "--num-gpus", "8",
                                                                          "--stack", "megatron")):
        job = ("llama3-8b", "--gpu", "h100", "--mode", "finetune", *layout, "--json")
        page, mem = cli("report", *job), cli("memory", *job)
        assert page.code == 0 and mem.code == 0, page.err + mem.err
        ft = page.json()["finetune"]
        assert ft["per_gpu_bytes"] == mem.json()["per_gpu_bytes"]
        assert (ft["tp"], ft["pp"]) == (mem.json()["tp"], mem.json()["pp"])
        assert ft["tp"] * ft["pp"] * ft["dp"] == page.json()["num_gpus"]
    one = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--json").json()["finetune"]
    two = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--tp", "2", "--json").json()["finetune"]
    assert (one["tp"], two["tp"]) == (1, 2) and two["per_gpu_bytes"] < one["per_gpu_bytes"]
    r = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "infer", "--tp", "2")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --tp") and "latency" in r.err and r.err.count("\n") == 1
    bad = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--tp", "2", "--num-gpus", "3")
    assert bad.code == 2 and "--num-gpus" in bad.err
    # --num-gpus beside degrees: DP is the rest in every training-memory mode (train-step's rule), 8 / (2 x 2) = 2
    job = ("llama3-8b", "--gpu", "h100", "--tp", "2", "--pp", "2", "--num-gpus", "8", "--stack", "megatron", "--json")
    assert cli("memory", *job, "--mode", "finetune").json()["dp"] == cli("memory", *job, "--mode", "train").json()["dp"] == 2
    odd = cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--tp", "2", "--pp", "2", "--num-gpus", "6")
    assert odd.code == 2 and odd.err.startswith("llmcalc: error: --num-gpus") and "TP x PP x CP = 4" in odd.err


QWEN3_FP8 = str(ROOT / "benchmarks/data/corpus/configs/qwen3-235b-a22b-fp8.yaml")


def test_a_checkpoint_whose_scale_blocks_a_tp_slice_cuts_is_not_priced_there(cli) -> None:
    """QA40 #24 / #25: vLLM and SGLang refuse to load block-fp8 weights whose TP slice is not whole 128-wide blocks
    ("The output_size of gate's and up's weight = 192 is not divisible by weight quantization block_n = 128",
    Qwen3-235B-A22B-FP8 at TP 8: moe_intermediate_size 1,536 / 8 = 192; TP 4: 384 = 3 x 128), and AWQ weights whose
    row-parallel slice is not whole groups of 128 inputs (Qwen2.5-72B's intermediate 29,568 = 231 x 128 whole, / 2 =
    14,784 = 115.5 x 128). Under expert parallelism the experts stay whole (the gpustack corpus row ran -tp 8
    --enable-expert-parallel), so EP layouts stand; TensorRT-LLM builds its own engine and is not refused."""
    for cmd in (("latency", QWEN3_FP8, "--gpu", "h100", "--num-gpus", "8"),
                ("concurrency", QWEN3_FP8, "--gpu", "h100", "--num-gpus", "8", "--max-model-len", "8192"),
                ("latency", QWEN3_FP8, "--gpu", "h100", "--tp", "8", "--engine", "sglang")):
        r = cli(*cmd)
        assert r.code == 2 and r.out == "" and r.err.count("\n") == 1 and "192" in r.err and "128" in r.err, r.err
        assert "TP 4 keeps them whole" in r.err and "--ep" in r.err
    assert "--tp" in cli("latency", QWEN3_FP8, "--gpu", "h100", "--tp", "8").err.split(":")[2]
    for ok in (("latency", QWEN3_FP8, "--gpu", "h100", "--num-gpus", "4"),
               ("latency", QWEN3_FP8, "--gpu", "h100", "--tp", "8", "--ep", "8", "--num-gpus", "8"),
               ("latency", QWEN3_FP8, "--gpu", "h100", "--num-gpus", "8", "--engine", "trtllm")):
        assert cli(*ok).code == 0
    plan = cli("serve", QWEN3_FP8, "--gpu", "h100", "--num-gpus", "8", "--prompt", "1000", "--output", "200", "--json")
    names = [x["name"] for x in plan.json()["layouts"]]
    assert plan.code == 0 and "TP8" not in names and any("EP8" in n for n in names)
    assert any("1 layout skipped" in a and "192" in a for a in plan.json()["assumptions"])
    awq = cli("latency", "qwen2.5-72b", "--gpu", "h100", "--dtype", "awq", "--num-gpus", "2")
    assert awq.code == 2 and "14,784" in awq.err and "AWQ groups of 128" in awq.err and "TP 1 keeps them whole" in awq.err
    assert cli("latency", "qwen2.5-72b", "--gpu", "h100", "--dtype", "awq", "--num-gpus", "1").code == 0
    # online fp8 (--dtype fp8 on a bf16 checkpoint) has per-tensor scales: nothing to cut
    assert cli("latency", "qwen2.5-72b", "--gpu", "h100", "--dtype", "fp8", "--num-gpus", "8").code == 0


def test_a_fine_tuning_hint_that_fits_inside_the_band_says_it_is_tight(cli) -> None:
    """QA40 #12: the change a does-not-fit fine-tuning answer names can fit with less room than its band: Llama 3 8B
    LoRA at 4K on an RTX 4090 fits with --recompute full at 23.3 GiB of the card's 23.6. The hint then says so, with
    the band's high end: the figure x exp(-q10) of the fine-tuning pool's held-out residuals (q10 read from the fitted
    file, log(predicted / measured)); a hint with room (Mistral 7B: 17.3 GiB) says nothing more."""
    import json
    import math
    import re
    from pathlib import Path

    q10 = json.loads((Path(__file__).parents[1] / "calc/data/fitted_defaults.json").read_text())[
        "bands"]["pools"]["finetune_peak_memory"]["q10"]
    r = cli("memory", "llama3-8b", "--gpu", "rtx4090", "--mode", "finetune", "--method", "lora", "--seq", "4K")
    assert r.code == 2 and r.err.count("\n") == 1
    fix, high = re.search(r"--recompute full \(([\d.]+) GiB\), tight: its 80% band reaches ([\d.]+) GiB", r.err).groups()
    assert float(high) == pytest.approx(float(fix) * math.exp(-q10), abs=0.06)
    data = cli("memory", "llama3-8b", "--gpu", "rtx4090", "--mode", "finetune", "--method", "lora", "--seq", "4K",
               "--json").json()
    assert data["fits_with_bytes"] <= data["gpu_memory_bytes"] < data["fits_with_bytes"] * math.exp(-q10)
    roomy = cli("memory", "mistral-7b", "--gpu", "rtx4090", "--mode", "finetune", "--method", "lora", "--seq", "4K")
    assert roomy.code == 2 and "fits with --recompute full" in roomy.err and "tight" not in roomy.err


def test_memory_infer_says_when_the_release_caches_local_layers_whole(cli) -> None:
    """Pass 40's final read: `memory --mode infer` prices Llama 4's chunked-attention layers at their 8,192-token chunk,
    while vLLM 0.11 (the default release) runs them without the hybrid allocator (VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_
    HYBRID_KV_CACHE defaults to "0" from 0.10.1 to 0.13, PR #21761) and caches the whole context there: the engine
    line says so. Gemma 2's sliding layers have the hybrid allocator from 0.9.1: no such clause."""
    scout = cli("memory", "llama4-scout", "--gpu", "h100", "--num-gpus", "4", "--seq", "65536", "--json").json()
    assert "caches the whole context on the local-attention layers" in scout["engine_fit"]["line"]
    gemma = cli("memory", "gemma2-9b", "--gpu", "h100", "--seq", "8192", "--json").json()
    assert "caches the whole context" not in gemma["engine_fit"]["line"]


def test_the_html_report_carries_the_flops_and_derivations_the_markdown_one_does(cli, tmp_path) -> None:
    """QA40 #19: `report --format html` dropped the FLOPs and the derivations the table and Markdown print. Llama 3 8B:
    textbook 12 x 32 x 4,096^2 + 128,256 x 4,096 = 6,967,787,520; 2N = 2 x 8,030,261,248 = 16,060,522,496. Every
    derivation section of the Markdown page is on the HTML one, in the same order."""
    import html
    import re

    for mode in (("--mode", "infer"), ("--mode", "train", "--num-gpus", "8", "--tokens", "1T")):
        page = cli("report", "llama3-8b", "--gpu", "h100", *mode, "--format", "html")
        md = cli("report", "llama3-8b", "--gpu", "h100", *mode, "--format", "markdown")
        assert page.code == 0 and md.code == 0
        text = html.unescape(page.out)
        assert "6,967,787,520" in text and "2N = 16,060,522,496" in text
        md_sections = re.findall(r"^### (.+)$", md.out.split("## Derivations", 1)[1], re.M)
        assert re.findall(r"<h3>(.+?)</h3>", page.out) == md_sections and "FLOPs" in md_sections


def test_compare_explain_shows_each_gpus_arithmetic(cli) -> None:
    """QA40 #18: compare --explain printed assumptions only. Each GPU's lines now carry its pick's serve derivation,
    the deployment's tokens/s and the cost: $/M output tokens = GPUs x $/GPU-hour / (tokens/s x 3,600) x 10^6, checked
    here against the JSON's tokens/s by that formula."""
    run = ("compare", "llama3-8b", "h100", "a100", "--price", "h100=2.5", "--price", "a100=1.5")
    rows = cli(*run, "--json").json()
    text = cli(*run, "--explain").out
    for row, price in zip(rows, (2.5, 1.5), strict=True):
        assert row["cost_per_million_tokens"] == pytest.approx(row["gpus"] * price / (row["tokens_per_s"] * 3600) * 1e6)
        assert any(line.startswith("$/M tokens = ") for line in row["explain"])
        assert f"{row['gpu']}: $/M tokens = GPUs x $/GPU-hour" in " ".join(text.split())
        assert "mu = B/(TTFT + (O - 1) x TPOT)" in row["explain"][0]


def test_tp_must_divide_the_dense_ffn_width_and_the_hint_lists_what_passes(cli) -> None:
    """QA41 F7: TP splits the MLP's gate / up outputs and down inputs into whole 1/t slices (vLLM and Megatron size
    each shard with divide(), which asserts). Qwen2.5-7B: 28 heads, 4 KV heads, FFN 18,944 = 2^8 x 74: TP 28 divides
    the heads, is a multiple of the KV heads, but 18,944 / 28 = 676.6: refused. Qwen2.5-14B: 40 heads, 8 KV heads,
    FFN 13,824 = 2^9 x 27: of the head divisors 1, 2, 4, 5, 8, 10, 20, 40, the KV heads rule out 5, 10, 20 and the FFN
    rules out 40 (13,824 / 40 = 345.6), so every refusal names 1, 2, 4, 8."""
    r = cli("latency", "qwen2.5-7b", "--gpu", "h100", "--tp", "28")
    assert r.code == 2 and "FFN width 18,944" in r.err and r.err.rstrip().endswith("try 1, 2, 4")
    for tp in ("3", "5", "40"):
        for cmd in ("latency", "concurrency"):
            r = cli(cmd, "qwen2.5-14b", "--gpu", "h100", "--tp", tp)
            assert r.code == 2 and r.err.startswith("llmcalc: error: --tp") and r.err.rstrip().endswith("try 1, 2, 4, 8")
    assert cli("latency", "qwen2.5-14b", "--gpu", "h100", "--tp", "8").code == 0
    assert cli("train-step", "qwen2.5-7b", "--gpu", "h100", "--num-gpus", "28", "--tp", "28").code == 2


def test_sequence_parallelism_needs_whole_tokens_on_every_tp_rank(cli) -> None:
    """QA41 F6: Megatron-Core scatters the sequence over the TP ranks under --sp and asserts divisibility: 4,097
    tokens over TP 8 are refused in train-step and memory --mode train, and train-plan proposes no SP layout there;
    4,096 (512 a rank) runs."""
    bad = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--tp", "8", "--sp", "--seq", "4097",
              "--global-batch", "8")
    assert bad.code == 2 and bad.err.startswith("llmcalc: error: --sp") and "4,097" in bad.err
    assert cli("memory", "llama3-8b", "--mode", "train", "--gpu", "h100", "--tp", "8", "--sp", "--seq", "4097").code == 2
    ok = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--tp", "8", "--sp", "--seq", "4096",
             "--global-batch", "8")
    assert ok.code == 0
    plans = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--seq", "4097", "--json").json()["plans"]
    assert plans and not any(p["sp"] and 4097 % p["tp"] for p in plans)


def test_pp_slot_flags_are_refused_without_a_pipeline_in_memory_too(cli) -> None:
    """QA41 F2: --pp-embedding / --pp-loss at PP 1 changed nothing in `memory --mode train` (train-step refused them)."""
    for flag in ("--pp-embedding", "--pp-loss"):
        r = cli("memory", "llama3-8b", "--gpu", "h100", "--dp", "8", "--zero", "2", "--mode", "train", flag)
        assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}") and "--pp 1" in r.err


def test_a_gpu_or_model_from_a_file_gets_the_band_of_its_generation_and_kind(cli, tmp_path) -> None:
    """QA41 F4: a GPU YAML (show --yaml, renamed) kept arch Hopper but its bands were looked up as generation
    "unknown"; a MoE model from a config file was banded as dense. Both now read the file's spec: the renamed H100
    gets the H100's band group, the Qwen3-235B-A22B-FP8 config the MoE group."""
    import yaml

    spec = yaml.safe_load(cli("show", "h100", "--yaml").out)
    spec.update({"name": "my-h100-copy", "aliases": []})
    path = tmp_path / "my-h100.yaml"
    path.write_text(yaml.safe_dump(spec))
    mine = cli("latency", "llama3-8b", "--gpu", str(path), "--json").json()["bands"]["tpot_s"]
    catalog = cli("latency", "llama3-8b", "--gpu", "h100", "--json").json()["bands"]["tpot_s"]
    assert mine == catalog and "Hopper" in mine["group"]
    moe = cli("latency", QWEN3_FP8, "--gpu", "h100", "--num-gpus", "4", "--json").json()["bands"]["tpot_s"]
    assert "moe" in moe["group"]


def test_report_train_pins_the_global_batch_and_layout_as_train_time(cli) -> None:
    """QA41 F1: report --mode train took no --global-batch / --global-batch-tokens / --tp / --pp, so a train-time
    answer could not be reproduced on the page. The page's plan, MFU, days and global batch are now train-time's for
    the same flags (one plan search); 1,048,576 tokens of 8,192 are 128 sequences. Outside --mode train the batch is
    refused, and with --mfu (no plan) the pins are, as train-time refuses them."""
    base = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--seq", "8192", "--tokens", "1T")
    for extra in (("--global-batch", "64"), ("--tp", "2"), ("--global-batch-tokens", "1048576", "--pp", "2")):
        page = cli("report", base[0], "--mode", "train", *base[1:], *extra, "--json").json()["train_time"]
        timed = cli("train-time", *base, *extra, "--json").json()
        assert (page["plan"], page["global_batch"], page["mfu"], page["days"]) == \
            (timed["plan"], timed["global_batch"], timed["mfu"], timed["days"])
    assert page["global_batch"] == 1_048_576 // 8192 and "PP2" in page["plan"]
    r = cli("report", "llama3-8b", "--gpu", "h100", "--global-batch", "64")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --global-batch")
    r = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--mfu", "0.4", "--tp", "2")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --tp")


def test_adafactor_factors_the_embedding_and_head_too(cli) -> None:
    """QA41 F8: Adafactor factors every parameter of two or more dimensions (transformers Adafactor._get_options:
    factored = len(shape) >= 2). Llama 3 8B full fine-tune, fp32 states: the blocks' matrices 32 x (8,192 + 5,120 +
    5,120 + 8,192 + 3 x 18,432) = 2,621,440 values, the embedding and the untied head (128,256 + 4,096) each, and the
    266,240 norm weights whole: (2,621,440 + 2 x 132,352 + 266,240) x 4 B = 12,609,536 B (it was 4.2 GB: the
    embedding and head kept a full moment)."""
    r = cli("memory", "llama3-8b", "--mode", "finetune", "--method", "full", "--gpu", "h200", "--seq", "2048",
            "--optimizer", "adafactor", "--explain")
    assert r.code == 0 and "optimizer states (adafactor) = 12,609,536 B" in r.out


def test_memory_train_says_when_train_steps_default_batch_gives_another_peak(cli) -> None:
    """QA41 F10: without --global-batch, `memory --mode train` prices one step without gradient accumulation (as
    --mode finetune's --grad-accum 1: one engine, one figure for the two), where train-step takes its default global
    batch (4,194,304 / 8,192 = 512 sequences) and keeps the gradients across micro-batches. The note gives train-step's
    figure, which memory itself gives with that --global-batch: the same bytes as train-step. mxfp8 on Hopper is
    refused by both (QA41 F9)."""
    import re

    job = ("llama3-8b", "--gpu", "h100", "--zero", "2", "--seq", "8192")
    r = cli("memory", *job, "--mode", "train", "--dp", "8")
    theirs = float(re.search(r"default of 512 sequences accumulates and keeps the gradients: ([\d.]+) GiB", r.err).group(1))
    step = cli("train-step", *job, "--num-gpus", "8", "--json").json()["memory_per_gpu_bytes"]
    pinned = cli("memory", *job, "--mode", "train", "--dp", "8", "--global-batch", "512", "--json").json()["per_gpu_bytes"]
    assert pinned == step and theirs == round(step / 2**30, 2)
    for cmd in (("memory", "--mode", "train", "--dp", "8"), ("train-step", "--num-gpus", "8")):
        bad = cli(cmd[0], "llama3-8b", "--gpu", "h100", *cmd[1:], "--dtype", "fp8", "--fp8-recipe", "mxfp8")
        assert bad.code == 2 and bad.err.startswith("llmcalc: error: --fp8-recipe") and "Blackwell" in bad.err


def test_the_readme_table4_sentence_is_what_train_step_prints(cli) -> None:
    """QA41 F12: README prose quoted figures the CLI no longer printed; the Llama 3 Table 4 sentence is pinned here."""
    import re
    from pathlib import Path

    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    need, cap, step_s = re.search(r"zero2-pp`, needs ([\d.]+) of ([\d.]+) GiB \(fit: tight; ([\d.]+) s a step\)", readme).groups()
    run = ("train-step", "llama3.1-405b", "--gpu", "h100", "--num-gpus", "8192", "--tp", "8", "--pp", "16", "--vpp", "8",
           "--sp", "--pp-embedding", "--pp-loss", "--seq", "8192", "--global-batch", "2048", "--zero", "2", "--sharding",
           "zero2-pp", "--json")
    d = cli(*run).json()
    assert (f"{d['memory_per_gpu_bytes'] / 2**30:.2f}", f"{d['gpu_memory_bytes'] / 2**30:.2f}", f"{d['step_time_s']:.1f}",
            d["fit"]) == (need, cap, step_s, "tight")


def test_serve_plans_no_layout_the_engine_would_not_start_at_its_max_model_len(cli) -> None:
    """QA41 F16: vLLM checks at startup that one request of --max-model-len fits its KV cache; latency and concurrency
    refused 1,000,000 tokens on one H100 (its cache holds about 422K tokens of Llama 3 8B) while serve priced that
    GPU and emitted a line that fails. serve now plans only layouts that start: none on 1 GPU (exit 2, saying why),
    and its pick's KV cache holds a request of that length."""
    args = ("llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "100", "--max-model-len", "1000000")
    one = cli("serve", *args, "--num-gpus", "1")
    assert one.code == 2 and "--max-model-len 1,000,000" in one.err
    plan = cli("serve", *args, "--json").json()
    assert plan["best"]["gpus_needed"] > 1 and all(x["kv_cache_tokens"] >= 1_000_000 for x in plan["layouts"])


def test_a_vllm_v0_launch_line_chunks_prefill_as_priced(cli) -> None:
    """QA41 F17: vLLM V0 chunks prefill only when told below a 32K context, and refuses a --max-num-batched-tokens
    below --max-model-len otherwise (SchedulerConfig._verify_args); serve priced chunked steps and emitted a line
    without --enable-chunked-prefill. The line now has it exactly when the plan chunks."""
    base = ("serve", "llama3-8b", "--gpu", "h100", "--engine", "vllm-v0", "--prompt", "4000", "--output", "100",
            "--emit", "vllm")
    chunked = cli(*base, "--max-num-batched-tokens", "2048")
    assert chunked.code == 0 and "--max-num-batched-tokens 2048 --enable-chunked-prefill" in chunked.out
    whole = cli(*base)
    assert whole.code == 0 and "vllm serve" in whole.out and "--enable-chunked-prefill" not in whole.out


def test_a_bf16_checkpoint_runs_in_fp16_on_gpus_without_bf16_as_vllm_auto_does(cli, tmp_path) -> None:
    """QA41 F13: vLLM's --dtype auto takes the platform's first supported dtype where the checkpoint's is missing
    (vllm/config/model.py _resolve_auto_dtype; CUDA below compute capability 8.0: fp16, fp32), so Llama 3.2 1B (bf16)
    is served in fp16 on a V100 / T4, at the fp16 tensor peak (V100 125, T4 65 TFLOPS), and the weights line says
    why; Gemma 2, which vLLM will not run in fp16, is still refused (naming --gpu: vLLM would run it in fp32).
    Loss chunks beyond the tokens are refused (QA41 F21): 2,048 tokens hold at most 2,048 chunks."""
    for gpu in ("v100-32g", "t4"):
        d = cli("latency", "llama3.2-1b", "--gpu", gpu, "--json").json()
        assert d["dtype"] == "fp16" and "falls back to fp16" in d["assumptions"][0]
        assert cli("serve", "llama3.2-1b", "--gpu", gpu).code == 0
    g = cli("latency", "gemma2-9b", "--gpu", "v100-32g")  # vLLM would run it in fp32 (tests/test_qa_pass42.py)
    assert g.code == 2 and g.err.startswith("llmcalc: error: --gpu")
    g = cli("latency", "gemma2-9b", "--gpu", "v100-32g", "--dtype", "fp16")  # vLLM refuses fp16 for Gemma 2 / 3 too
    assert g.code == 2 and "refuses to run gemma2-9b in fp16" in g.err
    import yaml  # the rule reads the architecture (4 norms a layer around a GELU MLP), not the name

    spec = yaml.safe_load(open(ROOT / "model_configs/gemma2-9b.yaml"))
    spec.update({"name": "my-finetune-9b", "aliases": []})
    (tmp_path / "g2.yaml").write_text(yaml.safe_dump(spec))
    assert cli("latency", str(tmp_path / "g2.yaml"), "--gpu", "v100-32g").code == 2
    job = ("memory", "llama3-8b", "--mode", "finetune", "--method", "qlora", "--gpu", "rtx4090", "--seq", "2048",
           "--loss", "chunked", "--loss-chunks")
    assert cli(*job, "2048").code == 0
    r = cli(*job, "2049")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --loss-chunks")
    # the default 8 chunks are not a given value: 4 tokens are priced in 4 chunks of one token, not refused
    assert cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--seq", "4", "--loss", "chunked").code == 0


def test_latency_pipelines_whole_sequences(cli) -> None:
    """QA41 F3: under PP the batch enters as micro-batches of whole sequences; 3 requests on 2 stages are micro-batches
    of 2 and 1, not two of 1.5. With T1 the one-sequence prefill step (batch 1 on the same layout: its TTFT) and T2
    the two-sequence step (8,000 tokens, one step under the 8,192-token budget, read from the explain's step line),
    the last request's first token leaves at (T2 + T1 + (2 - 1) x T2) / 2; batch 2 is (T1 + T1 + T1) / 2 = 1.5 T1.
    Decode runs the largest micro-batch, 2 sequences, per token."""
    run = ("latency", "llama3-70b", "--gpu", "h100", "--tp", "4", "--pp", "2", "--prompt", "4000", "--output", "200",
           "--json")
    t1 = cli(*run, "--batch", "1").json()["ttft_s"]
    assert cli(*run, "--batch", "2").json()["ttft_s"] == pytest.approx(1.5 * t1, rel=1e-9)
    three = cli(*run, "--batch", "3").json()
    line = three["explain"][1]
    assert "the largest of 2 micro-batches of whole sequences: 1 x 2, 1 x 1" in line
    t2 = float(line.rsplit("= ", 1)[1].split(" ms")[0].replace(",", "")) / 1e3
    assert three["ttft_s"] == pytest.approx((t2 + t1 + t2) / 2, rel=1e-4)
    assert "decode 2 sequences" in three["explain"][2]
    # prefill_steps counts every micro-batch's chunk steps, as the TTFT line sums them: 2 x 6,000 tokens over the
    # 8,192-token budget are 2 steps, the other micro-batch's 6,000 one
    chunked = cli("latency", "llama3-8b", "--gpu", "h100", "--num-gpus", "2", "--pp", "2", "--batch", "3", "--prompt",
                  "6000", "--json").json()
    assert chunked["prefill_steps"] == 3 and "sum of the 3 prefill steps" in chunked["explain"][3]


def test_show_says_why_a_derived_peak_is_off_the_datasheet(cli) -> None:
    """QA41 F14: REFERENCE sec. 4 wants a derived peak more than 1% off the datasheet explained where it is shown.
    L40S: 256 x 4 x 142 x 2520 MHz = 366.4 TFLOPS bf16 against the datasheet's 362.05 (= 142 x 4 x 256 x 2490 MHz),
    while its TF32 183 and FP8 733 match 2520 MHz: the view prints that note under the derivation."""
    out = " ".join(cli("show", "l40s").out.split())
    assert "(datasheet 362.05, +1.21%)" in out and "peak note: the datasheet's BF16 / FP16 figure (362.05) uses 2490 MHz" in out
    assert 142 * 4 * 256 * 2490e6 / 1e12 == pytest.approx(362.05, abs=0.05)


def test_train_time_prices_packed_documents_and_mfu_reads_the_batch_in_tokens(cli) -> None:
    """QA41 F15: train-time takes --doc-tokens as train-step does (its plan's step time and MFU are train-step's for the
    same pinned run, and the days follow: 1T tokens / (64 x 8,192 tokens a step) steps x the step time); mfu takes
    --global-batch-tokens as the other training commands do (524,288 tokens of 8,192 = 64 sequences)."""
    run = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--seq", "8192", "--global-batch", "64", "--zero", "2",
           "--doc-tokens", "2048", "--json")
    timed = cli("train-time", *run[:1], "--tokens", "1T", *run[1:]).json()
    step = cli("train-step", *run).json()
    assert (timed["mfu"], timed["step_time_s"]) == (step["mfu"], step["step_time_s"])
    assert timed["days"] == pytest.approx(1e12 / (64 * 8192) * step["step_time_s"] / 86400, rel=1e-9)
    plain = cli("train-time", *run[:1], "--tokens", "1T", *run[1:-3], "--json").json()
    assert plain["step_time_s"] > timed["step_time_s"]  # 8K attention spans cost more than 2K documents
    base = ("mfu", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--step-time", "6.5", "--seq", "8192", "--json")
    assert cli(*base, "--global-batch-tokens", "524288").json()["mfu"] == cli(*base, "--global-batch", "64").json()["mfu"]


def test_one_dtype_vocabulary_for_the_api_and_the_cli(cli) -> None:
    """QA41 F19: the Python engine priced --dtype nvfp4 / awq as an unknown dtype where the CLI priced the checkpoint;
    now inference_memory takes them and gives the CLI's bytes. TF32 is a matmul mode of fp32 tensors: its KV (and every
    byte) is fp32's, 2 (K, V) x 32 layers x 4,096 x 4 B = 1,048,576 a token for Llama 2 7B. report --mode infer refuses
    --price naming compare, where a serving cost is priced (F20)."""
    from calc.memory.inference import inference_memory
    from calc.sources.catalog import load_model

    m = load_model("llama2-7b")
    for dtype in ("nvfp4", "mxfp4", "awq", "gptq"):
        api = inference_memory(m, dtype=dtype).weights_bytes
        assert api == cli("memory", "llama2-7b", "--dtype", dtype, "--json").json()["weights_bytes"]
    tf32 = cli("memory", "llama2-7b", "--dtype", "tf32", "--json").json()
    fp32 = cli("memory", "llama2-7b", "--dtype", "fp32", "--json").json()
    assert tf32["kv_cache_bytes_per_token"] == fp32["kv_cache_bytes_per_token"] == 2 * 32 * 4096 * 4
    assert tf32["per_gpu_bytes"] == fp32["per_gpu_bytes"]
    r = cli("report", "llama3-8b", "--gpu", "h100", "--price", "2")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --price") and "compare" in r.err


QWEN3_30B_FP8 = str(ROOT / "benchmarks/data/corpus/configs/qwen3-30b-a3b-fp8.yaml")


def test_the_second_sweep_of_this_pass(cli, tmp_path) -> None:
    """The sweep of this pass's own changes (/tmp/qa41b_out during the pass), each against an independent figure:
    - memory --mode infer's engine line says the engine would not load Qwen3-30B-A3B-FP8 at TP 4 (768 / 4 = 192, not
      a whole 128-wide block) and its fewest GPUs skip such layouts; --dtype fp8 on that fp8 checkpoint loads the same
      scales and is refused alike;
    - train-step, train-time and train-plan --tp refuse a TP that does not divide the FFN width (a Llama 3 8B with an
      FFN of 14,340: 14,340 / 8 = 1,792.5), naming 1, 2, 4 (14,340 = 4 x 3,585, 3,585 odd); fine-tuning refuses --tp 3
      for the 32 heads with that list (not the Megatron KV rule under --stack hf), and --sp with 4,098 tokens on TP 4;
    - report --mode finetune refuses --global-batch (it changed nothing)."""
    import yaml

    line = cli("memory", QWEN3_30B_FP8, "--gpu", "h100", "--num-gpus", "4", "--json").json()["engine_fit"]
    assert line["fits"] is False and "would not load it on 4 x h100-sxm" in line["line"] and "192" in line["line"]
    assert line["min_gpus"] != 4
    r = cli("latency", QWEN3_30B_FP8, "--gpu", "h100", "--tp", "4", "--dtype", "fp8")
    assert r.code == 2 and "192" in r.err
    r = cli("report", QWEN3_30B_FP8, "--gpu", "h100", "--num-gpus", "4")  # and report, whose page is that layout
    assert r.code == 2 and r.out == "" and "192" in r.err
    runs = tmp_path / "runs.csv"  # calibrate refuses a run on that layout, as latency does
    runs.write_text(f"model,gpu,num_gpus,batch,prompt,output,ttft_s,tpot_s\n{QWEN3_30B_FP8},h100,4,1,1024,256,,0.012\n")
    r = cli("calibrate", "--from-runs", str(runs))
    assert r.code == 2 and r.err.startswith("llmcalc: error: --from-runs: run 1: num_gpus") and "192" in r.err
    spec = yaml.safe_load(open(ROOT / "model_configs/llama3-8b.yaml"))
    spec.update({"name": "odd-ffn", "aliases": [], "intermediate_size": 14340})
    odd = tmp_path / "odd.yaml"
    odd.write_text(yaml.safe_dump(spec))
    for cmd in (("train-step", str(odd), "--gpu", "h100", "--tp", "8", "--num-gpus", "8", "--global-batch", "64"),
                ("train-time", str(odd), "--gpu", "h100", "--tp", "8", "--num-gpus", "8", "--tokens", "1e9"),
                ("train-plan", str(odd), "--gpu", "h100", "--num-gpus", "8", "--tp", "8", "--global-batch", "64")):
        r = cli(*cmd)
        assert r.code == 2 and "FFN width 14,340" in r.err and r.err.rstrip().endswith("try 1, 2, 4"), r.err
    r = cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--tp", "3")
    assert r.code == 2 and "32 attention heads" in r.err and r.err.rstrip().endswith("try 1, 2, 4, 8, 16, 32")
    r = cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--tp", "4", "--sp", "--seq", "4098")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --sp")
    r = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--global-batch", "64")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --global-batch")


def test_mfu_names_the_batch_flag_typed_and_a_fraction_of_a_sequence_is_shown(cli) -> None:
    """Second sweep F12: mfu named --global-batch when --global-batch-tokens was typed, and 4,194,305 tokens of
    4,096 were called "1024 sequences ..., not a whole number": it is 1,024 + 1 / 4,096."""
    r = cli("mfu", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens-per-s", "700000",
            "--global-batch-tokens", "4194304")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --global-batch-tokens") and "(got --tokens-per-s and " \
        "--global-batch-tokens)" in r.err
    r = cli("mfu", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--step-time", "5.64", "--global-batch-tokens",
            "4194305")
    assert r.code == 2 and "= 1,024 + 1 / 4,096 sequences" in r.err


def test_train_plan_runs_tp_without_sp_where_sp_cannot_split_the_sequence(cli) -> None:
    """Second sweep F19: 4,098 tokens do not split over TP 4 (4,098 / 4 = 1,024.5), so sequence parallelism cannot run,
    but TP 4 without it can (train-step prices it): the search keeps those layouts, without SP, instead of blaming
    --global-batch."""
    plans = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--seq", "4098", "--tp", "4", "--json")
    assert plans.code == 0 and plans.json()["plans"] and all(p["tp"] == 4 and not p["sp"] for p in plans.json()["plans"])
    sp = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--seq", "4096", "--tp", "4", "--json")
    assert all(p["sp"] for p in sp.json()["plans"])


def test_hybrid_mixers_bound_tp_and_latency_names_every_missed_target(cli) -> None:
    """Second sweep F16 / F17: Nemotron-H 8B's Mamba-2 has 8 B / C groups, which vLLM's MambaMixer2 needs TP to divide
    (or to be 1): TP 16 refused, the hint 1, 2, 4, 8; Qwen3-Next's Gated DeltaNet has 16 key heads: TP 32 refused. A
    latency run that misses both targets names both and the serve command with both."""
    r = cli("latency", "nemotron-h-8b", "--gpu", "h100", "--tp", "16")
    assert r.code == 2 and "8 mamba2 B / C groups" in r.err and r.err.rstrip().endswith("try 1, 2, 4, 8")
    r = cli("latency", "qwen3-next-80b", "--gpu", "h100", "--tp", "32")
    assert r.code == 2 and "16 gated_deltanet key heads" in r.err
    r = cli("latency", "llama3-8b", "--gpu", "h100", "--tpot-ms", "5", "--ttft-ms", "10", "--prompt", "4096")
    assert r.code == 2 and "TTFT" in r.err and "TPOT" in r.err and "serve --ttft-ms 10 --tpot-ms 5" in r.err


def test_the_second_sweep_of_this_pass_the_rest(cli, tmp_path) -> None:
    """Second sweep F21, F23, F24, F25, F20: vLLM's startup check on --max-model-len is vLLM's (SGLang starts and caps
    a request at its pool); calibrate sizes a run's fit at its own batch (--max-num-seqs = the batch), so Llama 3 70B
    on 2 H100 at 4 requests is fitted; a compressed-tensors W4A16 group-128 checkpoint whose MLP is 29,568 wide is
    refused at TP 8 as AWQ is (3,696 inputs a rank); report --mode train takes --doc-tokens as train-time does; the
    fine-tuning view names CP."""
    import json
    from pathlib import Path

    sg = cli("serve", "llama3-8b", "--gpu", "l4", "--num-gpus", "1", "--max-model-len", "32768", "--engine", "sglang")
    assert sg.code == 0
    assert cli("latency", "llama3-8b", "--gpu", "l4", "--max-model-len", "32768", "--engine", "sglang").code == 0
    assert cli("latency", "llama3-8b", "--gpu", "l4", "--max-model-len", "32768").code == 2  # vLLM would not start
    runs = tmp_path / "runs.csv"
    runs.write_text("model,gpu,num_gpus,batch,prompt,output,ttft_s,tpot_s\nllama3-70b,h100,2,4,1024,256,,0.03\n")
    assert cli("calibrate", "--from-runs", str(runs)).code == 0
    root = Path(__file__).parents[1]
    spec = json.loads((root / "benchmarks/data/configs/llama-3.3-70b-instruct-w4a16.json").read_text())
    spec["intermediate_size"] = 29568
    ct = tmp_path / "config.json"
    ct.write_text(json.dumps(spec))
    r = cli("latency", str(ct), "--gpu", "h100", "--tp", "8")
    assert r.code == 2 and "3,696 inputs a rank" in r.err and "compressed-tensors groups of 128" in r.err
    run = ("--gpu", "h100", "--num-gpus", "64", "--tokens", "1e12", "--doc-tokens", "512", "--json")
    page = cli("report", "llama3-8b", "--mode", "train", *run).json()["train_time"]
    timed = cli("train-time", "llama3-8b", *run).json()
    assert (page["days"], page["mfu"], page["plan"]) == (timed["days"], timed["mfu"], timed["plan"])
    ft = cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--cp", "2", "--num-gpus", "8")
    assert "DP 4, CP 2" in ft.out and cli("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--cp", "2",
                                          "--num-gpus", "8", "--json").json()["cp"] == 2
