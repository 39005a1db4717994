"""bench on the CPU (CI) and on a GPU when one is present (skipped otherwise)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from calc.errors import LLMCalcError
from calc.hardware.bench import match_gpu


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


def test_calibration_round_trips_into_latency(cli, tmp_path: Path) -> None:
    from calc.hardware.calibration import save_calibration

    path = tmp_path / "h100.yaml"
    # 653.004 / 989.4 = 0.66 of peak (the Hopper GEMM plateau of calc.hardware.efficiency); 3015 GB/s / 3350
    # = 0.90 of spec: the defaults, so TTFT must match.
    save_calibration({"gpu": "h100-sxm", "device_name": "NVIDIA H100 80GB HBM3", "dtype": "fp16",
                      "achieved_tflops": 653.004, "achieved_gb_s": 3015.0, "date": "2026-11-22",
                      "torch_version": "2.13.0", "cuda_version": "12.8"}, str(path))
    args = ("latency", "llama2-7b", "--gpu", "h100", "--prompt", "2048", "--json")
    default = cli(*args).json()
    calibrated = cli(*args, "--calibration", str(path)).json()
    assert calibrated["efficiency_source"].startswith("calibration 2026-11-22")
    assert calibrated["compute_efficiency"] == pytest.approx(0.66)
    assert calibrated["memory_efficiency"] == pytest.approx(0.90)
    assert calibrated["ttft_s"] == pytest.approx(default["ttft_s"])
    # A calibration from another GPU is refused.
    r = cli("latency", "llama2-7b", "--gpu", "a100", "--prompt", "10", "--calibration", str(path))
    assert r.code == 2 and "measured on h100-sxm, not a100-80g" in r.err


torch = pytest.importorskip("torch", reason="torch is not installed (pip install '.[bench]')")


def test_cpu_sweep_fused_and_saved_calibration(cli, tmp_path: Path) -> None:
    from calc.hardware.bench import run_bench

    r = run_bench("fp32", [32, 64], model="gpt2", batch_tokens=16, repeats=2)
    if r.is_gpu:
        pytest.skip("a GPU is present; the CPU path is not what runs here")
    assert r.device == "CPU" and any("no GPU was found" in n for n in r.notes)
    assert all(g.achieved_tflops > 0 and g.fraction_of_peak is None for g in r.gemms)
    assert 0 < r.copy_bandwidth.achieved_gb_s < 10_000
    assert r.fused is not None and r.fused.outputs_allclose
    assert r.fused.bytes_separate > r.fused.bytes_fused
    # The CLI writes a calibration labelled CPU, which a GPU command refuses.
    path = tmp_path / "cpu.yaml"
    out = cli("bench", "--dtype", "fp32", "--sizes", "32", "--repeats", "2", "--save", str(path), "--json")
    assert out.code == 0 and out.json()["device"] == "CPU"
    r2 = cli("latency", "llama2-7b", "--gpu", "h100", "--prompt", "10", "--calibration", str(path))
    assert r2.code == 2 and "measured on a CPU" in r2.err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU: the GPU bench runs only where CUDA is available")
def test_gpu_bf16_reaches_70_percent_of_peak() -> None:
    from calc.hardware.bench import run_bench

    r = run_bench("bf16", [8192], repeats=10)
    assert r.gpu is not None, r.device_name
    assert r.gemms[0].fraction_of_peak >= 0.70
