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


def test_a_gpu_without_a_cuda_reading_says_its_total_is_nvidia_smis() -> None:
    # H20: no torch.cuda.mem_get_info reading in the catalog (memory_cuda_total_mib unset): the budget starts from
    # nvidia-smi's 97,871 MiB and says so; an H100 SXM has a CUDA reading (81,105 MiB) and names it (QA finding)
    r = run_cli("concurrency", "llama3-70b", "--gpu", "h20", "--tp", "2", "--explain")
    assert r.code == 0, r.err
    assert "device total = 102,625,181,696 B (95.58 GiB): nvidia-smi's, no CUDA reading is known for h20" in r.out
    r = run_cli("concurrency", "llama3-70b", "--gpu", "h100", "--tp", "2", "--explain")
    assert "device total as CUDA reports it (torch.cuda.mem_get_info) = 85,044,756,480 B" in r.out
