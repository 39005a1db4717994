"""bench and validate on the CPU (CI) and on a GPU when one is present (skipped otherwise)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from calc.errors import LLMCalcError
from calc.hardware.bench import match_gpu

TINY = """name: tiny-llama
num_layers: 4
hidden_size: 256
num_heads: 4
num_kv_heads: 2
intermediate_size: 688
vocab_size: 1000
max_position_embeddings: 1024
tied_embeddings: false
gated_mlp: true
"""


@pytest.mark.parametrize(
    ("device_name", "catalog"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H200", "h200"),
        ("NVIDIA H20", "h20"), ("NVIDIA A100-SXM4-40GB", "a100-40g"), ("NVIDIA A100-SXM4-80GB", "a100-80g"),
        ("NVIDIA A800-SXM4-80GB", "a800"), ("NVIDIA L40S", "l40s"), ("NVIDIA L4", "l4"),
        ("NVIDIA GeForce RTX 4090", "rtx4090"), ("NVIDIA B200", "b200"), ("AMD Instinct MI300X", "mi300x"),
        ("Tesla T4", None),
    ],
)
def test_device_names_match_catalog(device_name: str, catalog: str | None) -> None:
    assert match_gpu(device_name) == catalog


def test_missing_torch_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from calc.hardware.bench import import_torch

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(LLMCalcError, match=r"pip install 'llmcalc\[bench\]'"):
        import_torch()


@pytest.mark.parametrize(("args", "flag"), [
    (("bench", "--tp", "2"), "--tp"),  # model-op options need a MODEL
    (("bench", "--seq", "128"), "--seq"),
    (("bench", "--fused"), "--fused"),
    (("bench", "llama2-7b", "--sizes", "1024"), "--sizes"),
    (("bench", "--sizes", "small"), "--sizes"),
    (("bench", "llama2-7b", "--batch-tokens", "128"), "--batch-tokens"),
    (("validate", "mixtral-8x7b"), "MODEL"),  # MoE blocks are not built
])
def test_refused_bench_options(cli, args: tuple[str, ...], flag: str) -> None:
    r = cli(*args)
    assert r.code == 2 and f"error: {flag}" in r.err and len(r.err.splitlines()) == 1, r.err


torch = pytest.importorskip("torch", reason="torch is not installed (pip install '.[bench]')")
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present; these check the CPU path")
gpu_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU was found: GPU measurements run only where CUDA is")


@cpu_only
def test_square_sweep_fused_and_saved_calibration(cli, tmp_path: Path) -> None:
    from calc.hardware.bench import run_bench

    r = run_bench("fp32", [32, 64], model="gpt2", batch_tokens=16, repeats=2)
    assert r.device == "CPU" and any("no GPU was found" in n for n in r.notes)
    assert all(g.achieved_tflops > 0 and g.fraction_of_peak is None for g in r.gemms)
    assert r.fused is not None and r.fused.outputs_allclose
    assert r.fused.bytes_separate > r.fused.bytes_fused
    path = tmp_path / "cpu.yaml"
    out = cli("bench", "--dtype", "fp32", "--sizes", "32,64", "--repeats", "2", "--save", str(path), "--json")
    assert out.code == 0 and out.json()["device"] == "CPU"
    saved = yaml.safe_load(path.read_text())
    assert saved["gpu"] == "cpu" and saved["is_gpu"] is False
    assert [p["size"] for p in saved["ops"]["gemm"]] == [2 * 32**3, 2 * 64**3]  # GEMM size = 2*m*n*k FLOPs
    r2 = cli("latency", "llama2-7b", "--gpu", "h100", "--prompt", "10", "--calibration", str(path))
    assert r2.code == 2 and "measured on a CPU" in r2.err


@cpu_only
def test_bench_llama2_7b_small_writes_a_calibration_latency_reads(cli, tmp_path: Path) -> None:
    """Acceptance: `bench llama2-7b --sizes small` runs on a CPU, labelled so, and latency reads its file back."""
    path = tmp_path / "cal.yaml"
    r = cli("bench", "llama2-7b", "--sizes", "small", "--save", str(path), "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert out["device"] == "CPU" and out["dtype"] == "fp32" and any("no GPU was found" in n for n in out["notes"])
    assert any("collectives skipped" in n for n in out["notes"])
    labels = {o["label"] for o in out["ops"]}
    assert {"attention.q_proj", "attention.o_proj", "mlp.gate_proj", "mlp.down_proj", "lm_head.lm_head", "rmsnorm", "copy",
            "attention.sdpa (causal)", "attention.sdpa (context 128)"} <= labels
    # small = prefill 16 and 64 tokens, decode batches 1 and 4: 2 x 8 GEMMs each phase
    assert sorted({(o["phase"], o["tokens"]) for o in out["ops"] if o["kind"] == "gemm"}) == [
        ("decode", 1), ("decode", 4), ("prefill", 16), ("prefill", 64)]
    peak_flops, peak_bytes = out["peak_tflops"] * 1e12, out["peak_gb_s"] * 1e9
    for o in out["ops"]:
        t = o["timing"]["median_s"]
        rate = o["flops"] / peak_flops if o["kind"] != "memory" else o["bytes"] / peak_bytes
        assert o["efficiency"] == pytest.approx(min(rate / t, 1.5))
        assert o["roofline_s"] == pytest.approx(max(o["flops"] / peak_flops, o["bytes"] / peak_bytes), rel=1e-6)
    # a decode GEMM (one row, fp32: 2*4096^2 FLOPs / 4*(4096 + 4096^2 + 4096) bytes = 0.49976 FLOPs/byte): below the
    # ridge its roofline is the memory time, so of-roofline / of-peak = max(1, ridge / intensity)
    q1 = next(o for o in out["ops"] if o["label"] == "attention.q_proj" and o["phase"] == "decode" and o["tokens"] == 1)
    assert q1["bytes"] == 4 * (4096 + 4096 * 4096 + 4096)
    ridge, intensity = peak_flops / peak_bytes, q1["flops"] / q1["bytes"]
    assert intensity == pytest.approx(0.5 / (1 + 2 / 4096))
    # below the ridge the roofline is the memory time (of-roofline = of-peak x ridge / intensity); a busy
    # host can measure a ridge under 1 FLOP/byte, and then the op is compute-bound (of-roofline = of-peak)
    factor = ridge / intensity if intensity < ridge else 1.0
    assert q1["roofline_efficiency"] == pytest.approx(min(q1["efficiency"] * factor, 1.5))
    # on a CPU the FLOP peak is the best rate measured, so no GEMM or attention op is above it; small memory ops
    # run from cache and may beat the DRAM copy (their efficiency is capped at 1.5), the copy itself may not
    assert all(o["efficiency"] <= 1 + 1e-9 for o in out["ops"] if o["kind"] != "memory" or o["label"] == "copy")
    saved = yaml.safe_load(path.read_text())
    assert saved["model"] == "llama2-7b" and saved["gpu"] == "cpu" and saved["torch_version"].startswith("2.")
    assert set(saved["ops"]) == {"gemm", "attention", "memory"}
    device = tmp_path / "cal-device.yaml"
    lat = cli("latency", "gpt2", "--gpu", str(device), "--calibration", str(path), "--dtype", "fp32", "--prompt", "64", "--json")
    assert lat.code == 0, lat.err
    lat = lat.json()
    assert lat["efficiency_source"].startswith("calibration") and "CPU, fp32" in lat["efficiency_source"]
    largest = max(saved["ops"]["gemm"], key=lambda p: p["size"])["size"]
    plateau = [p["efficiency"] for p in saved["ops"]["gemm"] if p["size"] == largest]
    assert lat["compute_efficiency"] == pytest.approx(min(sum(plateau) / len(plateau), 1.0))


@cpu_only
def test_validate_tiny_spec_on_cpu_with_and_without_calibration(cli, tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    r = cli("validate", str(spec), "--prompt", "64", "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert out["device"] == "CPU" and out["layers"] == 2 and any("CPU figures" in n for n in out["notes"])
    assert [p["name"] for p in out["phases"]] == ["prefill", "decode step"]
    for p in out["phases"]:
        assert p["measured_s"] > 0 and p["predicted_s"] > 0
        assert p["error"] == pytest.approx((p["predicted_s"] - p["measured_s"]) / p["measured_s"])
        assert p["calibrated_predicted_s"] is None
    cal = tmp_path / "tiny-cal.yaml"
    assert cli("bench", str(spec), "--sizes", "small", "--save", str(cal), "--json").code == 0
    r = cli("validate", str(spec), "--prompt", "64", "--calibration", str(cal), "--json")
    assert r.code == 0, r.err
    phases = r.json()["phases"]
    assert all(p["calibrated_predicted_s"] > 0 for p in phases)
    assert r.json()["calibration_source"].startswith("calibration")
    text = cli("validate", str(spec), "--prompt", "32", "--layers", "1")
    assert text.code == 0 and "CPU figures" in text.out and "decode step" in text.out


@cpu_only
def test_validate_refuses_a_gpu_it_cannot_measure(cli, tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    r = cli("validate", str(spec), "--gpu", "h100")
    assert r.code == 2 and "no GPU was found" in r.err


def test_torch_decoder_matches_its_spec_shapes() -> None:
    """The torch blocks hold exactly the spec's per-layer parameter count (weights the time model reads)."""
    from calc.hardware.validate import _Weights
    from calc.model.params import count_params
    from calc.specs import ModelSpec

    m = ModelSpec.model_validate(yaml.safe_load(TINY))
    w = _Weights(torch, m, 4, "cpu", torch.float32)
    block = sum(t.numel() for b in w.blocks for v in b.values() for t in (v if isinstance(v, tuple) else (v,)) if t is not None)
    # per layer: q 256*256 + k,v 2*256*128 + o 256*256 + MLP 3*256*688 + 2 norms 2*256
    #          = 65,536 + 65,536 + 65,536 + 528,384 + 512 = 725,504
    assert block == 4 * 725_504
    # the same as the exact count less the embedding and head (1000*256 each) and the final norm (256)
    assert block == count_params(m).total_params - 2 * 1000 * 256 - 256


@gpu_only
def test_gpu_bf16_reaches_70_percent_of_peak() -> None:
    from calc.hardware.bench import run_bench

    r = run_bench("bf16", [8192], repeats=10)
    assert r.gpu is not None, r.device_name
    assert r.gemms[0].fraction_of_peak >= 0.70


@gpu_only
def test_gpu_validate_llama_within_a_factor_of_two(cli) -> None:
    r = cli("validate", "llama2-7b", "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert out["device"] == "GPU" and out["dtype"] == "bf16" and out["layers"] == 4
    assert all(abs(p["error"]) < 1.0 for p in out["phases"])


def test_collectives_path_runs_over_two_gloo_processes() -> None:
    """The NCCL timing code, on two CPU processes with gloo: every kind and size, and busBW / link."""
    from calc.hardware.bench_collectives import collective_points, time_collectives
    from calc.hardware.calibration import Calibration, Roofline
    from calc.hardware.efficiency import collective_efficiency

    timings = time_collectives(2, [4096, 65536], backend="gloo", repeats=3)
    assert [(k, b) for k, b, _ in timings] == [(k, b) for k in ("allreduce", "allgather", "alltoall") for b in (4096, 65536)]
    points = collective_points(timings, 2, link_gb_s=10.0)
    t = timings[0][2]
    # all-reduce of 4096 B over 2 ranks: busBW = 4096 / t x 2(2-1)/2 = 4096 / t
    assert points["allreduce"][0].efficiency == pytest.approx(min(4096 / t / 10e9, 1.5))
    cal = Calibration(gpu="cpu", device_name="CPU", is_gpu=False, dtype="fp32", date="d",
                      roofline=Roofline(peak_tflops=1, peak_gb_s=1, source="s"), ops=points)
    assert collective_efficiency(cal, "allreduce", 65536) == pytest.approx(points["allreduce"][1].efficiency)
