"""calc.bands.band: the 80% band around a prediction from the corpus residual quantiles of its group."""

from __future__ import annotations

import math

import pytest

from calc.bands import band
from calc.fitted import fitted


def test_no_comparable_measurement_gives_the_stated_factor_of_two() -> None:
    assert "inference_peak_memory" not in fitted()["bands"]["pools"]  # fewer than min_rows fit rows today
    b = band("inference_peak_memory", 10.0, gpu="NoSuchGeneration")
    assert (b.low, b.high, b.rows) == (pytest.approx(5.0, rel=1e-3), pytest.approx(20.0, rel=1e-3), 0)  # log 2 kept to 4 places
    assert b.group == "no comparable measurement"


def test_a_time_band_reads_the_quantiles_the_other_way_round() -> None:
    # time-like: measured = predicted x exp(-r), so the band is [t exp(-q90), t exp(-q10)] (a rate's is [v exp(q10), ...])
    q = fitted()["bands"]["groups"]["training|Ampere|16-bit|dense"]
    t = band("training_step_time", 2.0, gpu="Ampere")
    assert (t.low, t.high) == (pytest.approx(2.0 * math.exp(-q["q90"])), pytest.approx(2.0 * math.exp(-q["q10"])))


def test_a_group_with_rows_uses_its_own_quantiles() -> None:
    groups = fitted()["bands"]["groups"]
    q = groups["training|Ampere|16-bit|dense"]
    b = band("training_throughput", 0.5, gpu="Ampere", dtype="bf16")
    # measured = predicted x exp(-r) with r = log(pred/measured) of the time-like step: for MFU (a rate) exp(+r)
    assert (b.low, b.high) == (pytest.approx(0.5 * math.exp(q["q10"])), pytest.approx(0.5 * math.exp(q["q90"])))
    assert b.rows == q["rows"] >= fitted()["bands"]["min_rows"]
    assert b.level == 0.8


def test_a_thin_group_falls_back_to_its_pool() -> None:
    data = fitted()["bands"]
    pool = data["pools"]["serving_prefill"]
    b = band("serving_ttft", 100.0, gpu="Blackwell", dtype="fp8")
    # a time: [p exp(-q90), p exp(-q10)] of the pool, kept even when too wide to be a band (rows 0 then): wider
    # than ±max_half_width on the band of the same log width centred on p, sinh((q90 - q10) / 2)
    assert (b.low, b.high) == (pytest.approx(100 * math.exp(-pool["q90"])), pytest.approx(100 * math.exp(-pool["q10"])))
    if math.sinh((pool["q90"] - pool["q10"]) / 2) > data["max_half_width"]:
        assert b.rows == 0 and b.group.startswith(f"no comparable measurement (the nearest rows, {pool['rows']} of "
                                                  "serving_prefill (all generations")
    else:
        assert b.rows == pool["rows"] and b.group.startswith("serving_prefill (all generations")


def test_kinds_of_one_prediction_share_a_band() -> None:
    """Throughput, MFU, step time and GPU-hours are one predicted step time: the same relative band (a rate's read
    the other way round: time t in [t/a, t/b] <=> rate 1/t in [a/t, b/t])."""
    step = band("training_step_time", 1.0, gpu="Hopper", dtype="bf16")
    mfu = band("training_mfu", 1.0, gpu="Hopper", dtype="bf16")
    hours = band("training_gpu_hours", 1.0, gpu="Hopper", dtype="bf16")
    assert step.group == mfu.group == hours.group == "training|Hopper|16-bit|dense"
    assert (hours.low, hours.high) == (step.low, step.high)
    assert (mfu.low, mfu.high) == (pytest.approx(1 / step.high), pytest.approx(1 / step.low))


def test_a_prefill_pool_without_rows_falls_back_to_the_serving_family(monkeypatch) -> None:
    from calc import bands

    family = {"q10": -0.5, "q90": 0.25, "rows": 30}
    data = {"level": 0.8, "min_rows": 8, "wide_default": {"q10": -0.69, "q90": 0.69}, "groups": {}, "pools": {},
            "families": {"serving": family}}
    monkeypatch.setattr(bands, "fitted", lambda: {"bands": data})
    b = band("serving_ttft", 1.0, gpu="Hopper")
    # time-like: [exp(-0.25), exp(0.5)]
    assert (b.low, b.high, b.rows) == (pytest.approx(0.7788, rel=1e-4), pytest.approx(1.6487, rel=1e-4), 30)
    assert b.group.startswith("serving (prefill and decode")
    assert band("kv_capacity", 1.0, gpu="Hopper").group == "no comparable measurement"  # no family to fall back to


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="no band for kind"):
        band("latency", 1.0, gpu="Ampere")


def test_one_job_one_memory_band_and_verdict_in_both_memory_modes(cli) -> None:
    """QA finding: the same 140.17 GiB llama3-8b job on an H200 was "fits" under `memory --mode train` (no training-
    memory band: no rows) and "tight" under `--mode finetune --method full` (the fine-tuning pool's band); at pass 25,
    once the corpus gave training peaks a pool of their own, the same job got two bands. The training peak reads the
    fine-tuning pool whether or not it has its own (calc.bands.SAME_ENGINE_POOL): one engine, one band. At 3,072
    tokens: 135.17 GiB against the H200's 139.81 GiB CUDA total, inside the band."""
    out = [cli("memory", "llama3-8b", *mode, "--gpu", "h200", "--stack", "megatron", "--seq", "3072", "--json").json()
           for mode in (("--mode", "train"), ("--mode", "finetune", "--method", "full"))]
    assert out[0]["per_gpu_bytes"] == out[1]["per_gpu_bytes"]
    assert out[0]["fit"] == out[1]["fit"] == "tight"
    assert out[0]["bands"]["per_gpu_bytes"]["low"] == out[1]["bands"]["per_gpu_bytes"]["low"]
    assert out[0]["bands"]["per_gpu_bytes"]["rows"] > 0
    # one band, read from the fine-tuning pool in both modes; the training page says it read it for a training peak
    bands = [o["bands"]["per_gpu_bytes"] for o in out]
    assert (bands[0]["low"], bands[0]["high"], bands[0]["rows"]) == (bands[1]["low"], bands[1]["high"], bands[1]["rows"])
    assert all(b["group"].startswith("finetune_peak_memory") for b in bands)
    assert sum("read for training_peak_memory" in b["group"] for b in bands) == 1


def test_a_pipelined_fine_tune_keeps_its_gradients_as_training_does(cli) -> None:
    """QA finding: --pp 2 under --stack hf gave 54.19 GiB in `memory --mode train` and 46.33 GiB in `--mode finetune
    --method full`: a pipeline runs p micro-batches per step, accumulating into the gradients, in both (asked here
    under DeepSpeed's pipeline engine: HF Trainer runs no pipeline, calc.training.stack.NO_PIPELINE)."""
    args = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--stack", "deepspeed", "--pp", "2", "--dp", "4", "--zero", "1",
            "--json")
    train = cli("memory", *args[:1], "--mode", "train", *args[1:]).json()
    tune = cli("memory", *args[:1], "--mode", "finetune", "--method", "full", *args[1:]).json()
    assert train["per_gpu_bytes"] == tune["per_gpu_bytes"]
