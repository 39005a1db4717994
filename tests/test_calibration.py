"""Calibration format, interpolation by shape, refusal of another device, model-op shapes under TP,
and the least-squares fit of efficiencies to runs (no torch needed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from calc.errors import LLMCalcError
from calc.hardware.calibration import Calibration, OpPoint, Roofline, efficiency_for, save_calibration
from calc.serving.phases import phase_terms
from calc.sources.catalog import load_gpu, load_model


def _calibration(gpu: str = "h100-sxm", dtype: str = "bf16", gemm=((1e9, 0.4), (1e11, 0.8)),
                 memory=((1e6, 0.5), (1e9, 0.85))) -> Calibration:
    return Calibration(
        gpu=gpu, device_name="NVIDIA H100 80GB HBM3", is_gpu=True, dtype=dtype, date="2026-11-23",
        torch_version="2.13.0", cuda_version="12.8", roofline=Roofline(peak_tflops=989.4, peak_gb_s=3350, source="datasheet"),
        ops={"gemm": [OpPoint(size=s, measured_s=1e-3, efficiency=e) for s, e in gemm],
             "memory": [OpPoint(size=s, measured_s=1e-3, efficiency=e) for s, e in memory]},
    )


# --- interpolation by shape ------------------------------------------------------------------
@pytest.mark.parametrize(("size", "expected"), [
    (1e9, 0.4), (1e11, 0.8),
    (1e10, 0.6),            # log10 9 -> 11: 10 is halfway, (0.4 + 0.8) / 2
    (10**9.5, 0.5),         # a quarter of the way in log size: 0.4 + 0.25 * 0.4
    (1e7, 0.4), (1e13, 0.8),  # outside the measured sizes the end values hold
])
def test_interpolation_is_log_linear_in_size(size: float, expected: float) -> None:
    assert _calibration().interpolate("gemm", size) == pytest.approx(expected)


def test_interpolation_by_gemm_shape() -> None:
    # GEMM size is its FLOPs 2*m*n*k: 8x4096x4096 = 2.68e8 (below the curve: 0.4);
    # 1024 x 4096 x 4096 = 3.44e10 -> 0.4 + 0.4 * (log10(3.44e10) - 9) / 2 = 0.4 + 0.2 * 1.5366 = 0.7073
    c = _calibration()
    assert c.interpolate("gemm", 2 * 8 * 4096 * 4096) == pytest.approx(0.4)
    assert c.interpolate("gemm", 2 * 1024 * 4096 * 4096) == pytest.approx(0.4 + 0.2 * (1 + math.log10(3.4359738368)), rel=1e-9)


def test_equal_sizes_average_and_missing_kind_is_none() -> None:
    c = _calibration(gemm=((1e9, 0.3), (1e9, 0.5)))
    assert c.interpolate("gemm", 5e9) == pytest.approx(0.4)
    assert c.interpolate("allreduce", 1e6) is None
    assert c.interpolate("all_gather", 1e6) is None  # an unknown or unmeasured kind falls back to defaults
    with pytest.raises(LLMCalcError, match="size"):
        c.interpolate("gemm", -1)


# --- a calibration describes one device --------------------------------------------------------
def test_calibration_from_another_gpu_is_refused(cli, tmp_path: Path) -> None:
    path = tmp_path / "h100.yaml"
    save_calibration(_calibration(), str(path))
    r = cli("latency", "llama2-7b", "--gpu", "a100", "--prompt", "10", "--calibration", str(path))
    assert r.code == 2 and "measured on h100-sxm" in r.err and "not a100-80g" in r.err and len(r.err.splitlines()) == 1
    cpu = tmp_path / "cpu.yaml"
    save_calibration(_calibration(gpu="cpu").model_copy(update={"is_gpu": False}), str(cpu))
    r = cli("latency", "llama2-7b", "--gpu", "h100", "--prompt", "10", "--calibration", str(cpu))
    assert r.code == 2 and "measured on a CPU" in r.err


def test_latency_reads_the_calibration_and_says_so(cli, tmp_path: Path) -> None:
    path = tmp_path / "h100.yaml"
    # largest GEMM 0.7 of peak, largest memory op 0.85 of bandwidth
    save_calibration(_calibration(gemm=((1e9, 0.3), (1e12, 0.7))), str(path))
    args = ("latency", "llama2-7b", "--gpu", "h100", "--prompt", "2048", "--json")
    default, calibrated = cli(*args).json(), cli(*args, "--calibration", str(path)).json()
    assert default["efficiency_source"].startswith("defaults")
    assert calibrated["efficiency_source"].startswith("calibration 2026-11-23")
    assert (calibrated["compute_efficiency"], calibrated["memory_efficiency"]) == pytest.approx((0.7, 0.85))
    # Prefill of 2048 tokens on one H100: each GEMM at the efficiency measured at its own FLOPs F = 2 x 2048 x K x N,
    # e = 0.3 + 0.4 x (log10 F - 9) / 3 (sustained 1: serving uses the measurement as is), + 4 us launch, x 32 layers:
    #   qkv 2.0616e11 -> e 0.60856, 346.39 us; o 6.8719e10 -> 0.54494, 131.45 us; gate_up 3.6937e11 -> 0.64233, 585.21 us;
    #   down 1.8468e11 -> 0.60219, 313.97 us: 32 x 1377.03 us = 44.0648 ms.
    # Head, one logit row: F 2.62e8 -> 0.3 -> 0.88 us, but streaming its 262.1 MB at 0.85 x 3.35 TB/s takes 92.06 us
    # (+ 4 us). Attention (no attention points: flash default 0.45 of peak), causal (the default: token i sees i keys,
    # 2048 x 2049/2 pairs): 2 x 32 x 256 x 2048 x 1024.5 x 32 FLOPs = 1.10004e12 -> 2.4708 ms (its KV read, 1024 + 2048
    # tokens x 524,288 B = 1.61 GB -> 0.566 ms, is less): 46.6316 ms, plus the step overhead (a fitted input, 2 ms at pass
    # 21): TTFT 48.6316 ms.
    from calc.serving.assumptions import DEFAULT_ASSUMPTIONS

    assert calibrated["ttft_s"] * 1e3 == pytest.approx(46.6316 + DEFAULT_ASSUMPTIONS.step_overhead_s * 1e3, abs=1e-3)
    assert default["ttft_s"] != pytest.approx(calibrated["ttft_s"], rel=0.01)  # the defaults' tile/wave model differs
    # decode streams weights at 0.85 instead of 0.9 of bandwidth, exactly.
    assert calibrated["decode_memory_s"] == pytest.approx(default["decode_memory_s"] * 0.9 / 0.85)


def test_calibration_at_another_peak_dtype_is_refused() -> None:
    with pytest.raises(LLMCalcError, match="measured in bf16; --dtype fp8"):
        efficiency_for(load_gpu("h100"), "fp8", _calibration())
    assert efficiency_for(load_gpu("h100"), "fp16", _calibration()).compute == pytest.approx(0.8)  # same peak as bf16


@pytest.mark.parametrize(("text", "problem"), [
    ("format: 2\ngpu: h100-sxm\n", "field 'device_name'"),
    ("{gpu: x, device_name: x, is_gpu: true, dtype: bf16, date: d, roofline: {peak_tflops: 1, peak_gb_s: 1, source: s}, "
     "ops: {gemm: [{size: 1e9, measured_s: 1, efficiency: .nan}]}}", "efficiency"),
    ("{gpu: x, device_name: x, is_gpu: true, dtype: bf16, date: d, roofline: {peak_tflops: 1, peak_gb_s: 1, source: s}, "
     "ops: {gemm: [{size: 1e9, measured_s: 1, efficiency: 40}]}}", "efficiency"),
    ("{gpu: x, device_name: x, is_gpu: true, dtype: bf16, date: d, roofline: {peak_tflops: 1, peak_gb_s: 1, source: s}, "
     "ops: {flops: []}}", "ops.flops"),
])
def test_bad_calibration_files_are_one_line(cli, tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    r = cli("latency", "llama2-7b", "--gpu", "h100", "--prompt", "10", "--calibration", str(path))
    assert r.code == 2 and problem in r.err and len(r.err.splitlines()) == 1


# --- model ops at real shapes, TP-sliced -------------------------------------------------------
def test_llama_layer_gemms_sliced_by_tp() -> None:
    from calc.hardware.model_ops import gemm_ops

    shapes = {o.label: (o.m, o.k, o.n, o.count) for o in gemm_ops(load_model("llama2-7b"), 16, "prefill", tp=2)}
    # column-parallel split N (4096/2, 11008/2, 32000/2); row-parallel split K
    assert shapes == {
        "attention.q_proj": (16, 4096, 2048, 1), "attention.k_proj": (16, 4096, 2048, 1),
        "attention.v_proj": (16, 4096, 2048, 1), "attention.o_proj": (16, 2048, 4096, 1),
        "mlp.gate_proj": (16, 4096, 5504, 1), "mlp.up_proj": (16, 4096, 5504, 1), "mlp.down_proj": (16, 5504, 4096, 1),
        "lm_head.lm_head": (1, 4096, 16000, 1),  # the prompt's last position only: the one token the prefill samples
    }


def test_expert_gemms_are_grouped() -> None:
    from calc.hardware.model_ops import gemm_ops

    ops = {o.label: o for o in gemm_ops(load_model("mixtral-8x7b"), 64, "prefill")}
    # 64 tokens x top-2 of 8 experts: all 8 touched, 64*2/8 = 16 rows each; H=4096, I_e=14336
    up = ops["experts.up_proj"]
    assert (up.count, up.m, up.k, up.n) == (8, 16, 4096, 14336)
    assert up.flops == 2 * 8 * 16 * 4096 * 14336
    assert ops["router.router"].n == 8


def test_attention_and_memory_ops() -> None:
    from calc.hardware.model_ops import attention_op, memory_ops

    m = load_model("llama2-7b")
    pre = attention_op(m, "prefill", 16, 16, tp=2)
    # 16 heads after TP, d_qk = d_v = 128, causal pairs 16*17/2 = 136: 2*16*256*136
    assert (pre.heads, pre.kv_heads, pre.flops) == (16, 16, 1_114_112)
    dec = attention_op(m, "decode", 4, 128)
    assert dec.flops == 2 * 32 * 256 * 4 * 128  # B=4 queries x 128 keys
    gqa = attention_op(load_model("llama3-8b"), "decode", 1, 128, tp=2)
    assert (gqa.heads, gqa.kv_heads) == (16, 4)
    norm, act = memory_ops(m, "prefill", 64)
    assert norm.elements_moved == 2 * 64 * 4096  # read + write [64, 4096]
    assert act.elements_moved == 3 * 64 * 11008  # SwiGLU: read gate and up, write one
    # routed experts: each of 64 tokens' 8 copies runs SwiGLU at Qwen3-30B-A3B's expert width 768
    _, moe_act = memory_ops(load_model("qwen3-30b-a3b"), "prefill", 64)
    assert (moe_act.tokens, moe_act.elements_moved) == (512, 3 * 512 * 768)


def test_model_ops_refuse_an_impossible_tp() -> None:
    from calc.hardware.model_ops import SIZE_PLANS, model_ops

    with pytest.raises(LLMCalcError, match="--tp"):
        model_ops(load_model("llama2-7b"), SIZE_PLANS["small"], tp=3)


# --- least-squares fit to runs -----------------------------------------------------------------
def _synthetic_runs(e_c: float, e_m: float, noise: tuple[float, ...] = (1.0,) * 5) -> str:
    """Runs whose times follow the fit's own model at efficiencies (e_c, e_m):
    t = max(C / e_c, M / e_m) + K, with C, M, K the serving model's terms at efficiency 1."""
    h100 = load_gpu("h100")
    settings = [("llama2-7b", 1, 1, 2048, "prefill"), ("llama2-7b", 1, 8, 512, "decode"),
                ("llama2-13b", 2, 4, 1024, "prefill"), ("llama2-13b", 2, 16, 256, "decode"), ("llama3-8b", 1, 1, 128, "decode")]
    rows = ["model,gpu,num_gpus,batch,prompt,output,ttft_s,tpot_s"]
    for (model, gpus, batch, prompt, phase), k in zip(settings, noise, strict=True):
        c, mem, comm, _ = phase_terms(load_model(model), h100, phase, num_gpus=gpus, batch=batch, prompt=prompt, output=1,
                                   dtype="bf16")
        t = (max(c / e_c, mem / e_m) + comm) * k
        rows.append(f"{model},h100,{gpus},{batch},{prompt},1," + (f"{t!r}," if phase == "prefill" else f",{t!r}"))
    return "\n".join(rows) + "\n"


def test_fit_recovers_known_efficiencies(tmp_path: Path) -> None:
    from calc.hardware.fit import fit_runs, read_runs

    path = tmp_path / "runs.csv"
    path.write_text(_synthetic_runs(0.55, 0.7))
    r = fit_runs(read_runs(str(path)), phase_terms)
    assert (r.compute_efficiency, r.memory_efficiency) == pytest.approx((0.55, 0.7), rel=1e-9)
    assert (r.compute_runs, r.memory_runs) == (2, 3)
    assert all(abs(f.residual) < 1e-9 for f in r.runs)
    assert r.default_rms_residual > 0.05  # latency's own default answers miss these runs by ~10%


def test_fit_with_noise_stays_close(tmp_path: Path) -> None:
    from calc.hardware.fit import fit_runs, read_runs

    path = tmp_path / "runs.csv"
    path.write_text(_synthetic_runs(0.6, 0.75, noise=(1.05, 0.95, 0.97, 1.03, 1.0)))
    r = fit_runs(read_runs(str(path)), phase_terms)
    # compute runs scaled 1.05 and 0.97: x = sum(a*b)/sum(a^2) with a = 1/k gives e = 0.6 * ~1.01
    assert r.compute_efficiency == pytest.approx(0.6, rel=0.03)
    assert r.memory_efficiency == pytest.approx(0.75, rel=0.03)
    assert max(abs(f.residual) for f in r.runs) < 0.06


def test_calibrate_cli_prints_and_saves(cli, tmp_path: Path) -> None:
    runs = tmp_path / "runs.csv"
    runs.write_text(_synthetic_runs(0.5, 0.8))
    saved = tmp_path / "fitted.yaml"
    r = cli("calibrate", "--from-runs", str(runs), "--save", str(saved), "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert out["compute_efficiency"] == pytest.approx(0.5) and len(out["runs"]) == 5
    lat = cli("latency", "llama2-7b", "--gpu", "h100", "--prompt", "2048", "--calibration", str(saved), "--json").json()
    assert (lat["compute_efficiency"], lat["memory_efficiency"]) == pytest.approx((0.5, 0.8))
    table = cli("calibrate", "--from-runs", str(runs))
    assert table.code == 0 and "residual" in table.out


def test_yaml_runs_and_step_times(tmp_path: Path) -> None:
    from calc.hardware.fit import fit_runs, read_runs
    from calc.model.flops import forward_flops

    # llama2-7b, 8 x H100, 64 sequences of 4096 per step at 50% of 989.4 TFLOPS:
    step_flops = forward_flops(load_model("llama2-7b"), 64, 4096).training_flops
    t = step_flops / (8 * 989.4e12 * 0.5)
    path = tmp_path / "runs.yaml"
    path.write_text(f"- {{model: llama2-7b, gpu: h100, num_gpus: 8, batch: 64, seq: 4096, step_time_s: {t!r}}}\n")
    r = fit_runs(read_runs(str(path)), phase_terms)
    assert r.compute_efficiency == pytest.approx(0.5)
    assert any("no run is memory-bound" in a for a in r.assumptions)


@pytest.mark.parametrize(("text", "problem"), [
    ("model,gpu,prompt\nllama2-7b,h100,128\n", "row 1 (line 2): give exactly one of ttft_s, tpot_s, step_time_s (got none)"),
    ("model,gpu,prompt,ttft_s,tpot_s\nllama2-7b,h100,128,0.1,0.01\n", "got ttft_s, tpot_s"),
    ("model,gpu,ttft_s\nllama2-7b,h100,0.1\n", "needs prompt"),
    ("model,gpu,prompt,ttft_s\nllama2-7b,h100,128,-1\n", "ttft_s"),
    ("model,gpu,prompt,ttft_s\nllama2-7b,h100,128,0.1\nllama2-7b,a100,128,0.1\n", "one GPU and dtype"),
    ("model,gpu,prompt,ttft_s\n", "no runs"),
    # issue 20: a CSV whose cells could land in the wrong column is refused, naming the row
    ("model,gpu,prompt,ttft_s\nmodel,gpu,prompt,ttft_s\nllama2-7b,h100,128,0.1\n", "row 1 (line 2) repeats the header line"),
    ("model,gpu,prompt,ttft_s\nllama2-7b,h100,128,0.1\nmodel,gpu,prompt,ttft_s\n", "row 2 (line 3) repeats the header line"),
    ("llama2-7b,h100,128,0.1\n", "the first line must be the header naming the columns, e.g. model,gpu,num_gpus,batch"),
    ("model,gpu,prompt,ttft_s\nllama2-7b,h100,128\n", "row 1 (line 2) has 3 cells, the header 4"),
    ("model,gpu,prompt,ttft_s,tpot_s\nllama2-7b,h100,128,0.1,0.2,0.3\n", "row 1 (line 2) has 6 cells, the header 5"),
    ("model,gpu,prompt,prompt,ttft_s\nllama2-7b,h100,128,256,0.1\n", "names column 'prompt' twice"),
    # values beyond any real run: the column is named
    ("model,gpu,batch,prompt,ttft_s\nllama2-7b,h100,1000000000000000000000000000000,2048,0.061\n", "batch: Input should be less"),
    ("model,gpu,num_gpus,prompt,ttft_s\nllama2-7b,h100,1e30,2048,0.061\n", "num_gpus"),
    ("model,gpu,prompt,ttft_s\nllama2-7b,h100,128,1e30\n", "ttft_s: Input should be less"),
    # a run faster than its roofline at peak: 64 sequences of 2048 tokens on llama2-7b are ~2 x 6.7e9 x 131,072
    # = 1.8e15 FLOPs, 1.8 s at 989.4 TFLOPS, measured 0.061 s (test_a_row_faster_than_peak_names_its_efficiency)
    ("model,gpu,batch,prompt,ttft_s\nllama2-7b,h100,16,2048,0.015\n", "run 1: ttft_s 0.015 s is faster than llama2-7b"),
    # ... and one shorter than its fixed time alone (test_a_row_shorter_than_its_fixed_time_says_so)
    ("model,gpu,batch,prompt,ttft_s\nllama2-7b,h100,1,2048,0.001\n", "run 1: ttft_s 0.001 s is shorter than its fixed"),
    ("model,gpu,batch,prompt,ttft_s\nllama2-7b,h100,64,2048,0.061\n", "run 1: num_gpus: does not fit"),
    ("model,gpu,batch,prompt,ttft_s\nllama2-7b,h100,1,100000,60\n", "run 1: prompt: 100,000 + 1 output tokens exceed"),
])
def test_bad_runs_are_one_line(cli, tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "runs.csv"
    path.write_text(text)
    r = cli("calibrate", "--from-runs", str(path))
    assert r.code == 2 and problem in r.err and len(r.err.splitlines()) == 1, r.err


def test_train_step_reads_the_calibration_says_so_and_refuses_another_gpu(cli, tmp_path: Path) -> None:
    path = tmp_path / "h100.yaml"
    save_calibration(_calibration(gemm=((1e9, 0.3), (1e15, 0.4))), str(path))
    args = ("train-step", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "64", "--tp", "1", "--dp", "8",
            "--zero", "1")
    default = cli(*args, "--json").json()
    calibrated = cli(*args, "--json", "--calibration", str(path)).json()
    # every GEMM of this plan is > 1e9 FLOPs and far below 1e15, so at 0.3-0.4 of peak instead of ~0.66: slower
    assert calibrated["compute_s"] > 1.5 * default["compute_s"]
    assert any("from calibration 2026-11-23" in line for line in cli(*args, "--explain", "--calibration", str(path)).out.splitlines())
    r = cli("train-step", "llama2-7b", "--gpu", "a100", "--num-gpus", "8", "--global-batch", "64", "--calibration", str(path))
    assert r.code == 2 and "measured on h100-sxm" in r.err


def test_gpu_calibration_beyond_physics_is_refused() -> None:
    h100 = load_gpu("h100")
    with pytest.raises(LLMCalcError, match="absurdly low"):
        efficiency_for(h100, "bf16", _calibration(gemm=((1e12, 0.001),)))
    with pytest.raises(LLMCalcError, match="cannot exceed"):
        efficiency_for(h100, "bf16", _calibration(memory=((1e9, 1.3),)))


def test_fit_recovers_efficiencies_from_the_serving_model_itself(tmp_path: Path) -> None:
    """Runs timed by `latency` itself with a flat calibration (e_c, e_m) are fitted back near (e_c, e_m): the
    serving step is not a bare roofline (per-GEMM launch costs, attention beside the GEMMs), so within 10%."""
    from calc.hardware.fit import fit_runs, read_runs
    from calc.serving.latency import latency

    cal = _calibration(gemm=((1e12, 0.55),), memory=((1e9, 0.7),))
    rows = ["model,gpu,num_gpus,batch,prompt,output,ttft_s,tpot_s"]
    for model, gpus, batch, prompt, phase in [("llama2-7b", 1, 1, 2048, "ttft_s"), ("llama2-13b", 2, 4, 1024, "ttft_s"),
                                              ("llama2-7b", 1, 8, 512, "tpot_s"), ("llama3-8b", 1, 1, 128, "tpot_s")]:
        r = latency(load_model(model), load_gpu("h100"), num_gpus=gpus, batch=batch, prompt=prompt, output=1, calibration=cal)
        rows.append(f"{model},h100,{gpus},{batch},{prompt},1," + (f"{r.ttft_s!r}," if phase == "ttft_s" else f",{r.tpot_s!r}"))
    path = tmp_path / "runs.csv"
    path.write_text("\n".join(rows) + "\n")
    fit = fit_runs(read_runs(str(path)), phase_terms)
    assert (fit.compute_efficiency, fit.memory_efficiency) == pytest.approx((0.55, 0.7), rel=0.10)
    assert fit.rms_residual < 0.10


def test_validate_prediction_is_a_bare_forward_with_the_head_over_every_prompt_token() -> None:
    """`validate` times a bare torch forward that computes the head over all B x P prompt rows: its prediction
    drops the engine's 2 ms step overhead and adds the head GEMM's extra rows (flat calibration 0.5 / 0.8 on H100).
    llama2-7b head [4096, 32000], prompt 2048, B = 1: at 2048 rows 2 x 2048 x 4096 x 32000 / (989.4e12 x 0.5) = 1.08525 ms
    (compute-bound); at 1 row it streams 262.1 MB at 0.8 x 3.35 TB/s = 97.82 us. Extra: 0.98743 ms (launches cancel)."""
    from calc.serving.assumptions import DEFAULT_ASSUMPTIONS
    from calc.serving.latency import latency
    from calc.serving.phases import predict_phases

    m, h100 = load_model("llama2-7b"), load_gpu("h100")
    flat = _calibration(gemm=((1.0, 0.5),), memory=((1.0, 0.8),))
    prefill, decode, source = predict_phases(m, h100, 1, 2048, "bf16", flat)
    engine = latency(m, h100, batch=1, prompt=2048, output=1, dtype="bf16", calibration=flat, causal=True)
    extra = 2 * 2048 * 4096 * 32000 / (989.4e12 * 0.5) - 4096 * 32000 * 2 / (3.35e12 * 0.8)
    assert extra * 1e3 == pytest.approx(0.98743, abs=1e-5)
    overhead = DEFAULT_ASSUMPTIONS.step_overhead_s  # the engine's per-step overhead (a fitted input)
    assert prefill == pytest.approx(engine.ttft_s - overhead + extra, rel=1e-9)
    assert decode == pytest.approx(engine.tpot_s - overhead, rel=1e-9)
    assert "no engine step overhead" in source


def test_a_fitted_calibration_reproduces_the_fit_through_latency(cli, tmp_path: Path) -> None:
    """`calibrate --from-runs --save` then `latency --calibration` on each run's settings: latency answers the
    fit's own prediction max(C/e_c, M/e_m) + K to 1e-9 (the saved file says its time model is that roofline)."""
    path = tmp_path / "runs.csv"
    path.write_text("model,gpu,num_gpus,batch,prompt,output,ttft_s,tpot_s\nllama2-7b,h100,1,1,2048,,0.061,\n"
                    "llama2-7b,h100,1,8,512,64,,0.0081\nllama2-13b,h100,2,4,1024,,0.105,\nllama3-8b,h100,1,32,1024,128,,0.0112\n")
    saved = tmp_path / "fitted.yaml"
    fit = cli("calibrate", "--from-runs", str(path), "--save", str(saved), "--json").json()
    for row, (model, gpus, batch, prompt, output) in zip(fit["runs"], [("llama2-7b", 1, 1, 2048, 1), ("llama2-7b", 1, 8, 512, 64),
                                                                      ("llama2-13b", 2, 4, 1024, 1), ("llama3-8b", 1, 32, 1024, 128)],
                                                         strict=True):
        r = cli("latency", model, "--gpu", "h100", "--num-gpus", str(gpus), "--batch", str(batch), "--prompt", str(prompt),
                "--output", str(output), "--calibration", str(saved), "--json")
        assert r.code == 0, r.err
        answer = r.json()[row["measure"]]
        assert answer == pytest.approx(row["predicted_fitted_s"], rel=1e-9), (row, answer)


def test_implied_efficiency_is_the_larger_term_over_the_time_left() -> None:
    from calc.hardware.fit import Terms, implied_efficiency

    # C = 50 ms, M = 10 ms, K = 2 ms, measured 100 ms: 50 / (100 - 2) = 0.5102
    t = Terms(compute_s=0.05, memory_s=0.01, fixed_s=0.002, default_s=0.0)
    assert implied_efficiency(t, 0.1) == pytest.approx(0.05 / 0.098)
    assert implied_efficiency(t, 0.001) == math.inf  # faster than the fixed time alone


def test_a_row_faster_than_peak_names_its_efficiency(cli, tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("model,gpu,batch,prompt,ttft_s\nllama2-7b,h100,16,2048,0.015\n")
    r = cli("calibrate", "--from-runs", str(path))
    from calc.units import parse_human_number  # the efficiency is printed as a human number, never 6.2e+01

    e = parse_human_number(r.err.split("implied efficiency ")[1].split(",")[0], "efficiency")
    # by hand: 16 x 2,048 = 32,768 prompt tokens (a batch the H100's KV cache holds) run in 4 steps of vLLM's
    # 8,192-token budget on an H100, each with the engine's 2 ms overhead: 0.015 - 0.008 = 0.007 s left for the
    # forward, which is >= 2 x 6,738,415,616 params x 32,768 tokens = 4.416e14 FLOPs -> 0.4463 s at 989.4 TFLOPS:
    # e >= 0.4463 / 0.007 = 63.8 (attention and the head add a few percent)
    assert r.code == 2 and 63 < e < 70, r.err


def test_a_row_shorter_than_its_fixed_time_says_so(cli, tmp_path: Path) -> None:
    """One 2,048-token prompt runs in one step with a 2 ms step overhead: 2 ms of fixed time before any FLOP, against
    a measured 1 ms. No efficiency explains it; the message says why."""
    path = tmp_path / "runs.csv"
    path.write_text("model,gpu,batch,prompt,ttft_s\nllama2-7b,h100,1,2048,0.001\n")
    r = cli("calibrate", "--from-runs", str(path))
    assert r.code == 2 and "is shorter than its fixed time alone" in r.err and "Traceback" not in r.err, r.err


# --- the engine a serving run measured (the runs file's engine column) -----------------------------
def test_engine_column_sets_the_runs_fixed_time(tmp_path: Path) -> None:
    """A TPOT run names its engine: the fixed time K carries that engine's step overhead for the model, as
    `latency --engine` prices it. llama3-8b is dense: K(trtllm) - K(vllm) = the data file's trtllm - vllm
    overhead (4.5 - 2 = 2.5 ms in calc/data/fitted_defaults.json), the compute and memory terms unchanged."""
    from calc.fitted import parameter

    m, h100 = load_model("llama3-8b"), load_gpu("h100")
    terms = {e: phase_terms(m, h100, "decode", num_gpus=1, batch=8, prompt=1024, output=128, dtype="bf16", engine=e)
             for e in ("vllm", "trtllm")}
    overhead = parameter("step_overhead_s")
    assert terms["trtllm"][2] - terms["vllm"][2] == pytest.approx(overhead["trtllm"] - overhead["vllm"], rel=1e-9)
    assert terms["trtllm"][:2] == pytest.approx(terms["vllm"][:2], rel=1e-12)


def test_a_run_over_the_engines_token_budget_is_priced_as_latency_prices_it(cli, tmp_path: Path) -> None:
    """8 x 2,048 = 16,384 prompt tokens on one H100: vLLM V1's server budget there is 8,192 tokens a step
    (get_batch_defaults on a GPU of >= 70 GiB), so the prefill runs in 2 chunks, each re-reading the weights and
    paying the step overhead: calibrate's default prediction is `latency`'s TTFT, not one 16,384-token step."""
    runs = tmp_path / "runs.csv"
    runs.write_text("model,gpu,num_gpus,batch,prompt,output,ttft_s,tpot_s\nllama3-8b,h100,1,8,2048,128,0.5,\n")
    fit = cli("calibrate", "--from-runs", str(runs), "--json").json()
    lat = cli("latency", "llama3-8b", "--gpu", "h100", "--batch", "8", "--prompt", "2048", "--output", "128", "--json").json()
    assert fit["runs"][0]["predicted_default_s"] == pytest.approx(lat["ttft_s"], rel=1e-12)
    one_step = cli("latency", "llama3-8b", "--gpu", "h100", "--batch", "8", "--prompt", "2048", "--output", "128",
                   "--max-num-batched-tokens", "16384", "--json").json()
    assert lat["ttft_s"] > one_step["ttft_s"] + 0.002  # the second chunk's step overhead (2 ms) and weight read


@pytest.mark.parametrize(("text", "problem"), [
    ("model,gpu,batch,seq,step_time_s,engine\nllama3-8b,h100,8,2048,1.0,vllm\n",
     "row 1 (line 2): engine is a serving engine's (a ttft_s / tpot_s run); a step_time_s run takes none"),
    ("model,gpu,batch,prompt,tpot_s,engine\nllama3-8b,h100,8,2048,1.0,tgi\n",
     "row 1 (line 2): engine: Input should be 'vllm', 'vllm-v0', 'sglang' or 'trtllm'"),
    ("model,gpu,batch,prompt,tpot_s,engine\nllama3-8b,mi300x,8,2048,1.0,trtllm\n",
     "run 1: TensorRT-LLM runs on NVIDIA GPUs only; mi300x is AMD's"),
    ("model,gpu,prompt,tpot_s,dtype\nllama3-8b,h100,128,0.01,abc\n", "--from-runs: run 1: dtype: h100-sxm has no abc tensor peak"),
    ("model,gpu,batch,seq,step_time_s,dtype\nllama3-8b,h100,8,2048,1.0,abc\n",
     "--from-runs: run 1: dtype: h100-sxm has no abc tensor peak"),
])
def test_engine_column_refusals(cli, tmp_path: Path, text: str, problem: str) -> None:
    runs = tmp_path / "runs.csv"
    runs.write_text(text)
    r = cli("calibrate", "--from-runs", str(runs))
    assert r.code == 2 and problem in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("engine", ["trtllm", "sglang", "vllm-v0"])
def test_an_engines_moe_run_is_priced_as_latency_engine_prices_it(cli, tmp_path: Path, engine: str) -> None:
    """Mixtral on 2 x H100 (an MoE model: its engine's /moe overhead key; vLLM V0: eager prefill): the runs file's
    engine column gives calibrate's default TTFT and TPOT exactly what `latency --engine` prints for the same run."""
    runs = tmp_path / "runs.csv"
    runs.write_text("model,gpu,num_gpus,batch,prompt,output,ttft_s,tpot_s,engine\n"
                    f"mixtral-8x7b,h100,2,16,3000,128,5.0,,{engine}\nmixtral-8x7b,h100,2,16,3000,128,,0.05,{engine}\n")
    fit = cli("calibrate", "--from-runs", str(runs), "--json").json()
    lat = cli("latency", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "2", "--batch", "16", "--prompt", "3000",
              "--output", "128", "--engine", engine, "--json").json()
    assert [r["engine"] for r in fit["runs"]] == [engine, engine]
    assert [r["predicted_default_s"] for r in fit["runs"]] == pytest.approx([lat["ttft_s"], lat["tpot_s"]], rel=1e-12)


def test_engine_flag_fills_the_runs_without_their_own(cli, tmp_path: Path) -> None:
    """calibrate --engine trtllm: the run with an empty engine cell is priced as TensorRT-LLM (latency --engine trtllm's
    TPOT), the one naming sglang keeps SGLang's; with every serving run naming its engine the flag is refused."""
    runs = tmp_path / "runs.csv"
    runs.write_text("model,gpu,num_gpus,batch,prompt,output,ttft_s,tpot_s,engine\n"
                    "mixtral-8x7b,h100,2,16,3000,128,,0.05,\nmixtral-8x7b,h100,2,16,3000,128,,0.05,sglang\n")
    fit = cli("calibrate", "--from-runs", str(runs), "--engine", "trtllm", "--json").json()
    assert [r["engine"] for r in fit["runs"]] == ["trtllm", "sglang"]
    tpot = {e: cli("latency", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "2", "--batch", "16", "--prompt", "3000",
                   "--output", "128", "--engine", e, "--json").json()["tpot_s"] for e in ("trtllm", "sglang")}
    assert [r["predicted_default_s"] for r in fit["runs"]] == pytest.approx([tpot["trtllm"], tpot["sglang"]], rel=1e-12)
    named = tmp_path / "named.csv"
    named.write_text("model,gpu,num_gpus,batch,prompt,output,tpot_s,engine\nmixtral-8x7b,h100,2,16,3000,128,0.05,vllm\n")
    r = cli("calibrate", "--from-runs", str(named), "--engine", "trtllm")
    assert r.code == 2 and "--engine: no run takes trtllm" in r.err


@pytest.mark.parametrize(("model", "gpus", "batch", "ttft", "tpot"), [
    ("mixtral-8x7b", 2, 16, 0.6, 0.03), ("qwen3-30b-a3b", 1, 8, 0.15, 0.02)])
def test_saved_calibration_reproduces_an_moe_runs_fitted_times(cli, tmp_path: Path, model: str, gpus: int, batch: int,
                                                              ttft: float, tpot: float) -> None:
    """Two runs (a TTFT, a TPOT) fix two efficiencies exactly (residuals 0); `latency --calibration` with the saved file
    must then print those two times. An MoE step's routing kernels are a fixed time of the fit (K) and the roofline
    step adds them after its max, at the uncalibrated bandwidth: inside the max, scaled by the calibrated one, they had
    read Mixtral's TPOT 2% off its fitted 30 ms."""
    runs, saved = tmp_path / "runs.csv", tmp_path / "fitted.yaml"
    runs.write_text("model,gpu,num_gpus,batch,prompt,output,ttft_s,tpot_s\n"
                    f"{model},h100,{gpus},{batch},1000,128,{ttft},\n{model},h100,{gpus},{batch},1000,128,,{tpot}\n")
    fit = cli("calibrate", "--from-runs", str(runs), "--save", str(saved), "--json").json()
    assert [r["predicted_fitted_s"] for r in fit["runs"]] == pytest.approx([ttft, tpot], rel=1e-9)
    lat = cli("latency", model, "--gpu", "h100", "--num-gpus", str(gpus), "--batch", str(batch), "--prompt", "1000",
              "--output", "128", "--calibration", str(saved), "--json").json()
    assert (lat["ttft_s"], lat["tpot_s"]) == pytest.approx((ttft, tpot), rel=1e-9)


def test_runs_without_a_dtype_are_the_checkpoint_as_latency_reads_it(cli, tmp_path: Path) -> None:
    """DeepSeek-V3 ships block-scaled FP8 weights: runs with an empty dtype are priced as that checkpoint (as `latency`
    reads a model without --dtype), so the fit is an fp8 calibration whose saved file `latency` (as shipped) accepts
    and reads back to the fitted times; a bf16 reading would have priced 1.34 TB of weights on 8 x 141 GB."""
    runs, saved = tmp_path / "runs.csv", tmp_path / "fitted.yaml"
    runs.write_text("model,gpu,num_gpus,batch,prompt,output,ttft_s,tpot_s,engine\n"
                    "deepseek-v3,h200,8,8,1000,128,0.6,,sglang\ndeepseek-v3,h200,8,8,1000,128,,0.03,sglang\n")
    fit = cli("calibrate", "--from-runs", str(runs), "--save", str(saved), "--json").json()
    assert fit["dtype"] == "fp8"
    lat = cli("latency", "deepseek-v3", "--gpu", "h200", "--num-gpus", "8", "--batch", "8", "--prompt", "1000",
              "--output", "128", "--engine", "sglang", "--calibration", str(saved), "--json").json()
    assert (lat["ttft_s"], lat["tpot_s"]) == pytest.approx((0.6, 0.03), rel=1e-9)
