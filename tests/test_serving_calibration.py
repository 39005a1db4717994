"""The serving step reads a calibration op by op: each weight GEMM at the efficiency measured at its own
FLOPs (no training derate), memory-bound ops at the measured bandwidth, attention from "attention" points.
Every expected number is worked out by hand below from the calibration's points and the H100 datasheet."""

from __future__ import annotations

import math

import pytest

from calc.hardware.calibration import Calibration, OpPoint, Roofline
from calc.hardware.efficiency import SUSTAINED_FRACTION, gemm_time
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS
from calc.serving.step import step_time, weight_gemm_time
from calc.sources.catalog import load_gpu, load_model

PEAK = 989.4e12  # H100 SXM dense bf16, FLOP/s
HBM = 3.35e12  # H100 SXM, B/s
LAUNCH = 4e-6  # per GEMM kernel (calc.hardware.efficiency.GEMM_LAUNCH_S)


def _cal(gemm=((1e9, 0.1), (1e12, 0.6)), memory=((1e9, 0.8),), attention=()) -> Calibration:
    def points(pairs):
        return [OpPoint(size=s, measured_s=1e-3, efficiency=e) for s, e in pairs]

    ops = {"gemm": points(gemm), "memory": points(memory)}
    if attention:
        ops["attention"] = points(attention)
    return Calibration(gpu="h100-sxm", device_name="NVIDIA H100 80GB HBM3", is_gpu=True, dtype="bf16", date="2026-11-23",
                       roofline=Roofline(peak_tflops=989.4, peak_gb_s=3350, source="datasheet"), ops=ops)


def _one_layer():
    # llama2-7b cut to one block; its GEMMs as vLLM fuses them: qkv [4096, 12288], o [4096, 4096],
    # gate_up [4096, 22016], down [11008, 4096] (the head is skipped with logit_rows = 0)
    return load_model("llama2-7b").model_copy(update={"num_layers": 1})


def test_decode_gemm_between_two_points_gets_the_log_linear_efficiency() -> None:
    # decode batch 128 through o_proj: F = 2 x 128 x 4096 x 4096 = 4.2950e9 FLOPs, between 1e9 (0.1) and 1e12 (0.6):
    # e = 0.1 + 0.5 x (log10 4.2950e9 - 9) / 3 = 0.1 + 0.5 x 0.63296 / 3 = 0.205493
    # serving (sustained 1): 4.2950e9 / (989.4e12 x 0.205493) + 4 us = 21.125 us + 4 us = 25.125 us
    h100, cal = load_gpu("h100"), _cal()
    flops = 2 * 128 * 4096 * 4096
    e = 0.1 + 0.5 * (math.log10(flops) - 9) / 3
    assert e == pytest.approx(0.205493, abs=1e-6)
    assert gemm_time(h100, 128, 4096, 4096, calibration=cal, sustained=1.0) == pytest.approx(flops / (PEAK * e) + LAUNCH, rel=1e-9)
    assert gemm_time(h100, 128, 4096, 4096, calibration=cal, sustained=1.0) * 1e6 == pytest.approx(25.125, abs=1e-3)
    # the training step keeps its derate (0.82): 21.125 / 0.82 + 4 = 29.762 us
    assert gemm_time(h100, 128, 4096, 4096, calibration=cal) == pytest.approx(flops / (PEAK * e * SUSTAINED_FRACTION) + LAUNCH)


def test_serving_step_times_each_gemm_at_its_own_measured_efficiency() -> None:
    # decode batch 128, one layer, tp 1. Per GEMM F = 2 x 128 x K x N, e = 0.1 + 0.5 x (log10 F - 9) / 3:
    #   qkv     F = 1.28849e10  e = 0.28501   t = 45.692 us
    #   o       F = 4.29497e9   e = 0.20549   t = 21.125 us
    #   gate_up F = 2.30854e10  e = 0.32722   t = 71.305 us
    #   down    F = 1.15427e10  e = 0.27705   t = 42.109 us
    # Each is slower than streaming its weights at 0.8 x 3.35 TB/s (qkv 100.66 MB -> 37.6 us; o 12.5 us; gate_up 67.3 us;
    # down 33.7 us), so the measured rate binds: 180.23 us + 4 launches (16 us) = 196.23 us.
    m, h100 = _one_layer(), load_gpu("h100")
    shapes = [(4096, 12288), (4096, 4096), (4096, 22016), (11008, 4096)]
    expected = 0.0
    for k, n in shapes:
        flops = 2 * 128 * k * n
        e = 0.1 + 0.5 * (math.log10(flops) - 9) / 3
        assert flops / (PEAK * e) > k * n * 2 / (HBM * 0.8)
        expected += flops / (PEAK * e) + LAUNCH
    seconds, flops, moved = weight_gemm_time(m, h100, 128, 0, 1, "bf16", _cal())
    assert seconds == pytest.approx(expected, rel=1e-9)
    assert seconds * 1e6 == pytest.approx(196.23, abs=0.01)
    # no wave or tile penalty on top of the measurement: the default path (tile + wave + plateau) differs
    assert weight_gemm_time(m, h100, 128, 0, 1, "bf16")[0] != pytest.approx(seconds, rel=0.01)


def test_measured_gemm_is_never_faster_than_streaming_its_weights() -> None:
    # A flat calibration (what `calibrate --from-runs` writes: one GEMM point 0.55, one memory point 0.7) at decode
    # batch 1: o_proj's compute 2 x 4096 x 4096 / (989.4e12 x 0.55) = 0.0617 us is far below streaming its
    # 4096 x 4096 x 2 B = 33.55 MB at 0.7 x 3.35 TB/s = 14.31 us, so each GEMM is weight bytes / bandwidth + launch:
    # all four: (12288 + 4096 + 22016) x 4096 x 2 + 11008 x 4096 x 2 = 404.75 MB -> 172.60 us + 16 us = 188.60 us
    m, h100 = _one_layer(), load_gpu("h100")
    flat = _cal(gemm=((1.0, 0.55),), memory=((1.0, 0.7),))
    seconds, _, moved = weight_gemm_time(m, h100, 1, 0, 1, "bf16", flat)
    assert moved == (12288 + 4096 + 22016) * 4096 * 2 + 11008 * 4096 * 2
    assert seconds == pytest.approx(moved / (HBM * 0.7) + 4 * LAUNCH, rel=1e-9)
    assert seconds * 1e6 == pytest.approx(188.60, abs=0.02)


def test_attention_from_measured_attention_points() -> None:
    # prefill 1024 tokens of one sequence, each attending 512 keys (non-causal over a 512-token prompt), one layer:
    # FLOPs = 2 x 32 heads x (128 + 128) x 1024 x 512 = 8.5899e9; points 0.2 at 1e9, 0.4 at 1e11:
    # e = 0.2 + 0.2 x (log10 8.5899e9 - 9) / 2 = 0.29340 -> 8.5899e9 / (989.4e12 x 0.29340) = 29.590 us.
    # The KV it reads (512 earlier + 1024 new tokens x 2 x 4096 x 2 B = 25.17 MB at 0.8 x 3.35 TB/s = 9.39 us) is less.
    # Without attention points: the flash-attention default, 0.45 of peak (Hopper): 19.293 us.
    m, h100 = _one_layer(), load_gpu("h100")
    flops = 2 * 32 * 256 * 1024 * 512
    e = 0.2 + 0.2 * (math.log10(flops) - 9) / 2
    with_points = _cal(attention=((1e9, 0.2), (1e11, 0.4)))
    kw = {"prefill_tokens": 1024, "prefill_prompt": 512, "prefill_causal": False}
    measured = step_time(m, h100, DEFAULT_ASSUMPTIONS, calibration=with_points, **kw)
    default_attention = step_time(m, h100, DEFAULT_ASSUMPTIONS, calibration=_cal(), **kw)
    attention = measured.total_s - measured.gemm_s - measured.comm_s - measured.overhead_s
    assert attention == pytest.approx(flops / (PEAK * e), rel=1e-9)
    assert attention * 1e6 == pytest.approx(29.590, abs=0.01)
    fallback = default_attention.total_s - default_attention.gemm_s - default_attention.comm_s - default_attention.overhead_s
    assert fallback * 1e6 == pytest.approx(flops / (PEAK * 0.45) * 1e6, rel=1e-9)


def test_decode_kv_read_at_the_measured_bandwidth() -> None:
    # decode of 1 sequence at context 4096, one layer: KV 4096 x 2 x 4096 x 2 B = 67.11 MB; its attention FLOPs
    # (2 x 32 x 256 x 4096 = 6.7e7) take 0.15 us at the flash default, so the read binds: at 0.8 x 3.35 TB/s 25.04 us
    m, h100 = _one_layer(), load_gpu("h100")
    r = step_time(m, h100, DEFAULT_ASSUMPTIONS, calibration=_cal(), decode_seqs=1, decode_context=4096)
    attention = r.total_s - r.gemm_s - r.comm_s - r.overhead_s
    assert attention == pytest.approx(4096 * 2 * 4096 * 2 / (HBM * 0.8), rel=1e-9)
