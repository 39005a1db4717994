"""Hostile-input findings of the pass-18 sweep, each a refusal (one line naming the flag or field, exit 2) or a named
answer where the tool used to answer silently."""

from __future__ import annotations

from pathlib import Path


def _h100_yaml(cli, tmp_path: Path, **changes: str) -> Path:
    text = cli("show", "h100", "--yaml").out
    for key, value in changes.items():
        lines = [line for line in text.splitlines() if not line.startswith(f"{key}:")]
        text = "\n".join(lines + ([f"{key}: {value}"] if value else [])) + "\n"
    path = tmp_path / "gpu.yaml"
    path.write_text(text)
    return path


def test_a_gpu_file_whose_visible_memory_is_not_its_card_is_refused(cli, tmp_path: Path) -> None:
    # 999,999 MiB beside memory_gb 80: a 405B model "fitted" one GPU
    path = _h100_yaml(cli, tmp_path, memory_visible_mib="999999", memory_cuda_total_mib="")
    r = cli("memory", "llama3.1-405b", "--gpu", str(path))
    assert r.code == 2 and "memory_visible_mib" in r.err and len(r.err.strip().splitlines()) == 1


def test_a_yaml_true_is_not_a_count(cli, tmp_path: Path) -> None:
    path = _h100_yaml(cli, tmp_path, sms="true")
    r = cli("show", str(path))
    assert r.code == 2 and "'sms'" in r.err and "must be a number" in r.err


def test_expert_imbalance_is_bounded_by_the_experts(cli) -> None:
    # Mixtral has 8 experts: the busiest EP rank holds at most all the tokens, 8 x the mean on 8 ranks
    r = cli("serve", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "8", "--expert-imbalance", "100")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --expert-imbalance") and "8 experts" in r.err
    assert cli("serve", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "8", "--expert-imbalance", "1.5").code == 0


def test_fp8_moe_scales_needs_fp8_experts(cli) -> None:
    r = cli("latency", "mixtral-8x7b", "--gpu", "h100", "--tp", "2", "--fp8-moe-scales", "tensor")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --fp8-moe-scales") and "bf16" in r.err
    assert cli("latency", "mixtral-8x7b", "--gpu", "h100", "--tp", "2", "--dtype", "fp8", "--fp8-moe-scales", "tensor").code == 0


def test_report_warns_of_an_absurd_rate_as_serve_does(cli) -> None:
    r = cli("report", "llama3.1-8b", "--gpu", "h100", "--rate", "1e30")
    assert "llmcalc: warning: --rate: needs" in r.err and "more than 1,000,000" in r.err


def test_a_gpus_own_price_wins_over_a_bare_one(cli) -> None:
    args = ("train-time", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--json")
    named = cli(*args, "--price", "2", "--price", "h100=3").json()
    assert named["price_per_gpu_hour"] == 3.0
    assert named["cost"] == cli(*args, "--price", "3").json()["cost"]


def test_refusals_name_the_flag_that_caused_them(cli) -> None:
    r = cli("serve", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "2", "--comm-buffer-gib", "200")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --comm-buffer-gib")
    r = cli("serve", "llama3.1-8b", "--gpu", "h100", "--gpu-memory-utilization", "0.05")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --gpu-memory-utilization") and "raise it" in r.err


def test_a_draft_as_large_as_its_target_is_refused(cli) -> None:
    for draft in ("llama3.1-405b", "llama3.1-8b"):
        r = cli("serve", "llama3.1-8b", "--gpu", "h100", "--speculative", "draft", "--draft", draft)
        assert r.code == 2 and r.err.startswith("llmcalc: error: --draft") and "not smaller" in r.err


def test_an_instruct_hf_id_reads_as_its_base(cli) -> None:
    r = cli("params", "meta-llama/Llama-3.1-8B-Instruct", "--json")
    assert r.code == 0 and r.json()["total_params"] == 8_030_261_248  # Llama 3.1 8B, the HF checkpoint's count
    assert "read as llama3.1-8b" in r.err
    # a dated re-release may change the context window: not folded, but its base is the first suggestion
    r = cli("params", "Qwen/Qwen3-30B-A3B-Instruct-2507")
    assert r.code == 2 and "did you mean qwen3-30b-a3b," in r.err


def test_report_train_compile_refusal_says_what_applies(cli) -> None:
    r = cli("report", "llama3.1-8b", "--gpu", "h100", "--mode", "train", "--num-gpus", "64", "--tokens", "1T", "--compile")
    assert r.code == 2 and "--stack" in r.err and "--mode finetune" in r.err


def test_an_empty_string_option_is_refused_not_dropped(cli) -> None:
    # --system '' was read as "not given" (the GPU's node type), --family '' as every model, --calibration '' as none
    for argv, flag in ((("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "64", "--system", ""),
                        "--system"),
                       (("models", "--family", ""), "--family"),
                       (("memory", "llama3-8b", "--mode", "finetune", "--optimizer="), "--optimizer")):
        r = cli(*argv)
        assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}: an empty value"), (argv, r.err)
    # an option with its own parser keeps its own refusal, which lists the valid values
    assert "use one of" in cli("memory", "llama2-7b", "--dtype", "").err


def test_a_global_batch_in_tokens_has_the_bound_of_one_in_sequences(cli) -> None:
    r = cli("memory", "llama3.1-8b", "--gpu", "h100", "--mode", "train", "--num-gpus", "8", "--zero", "1",
            "--global-batch-tokens", "1e30")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --global-batch-tokens") and "--global-batch's bound" in r.err


def test_compare_takes_the_kv_dtype_and_utilization_serve_takes(cli) -> None:
    # Llama 3 8B on one H100: fp8 KV holds twice the tokens of bf16 (1 B against 2 B a value); a 0.5 utilization less
    base, fp8, half = (cli("compare", "llama3-8b", "h100", "--num-gpus", "1", *extra, "--json").json()[0]
                       for extra in ((), ("--kv-dtype", "fp8"), ("--gpu-memory-utilization", "0.5")))
    serve = cli("serve", "llama3-8b", "--gpu", "h100", "--num-gpus", "1", "--kv-dtype", "fp8", "--json").json()
    assert fp8["max_concurrency"] == serve["layouts"][0]["max_concurrency"] > 1.9 * base["max_concurrency"]
    assert half["max_concurrency"] < base["max_concurrency"]


def test_a_vllm_v1_line_with_a_draft_model_is_refused(cli) -> None:
    # vLLM V1 (0.10-0.13) raises NotImplementedError for a draft-model speculator: the line would not start
    r = cli("serve", "llama3.3-70b", "--gpu", "h100", "--num-gpus", "4", "--speculative", "draft", "--draft", "llama3.1-8b",
            "--emit", "vllm")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --speculative") and "draft model" in r.err
    assert cli("serve", "llama3.3-70b", "--gpu", "h100", "--num-gpus", "4", "--speculative", "draft", "--draft",
               "llama3.1-8b").code == 0  # the plan itself is priced; only the line is refused


def test_serve_sizes_a_kv_bound_layout_at_the_max_num_seqs_its_line_sets(cli) -> None:
    """gpt-oss-120b on one H100: at vLLM's default max_num_seqs (1,024) the profile run samples 1,024 x 201,088 logits
    (7.3 GiB), the KV cache holds 63 requests, and the line then set --max-num-seqs 63, whose engine holds far more.
    The plan now runs the largest B whose engine at max_num_seqs B admits B, and the table's KV is the line's."""
    r = cli("serve", "gpt-oss-120b", "--gpu", "h100", "--num-gpus", "1", "--emit", "vllm", "--json").json()
    best = r["layouts"][0]
    assert best["batch"] > 3 * 63 * 0.9 and best["kv_cache_tokens"] == r["launch_kv_cache_tokens"]
    assert best["binding"] == "memory (KV)" and f"--max-num-seqs {best['batch']} " in r["launch"]
    conc = cli("concurrency", "gpt-oss-120b", "--gpu", "h100", "--max-model-len", "1280", "--max-num-seqs",
               str(best["batch"]), "--json").json()
    assert conc["max_concurrency"] >= best["batch"]  # the engine the line starts admits the plan's batch
