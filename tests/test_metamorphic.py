"""Metamorphic properties: sums, monotonicity and one quantity through two commands (issue 20).

Each test states a relation any correct calculator satisfies, whatever its formulas: components sum to
their total; more GPUs never raise per-GPU memory; more batch or context never lowers it; a looser
target never needs more GPUs; two commands that print the same quantity print the same number. Models
cover dense (llama3-8b), MoE (mixtral-8x7b), sliding-window (gemma3-4b) and hybrid (qwen3-next-80b)."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli

MODELS = ["llama3-8b", "mixtral-8x7b", "gemma3-4b", "qwen3-next-80b"]


def j(*args: str, unfit_ok: bool = False):
    """The --json answer; ``unfit_ok`` also takes a "does not fit" answer (exit 2 with the numbers)."""
    r = run_cli(*args, "--json")
    assert r.code == 0 or (unfit_ok and r.code == 2 and r.out), r.err
    return r.json()


@pytest.mark.parametrize("model", MODELS)
def test_params_components_sum_to_totals(model):
    p = j("params", model)
    assert sum(p["components"].values()) == p["total_params"]
    assert sum(p["active_components"].values()) == p["active_params"]
    assert p["active_params"] <= p["total_params"]


@pytest.mark.parametrize("model", MODELS)
def test_training_flops_are_three_forward_passes(model):
    f = j("flops", model, "--seq", "2048")
    assert f["training_flops"] == pytest.approx(3 * f["forward_flops"], rel=1e-9)
    assert f["per_token_training_flops"] == pytest.approx(3 * f["per_token_inference_flops"], rel=1e-9)
    # 2 FLOPs per active weight per token is a floor: attention only adds to it.
    assert f["per_token_inference_flops"] >= 2 * f["matmul_params"]


@pytest.mark.parametrize("model", ["llama3-8b", "mixtral-8x7b"])
def test_memory_rows_sum_and_fall_with_tp(model):
    prev = None
    for tp in ("1", "2", "4", "8"):
        r = j("memory", model, "--gpu", "h100", "--mode", "infer", "--tp", tp, unfit_ok=True)
        assert sum(r["per_gpu"].values()) == r["per_gpu_bytes"]
        if prev is not None:
            assert r["per_gpu_bytes"] <= prev
        prev = r["per_gpu_bytes"]


@pytest.mark.parametrize("flag,values", [("--batch", ("1", "4", "16")), ("--seq", ("1024", "4096", "16384"))])
def test_memory_never_falls_with_more_batch_or_context(flag, values):
    totals = [j("memory", "gemma3-4b", "--gpu", "h100", "--mode", "infer", flag, v)["per_gpu_bytes"] for v in values]
    assert totals == sorted(totals)


@pytest.mark.parametrize("layout", [("--tp", "2"), ("--tp", "8"), ("--pp", "2"), ("--pp", "4")])
def test_memory_and_concurrency_agree_on_weights_per_gpu(layout):
    mem = j("memory", "llama3-8b", "--gpu", "h100", "--mode", "infer", *layout)
    conc = j("concurrency", "llama3-8b", "--gpu", "h100", *layout)
    # concurrency reports bytes summed over its GPUs, memory the busiest rank's share: equal x GPUs under TP (every
    # rank alike); under PP the stages differ (the embedding on the first, the head on the last), so the sum is
    # below the busiest x stages and holds the model's 8,030,261,248 x 2 B once
    if layout[0] == "--tp":
        assert conc["weights_bytes"] == mem["per_gpu"]["weights"] * conc["num_gpus"]
    else:
        assert conc["weights_bytes"] == 8_030_261_248 * 2 < mem["per_gpu"]["weights"] * conc["num_gpus"]


@pytest.mark.parametrize("model", ["llama3-8b", "gemma3-4b"])
def test_latency_monotone_in_prompt_and_batch(model):
    ttft = [j("latency", model, "--gpu", "h100", "--prompt", p, "--output", "64")["ttft_s"] for p in ("256", "1024", "4096")]
    assert ttft == sorted(ttft)
    runs = [j("latency", model, "--gpu", "h100", "--prompt", "512", "--output", "64", "--batch", b) for b in ("1", "8", "32")]
    assert [r["ttft_s"] for r in runs] == sorted(r["ttft_s"] for r in runs)
    assert [r["tpot_s"] for r in runs] == sorted(r["tpot_s"] for r in runs)


@pytest.mark.parametrize("model,tp", [("llama3-8b", "1"), ("gemma3-4b", "1"), ("qwen3-next-80b", "4")])
def test_concurrency_monotone_in_context_and_utilization(model, tp):
    by_len = [j("concurrency", model, "--gpu", "h100", "--tp", tp, "--max-model-len", n)["max_concurrency"]
              for n in ("2048", "4096", "8192")]
    assert by_len == sorted(by_len, reverse=True)
    by_util = [j("concurrency", model, "--gpu", "h100", "--tp", tp, "--gpu-memory-utilization", u)["max_concurrency"]
               for u in ("0.7", "0.9", "0.95")]
    assert by_util == sorted(by_util)


def test_concurrency_fits_in_latency():
    """The number of requests `concurrency` says fit runs as one batch in `latency` (same engine)."""
    n = j("concurrency", "llama3-8b", "--gpu", "h100", "--max-model-len", "4096")["max_concurrency"]
    r = run_cli("latency", "llama3-8b", "--gpu", "h100", "--prompt", "2048", "--output", "2048", "--batch", str(n), "--json")
    assert r.code == 0, r.err


@pytest.mark.parametrize("model,tp", [("llama3-8b", 1), ("mixtral-8x7b", 2)])
def test_serve_batch_one_is_latency(model, tp):
    lat = j("latency", model, "--gpu", "h100", "--tp", str(tp), "--prompt", "1000", "--output", "200")
    srv = j("serve", model, "--gpu", "h100", "--num-gpus", str(tp), "--prompt", "1000", "--output", "200")
    (layout,) = [x for x in srv["layouts"] if (x["tp"], x["pp"], x["ep"]) == (tp, 1, 1)]
    b1 = next(p for p in layout["frontier"] if p["batch"] == 1)
    assert b1["ttft_ms"] == pytest.approx(lat["ttft_s"] * 1e3, rel=1e-6)
    assert b1["tpot_ms"] == pytest.approx(lat["tpot_s"] * 1e3, rel=1e-6)


@pytest.mark.parametrize("model", ["gemma3-27b", "mixtral-8x7b"])
def test_looser_tpot_target_never_needs_more_gpus(model):
    need = [j("serve", model, "--gpu", "h100", "--prompt", "1000", "--output", "200", "--rate", "8", "--tpot-ms", t)["gpus_needed"]
            for t in ("60", "100", "200", "400")]
    assert need == sorted(need, reverse=True)


def test_train_step_mfu_is_what_mfu_reads_from_its_throughput():
    step = j("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "512", "--zero", "1")
    assert 0 < step["mfu"] <= 1
    m = j("mfu", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens-per-s", repr(step["tokens_per_s"]))
    # train-step's MFU counts attention FLOPs (3 x forward, full S x S); `mfu` prints that beside 6N.
    assert m["mfu_with_attention"] == pytest.approx(step["mfu"], rel=1e-6)


def test_train_time_days_fall_with_gpus_at_similar_gpu_hours():
    runs = [j("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", n, "--tokens", "100B") for n in ("64", "256", "512")]
    days = [r["days"] for r in runs]
    assert days == sorted(days, reverse=True)
    hours = [r["gpu_hours"] for r in runs]
    assert max(hours) <= 2 * min(hours)
