"""The pass-18 review of its own changes: each finding reproduced, then fixed."""

from __future__ import annotations

from pathlib import Path

V32 = str(Path(__file__).parent / "fixtures" / "hf" / "deepseek-v3.2-exp.json")


def test_report_sizes_v32_memory_with_the_engine_it_names(cli) -> None:
    # SGLang keeps the model dtype for auto: 61 x ((512 + 64) x 2 + 132) = 78,324 B a token on every section
    r = cli("report", V32, "--gpu", "h200", "--num-gpus", "8", "--engine", "sglang", "--prompt", "4000", "--output", "1000",
            "--json").json()
    assert r["memory"]["kv_cache_bytes_per_token"] == 78_324 and r["concurrency"]["kv_dtype"] == "bf16"
    v = cli("report", V32, "--gpu", "h200", "--num-gpus", "8", "--prompt", "4000", "--output", "1000", "--json").json()
    assert v["memory"]["kv_cache_bytes_per_token"] == 61 * (656 + 132) and v["concurrency"]["kv_dtype"] == "fp8"


def test_a_missing_model_file_is_named_as_a_file(cli) -> None:
    for arg in ("models/foo.yaml", "configs/config.json"):
        r = cli("params", arg)
        assert r.code == 2 and "no such file" in r.err


def test_a_bare_instruct_name_is_not_folded_onto_a_base_release(cli) -> None:
    # mistral-7b is v0.1 (4,096-token sliding window); Instruct v0.2 / v0.3 attend the full 32K: not the same model
    r = cli("params", "mistral-7b-instruct")
    assert r.code == 2 and "unknown model" in r.err


def test_a_lowered_utilization_is_blamed_only_when_the_default_would_fit(cli) -> None:
    r = cli("latency", "llama3.1-405b", "--gpu", "t4", "--dtype", "fp16", "--gpu-memory-utilization", "0.89")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus")
    r = cli("concurrency", "llama3.1-8b", "--gpu", "h100", "--gpu-memory-utilization", "0.05")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --gpu-memory-utilization") and "raise it" in r.err


def test_v32_weights_line_names_the_fp8_kv_record(cli) -> None:
    r = cli("concurrency", V32, "--gpu", "h200", "--tp", "8", "--max-model-len", "32000", "--json").json()
    assert any("fp8 sparse-MLA record" in a for a in r["assumptions"])


def test_no_smallest_count_says_why(cli) -> None:
    # 1,021 is prime: only DP 1 and DP 1,021 split it, so the smallest count is TP 4 x 1,021 = 4,084 GPUs, and the
    # assumptions say the global batch is why nothing between fits
    mem = cli("memory", "llama3-70b", "--mode", "train", "--gpu", "h100", "--tp", "4", "--zero", "2", "--sp",
              "--global-batch", "1021", "--json").json()
    assert mem["min_gpus"] == 4 * 1021 and any("splits the global batch of 1,021" in a for a in mem["assumptions"])
    step = cli("train-step", "llama3-70b", "--gpu", "h100", "--tp", "4", "--zero", "2", "--sp", "--global-batch", "1021")
    assert step.code == 2 and "fits from 4084 GPUs" in step.err


def test_the_tf32_note_only_where_fp32_is_timed(cli) -> None:
    assert "TF32" not in cli("memory", "llama2-7b", "--mode", "infer", "--dtype", "fp32", "--gpu", "a100").err
    assert "TF32" in cli("latency", "llama2-7b", "--dtype", "fp32", "--gpu", "a100").err


def test_memory_train_refuses_a_compute_dtype_the_gpu_lacks_as_train_step_does(cli) -> None:
    # A100: tf32, bf16, fp16 and int8 tensor cores, no fp8 (A100 datasheet)
    job = ("llama3-8b", "--gpu", "a100", "--num-gpus", "8", "--zero", "3", "--dtype", "fp8")
    mem = cli("memory", *job, "--mode", "train")
    step = cli("train-step", *job, "--global-batch", "64")
    assert mem.code == step.code == 2 and mem.err == step.err and "no fp8 tensor peak" in mem.err
