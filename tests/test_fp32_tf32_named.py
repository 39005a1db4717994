"""--dtype fp32 is timed at the TF32 tensor-core peak (calc.units.COMPUTE_DTYPE) and says so: the peak is named
"fp32 (TF32 tensor math)" with the A100's dense TF32 figure (A100 datasheet: TF32 156 TFLOPS dense, FP32 19.5), and a
note names PyTorch's default (torch.backends.cuda.matmul.allow_tf32 = False) beside the answer (QA finding)."""

from __future__ import annotations

from conftest import run_cli


def test_mfu_names_the_tf32_peak_and_notes_pytorchs_default() -> None:
    r = run_cli("mfu", "llama2-7b", "--gpu", "a100", "--tflops-per-gpu", "15", "--dtype", "fp32")
    assert r.code == 0, r.err
    assert "fp32 (TF32 tensor math) peak 156 TFLOPS" in r.out
    assert any(line.startswith("llmcalc: note: --dtype fp32 prices its matmuls at the GPU's TF32") and "allow_tf32" in line
               for line in r.err.splitlines()), r.err


def test_serving_fp32_notes_it_and_bf16_does_not() -> None:
    r = run_cli("latency", "llama2-7b", "--gpu", "a100", "--dtype", "fp32")
    assert r.code == 0, r.err
    assert "TF32 tensor-core peak" in r.err
    r = run_cli("latency", "llama2-7b", "--gpu", "a100", "--dtype", "bf16")
    assert "TF32" not in r.err
