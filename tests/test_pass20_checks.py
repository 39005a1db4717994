"""Pass 20: a predicted figure beyond anything measured says so (the brief: results outside physical limits are
refused or flagged)."""

from __future__ import annotations

import json

from calc.sanity import HIGHEST_PUBLISHED_MFU, check_predicted_mfu


def test_the_bound_is_the_published_torchtitan_a100_figure() -> None:
    """torchtitan docs/performance.md: "MFU 61.1%" for Llama 2 13B on 64 A100 80GB (FSDP2, local batch 2, no AC):
    the highest training MFU the corpus quotes."""
    from types import SimpleNamespace as Plan

    assert HIGHEST_PUBLISHED_MFU == 0.611
    assert check_predicted_mfu(Plan(mfu=0.611, mfu_causal=None)) == [] and check_predicted_mfu(None) == []
    (line,) = check_predicted_mfu(Plan(mfu=0.62, mfu_causal=None))
    assert line.startswith("MFU: predicted 62.0% (attention counted causal) is above") and "61.1%" in line
    # the causal count is compared: a long sequence's full s x s count (twice the attention done) alone is no flag
    assert check_predicted_mfu(Plan(mfu=0.67, mfu_causal=0.49)) == []


def _json(out: str) -> dict:
    return json.JSONDecoder().raw_decode(out)[0]


def test_a_planner_flags_a_predicted_mfu_above_every_published_run(cli) -> None:
    """Llama 3 405B on 128 A100 at 2,048 x 2K sequences: TP8 x PP16 interleaved (VPP 4) with 2,048 micro-batches has
    no bubble to speak of and no recompute, so its predicted MFU exceeds 61.1%: train-plan, train-step (the same plan)
    and train-time each say so on stderr, once, and still answer. (Llama 3 70B on 16 A100 at 4K was the case until the
    pass-35 refit moved the Ampere plateau from 0.69 to 0.65: it now reads 59.5%, below the bound, so no flag.)"""
    common = ["--gpu", "a100-80g", "--seq", "2048"]
    plan = cli("train-plan", "llama3-405b", *common, "--num-gpus", "128", "--global-batch", "2048", "--json")
    assert plan.code == 0
    best = _json(plan.out)["plans"][0]
    assert (best["tp"], best["pp"], best["vpp"]) == (8, 16, 4) and best["mfu_causal"] > HIGHEST_PUBLISHED_MFU
    assert plan.err.count("llmcalc: warning: MFU: predicted") == 1
    step = cli("train-step", "llama3-405b", *common, "--tp", "8", "--pp", "16", "--vpp", "4", "--sp", "--global-batch",
               "2048", "--json")
    assert step.code == 0 and _json(step.out)["mfu_causal"] > HIGHEST_PUBLISHED_MFU
    assert "warning: MFU: predicted" in step.err
    time = cli("train-time", "llama3-405b", *common, "--num-gpus", "128", "--tokens", "1T", "--json")
    assert time.code == 0 and "warning: MFU: predicted" in time.err


def test_a_plan_below_the_bound_is_not_flagged(cli) -> None:
    """Llama 3 8B on 8 H100 with FSDP at 8K (one sequence per GPU): a plan well below 61.1% carries no such line."""
    r = cli("train-step", "llama3.1-8b", "--gpu", "h100", "--dp", "8", "--seq", "8192", "--zero", "3", "--stack", "fsdp",
            "--global-batch", "16", "--json")
    assert r.code == 0 and _json(r.out)["mfu_causal"] < HIGHEST_PUBLISHED_MFU
    assert "MFU: predicted" not in r.err


def test_report_warns_a_tight_plan_once(cli) -> None:
    """report --mode train holds the plan and the days computed from it: one plan, one margin, one warning line (it
    printed two, worded apart, for the same 0.71 GiB)."""
    r = cli("report", "llama3-70b", "--gpu", "a100-80g", "--mode", "train", "--num-gpus", "16", "--seq", "4096",
            "--tokens", "1T")
    assert r.code == 0
    assert r.err.count("warning: fit: tight:") == 1, r.err


def test_latency_max_model_len_gives_the_engine_log_figure_and_refuses_what_would_not_start(cli) -> None:
    """latency --max-model-len changed nothing (the option audit). Now: (1) the JSON carries the engine's
    max_model_len and vLLM's "Maximum concurrency for T tokens per request", equal to `concurrency --max-model-len T`
    on the same deployment; (2) a length the KV cache cannot hold once is refused naming the flag, as vLLM refuses to
    start. Llama 3.1 8B on one L4: ~28.8K KV tokens, so 8,192 holds 3 requests (3 x 8,192 = 24,576 <= 28.8K <
    4 x 8,192) and 131,072 not one."""
    conc = _json(cli("concurrency", "llama3.1-8b", "--gpu", "l4", "--max-model-len", "8192", "--json").out)
    assert 24_576 <= conc["kv_cache_tokens"] < 32_768 and conc["max_concurrency"] == 3
    base = ["latency", "llama3.1-8b", "--gpu", "l4", "--batch", "1", "--prompt", "2000", "--output", "200"]
    r = cli(*base, "--max-model-len", "8192", "--json")
    assert r.code == 0
    d = _json(r.out)
    assert d["max_model_len"] == 8192 and d["max_concurrency_at_max_model_len"] == conc["max_concurrency"]
    assert d["max_concurrency"] > d["max_concurrency_at_max_model_len"]  # requests of 2,200 tokens, not 8,192
    plain = _json(cli(*base, "--json").out)
    assert plain["max_model_len"] == 2200 and plain["max_concurrency_at_max_model_len"] is None
    bad = cli(*base, "--max-model-len", "131072")
    assert bad.code == 2 and bad.err.startswith("llmcalc: error: --max-model-len:") and "would not start" in bad.err
    assert len(bad.err.strip().splitlines()) == 1


def test_report_refuses_a_comm_buffer_on_its_one_gpu(cli) -> None:
    """report's page runs on 1 GPU unless --num-gpus or --rate: --comm-buffer-gib (a split model's NCCL memory) is
    refused there, as latency / concurrency / serve refuse it on 1 GPU; with --rate (a sized deployment) it is taken."""
    base = ["report", "llama3-8b", "--gpu", "h100", "--prompt", "2000", "--output", "200", "--comm-buffer-gib", "2"]
    r = cli(*base, "--json")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --comm-buffer-gib:")
    assert cli(*base, "--rate", "5", "--json").code == 0


def test_train_plan_refuses_cp_comm_where_it_searches_no_cp(cli) -> None:
    """At --seq 4K no CP degree leaves a rank the 4,096 tokens the search asks for (calc.training.plan
    MIN_TOKENS_PER_CP_RANK), so --cp-comm could change nothing: refused, naming it. At 32K the search tries CP and
    takes it."""
    base = ["train-plan", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "16", "--global-batch", "64", "--top", "3"]
    r = cli(*base, "--cp-comm", "allgather", "--json")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --cp-comm:")
    assert cli(*base, "--seq", "32768", "--cp-comm", "allgather", "--json").code == 0


def test_flops_fused_on_a_moe_model_names_the_flag_given(cli) -> None:
    """The refusal named the hidden --model, a flag the user never typed; it names --fused."""
    r = cli("flops", "qwen3-30b-a3b", "--fused")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --fused:")


def test_flops_warns_a_corpus_beyond_any_real_run(cli) -> None:
    """flops --tokens 1e30 answered silently; train-time and mfu warn above 1e17 tokens (calc.sanity
    SUSPICIOUS_TOKENS, 1000x the largest published corpora): flops now says so too, in both outputs."""
    for extra in ([], ["--json"]):
        r = cli("flops", "llama3-8b", "--tokens", "1e30", *extra)
        assert r.code == 0 and "warning: --tokens:" in r.err
    assert "warning" not in cli("flops", "llama3-8b", "--tokens", "15T").err


def test_click_usage_errors_name_the_flag_first(cli) -> None:
    """The house form for a refusal is "llmcalc: error: --flag: the fix" (one line, exit 2); Click's own "No such
    option: --x", "Missing option '--x'." and "Option '--x' requires an argument." came through in Click's words."""
    cases = {("concurrency", "llama3-8b", "--gpu", "h100", "--num-gpu", "2"): "--num-gpu: no such option; did you mean",
             ("concurrency", "llama3-8b"): "--gpu: missing",
             ("concurrency", "llama3-8b", "--gpu"): "--gpu: needs a value"}
    for args, start in cases.items():
        r = cli(*args)
        assert r.code == 2 and r.err.startswith(f"llmcalc: error: {start}"), r.err
        assert len(r.err.strip().splitlines()) == 1


def test_compare_rows_record_the_targets_and_rate_they_were_picked_for(cli) -> None:
    """serve's JSON carries target_ttft_ms / target_tpot_ms / rate; compare picks serve's layout for the same
    request but did not say for which targets (a loose --tpot-ms left its JSON identical to none): each row now does,
    under serve's keys."""
    args = ["qwen3-30b-a3b", "--prompt", "2000", "--output", "300", "--rate", "5", "--tpot-ms", "100", "--json"]
    row = _json(cli("compare", args[0], "h100", *args[1:]).out)[0]
    serve = _json(cli("serve", args[0], "--gpu", "h100", *args[1:]).out)
    for key, given in (("target_ttft_ms", None), ("target_tpot_ms", 100.0), ("rate", 5.0)):
        assert row[key] == given == serve[key]


def test_a_stage_may_hold_only_the_embedding_or_the_loss() -> None:
    """Megatron-Core's --account-for-embedding/loss-in-pipeline-split counts each as a layer: L + 2 slots over p
    stages, one fewer decoder layer on the first and last. With p = L + 2 (BLOOM-176B's 70 layers on PP 72, as
    BigScience's reshaping log ran it; Llama 3 8B's 32 on PP 34) each stage holds one slot: [0, 1 x L, 0]. It was
    refused as "PP exceeds the layers" by the split and then raised a bare ValueError (an internal error) in
    train-step."""
    from calc.training.layout import pipeline_stage_layers

    assert pipeline_stage_layers(70, 72, True, True) == [0] + [1] * 70 + [0]
    assert pipeline_stage_layers(32, 34, True, True) == [0] + [1] * 32 + [0]
    assert pipeline_stage_layers(32, 35, True, True) is None and pipeline_stage_layers(32, 33) is None


def test_train_step_and_memory_price_an_embedding_only_stage_alike(cli) -> None:
    """The same PP 34 plan of Llama 3 8B: train-step answers (no internal error) and memory --mode train gives the
    same per-GPU peak (one training-memory engine)."""
    args = ["llama3-8b", "--gpu", "h100", "--pp", "34", "--pp-embedding", "--pp-loss", "--seq", "2048",
            "--global-batch", "68", "--json"]
    step = cli("train-step", *args, "--dp", "1")
    memory = cli("memory", *args, "--mode", "train")
    assert step.code == 0 and memory.code == 0, step.err + memory.err
    assert _json(step.out)["memory_per_gpu_bytes"] == _json(memory.out)["per_gpu_bytes"]
