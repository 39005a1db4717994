"""`memory --mode finetune`: the issue's acceptance commands, JSON keys, --explain, refusals."""

from __future__ import annotations

import pytest

ACCEPT = ("memory", "llama3-8b", "--mode", "finetune", "--batch", "1", "--seq", "2048", "--gpu", "rtx4090")


def test_qlora_on_a_4090_fits_and_says_by_how_much(cli):
    r = cli(*ACCEPT, "--method", "qlora", "--json")
    assert r.code == 0, r.err
    data = r.json()
    # r=8 on q,v: 32 * (8*(4096+4096) + 8*(4096+1024)) = 3,407,872 trainable parameters
    assert data["trainable_params"] == 3_407_872
    assert data["fits"] is True and data["headroom_bytes_per_gpu"] > 0
    assert data["per_gpu_bytes"] + data["headroom_bytes_per_gpu"] == data["gpu_memory_bytes"]
    assert any(row["seq"] == 2048 and row["max_batch"] >= 1 for row in data["fit_table"])
    text = cli(*ACCEPT, "--method", "qlora").out
    assert "fits:" in text and "to spare" in text


def test_full_finetune_on_a_4090_does_not_fit_and_says_what_does(cli):
    r = cli(*ACCEPT, "--method", "full", "--json")
    data = r.json()
    assert data["fits"] is False and r.code == 2  # JSON on stdout, and the same exit code as the table
    # 16 B/param alone is 128 GB: more than 5 cards even before activations
    assert data["min_gpus"] is not None and data["min_gpus"] > 5
    # the cheapest change in order (recompute, offload, qlora): applying it fits (a second command says so)
    change = data["fits_with"][0].split(" (")[0]
    assert change.startswith("--recompute full")
    assert cli(*ACCEPT, "--method", "full", *change.split(), "--json").json()["fits"] is True
    text = cli(*ACCEPT, "--method", "full")
    assert text.code == 2 and "does not fit" in text.out and "smallest GPU" in text.out
    assert text.err.startswith("llmcalc: error: --num-gpus: does not fit (") and f"fits with {change}" in text.err


def test_explain_lists_every_buffer_with_its_formula(cli):
    out = cli(*ACCEPT, "--method", "lora", "--explain").out
    for needle in ("Q, K, V after RoPE", "b*s*(h+2g)*d", "log-sum-exp", "logits + cross-entropy", "b*s*V*12",
                   "trainable adapter parameters", "textbook (Korthikanti 2022)"):
        assert needle in out, needle


def test_options_change_the_answer(cli):
    base = cli(*ACCEPT, "--method", "lora", "--json").json()["per_gpu_bytes"]
    for extra in (("--recompute", "full"), ("--compile",), ("--loss", "chunked"), ("--optimizer", "sgd"),
                  ("--lora-targets", "all-linear"), ("--attention", "unfused"), ("--lora-rank", "64"), ("--precision", "bf16"),
                  ("--offload", "activations"), ("--fragmentation", "0.2"), ("--cuda-context-gib", "1")):
        assert cli(*ACCEPT, "--method", "lora", *extra, "--json").json()["per_gpu_bytes"] != base, extra


def test_zero3_over_dp_shrinks_a_full_finetune(cli):
    one = cli(*ACCEPT, "--method", "full", "--json").json()["per_gpu_bytes"]
    eight = cli(*ACCEPT, "--method", "full", "--dp", "8", "--zero", "3", "--json").json()
    assert eight["num_gpus"] == 8 and eight["per_gpu_bytes"] < one / 2
    assert eight["per_gpu"]["optimizer states"] == 8 * 8_030_261_248 // 8  # Adam m, v fp32 sharded 8 ways


@pytest.mark.parametrize("args, flag", [
    (("--method", "full", "--lora-rank", "4"), "--lora-rank"),
    (("--method", "lora", "--quant", "int8"), "--quant"),
    (("--method", "adapter"), "--method"),
    (("--offload", "gpu"), "--offload"),
    (("--recipe", "fp32-adam"), "--recipe"),
    (("--method", "full", "--dtype", "fp16"), "--dtype"),
    (("--loss-chunks", "4"), "--loss-chunks"),
    (("--zero", "3"), "--zero"),
])
def test_finetune_refusals(cli, args, flag):
    r = cli(*ACCEPT, *args)
    assert r.code == 2 and flag in r.err and "Traceback" not in r.err


def test_finetune_options_refused_in_other_modes(cli):
    r = cli("memory", "llama3-8b", "--mode", "train", "--method", "lora")
    assert r.code == 2 and "--method" in r.err


def test_train_mode_shows_both_activation_models(cli):
    per_tensor = cli("memory", "llama3-8b", "--mode", "train", "--json").json()
    textbook = cli("memory", "llama3-8b", "--mode", "train", "--activations", "textbook", "--json").json()
    assert per_tensor["per_gpu"]["activations"] != textbook["per_gpu"]["activations"]
    assert per_tensor["textbook_activation_bytes"] == textbook["per_gpu"]["activations"]
    out = cli("memory", "llama3-8b", "--mode", "train", "--explain").out
    assert "textbook (Korthikanti)" in out and "per-tensor activations" in out
    assert cli("memory", "llama3-8b", "--activations", "textbook").code == 2


def test_lora_that_does_not_fit_suggests_recompute_first(cli):
    # LoRA (q,v) without recomputation: ~29 GiB on a 22.35 GiB card; with --recompute full only layer inputs stay
    data = cli(*ACCEPT, "--method", "lora", "--json").json()
    assert data["fits"] is False and data["fits_with"][0].startswith("--recompute full")


def test_report_mode_finetune(cli):
    r = cli("report", "llama3-8b", "--gpu", "rtx4090", "--mode", "finetune", "--method", "qlora", "--seq", "2048", "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert data["params"]["total_params"] == 8_030_261_248
    assert data["finetune"]["trainable_params"] == 3_407_872 and data["finetune"]["fits"] is True
    md = cli("report", "llama3-8b", "--gpu", "rtx4090", "--mode", "finetune", "--seq", "2048", "--format", "markdown").out
    assert md.startswith("# Fine-tuning report") and "| sequence | max micro-batch |" in md
    assert cli("report", "llama3-8b", "--gpu", "rtx4090", "--mode", "finetune", "--prompt", "512").code == 2
    assert cli("report", "llama3-8b", "--gpu", "rtx4090", "--method", "lora").code == 2


def test_sequence_beyond_the_context_window_warns(cli):
    r = cli("memory", "llama3-8b", "--mode", "finetune", "--seq", "128K", "--json")
    assert r.code == 0 and "context window" in r.err and r.json()["warnings"]
