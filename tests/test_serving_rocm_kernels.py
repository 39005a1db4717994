"""vLLM's ROCm kernels by release (calc.serving.decode_attention, calc.serving.fp8_fallback): numbers worked by hand
from the kernels' sources and Llama 3.1 405B's shape (126 layers, 128 query heads, 8 KV heads of 128)."""

from __future__ import annotations

from pathlib import Path

from calc.serving.assumptions import ServingAssumptions
from calc.serving.decode_attention import rocm_custom_pa_max_seq_len, vllm_decode_kv_reads
from calc.serving.eager import forward_kernels
from calc.serving.fp8_fallback import vllm_fp8_unfused
from calc.serving.step import step_time
from calc.sources.catalog import load_gpu, load_model

CONFIG = Path(__file__).resolve().parents[1] / "benchmarks/data/corpus/configs/llama-3.1-405b-instruct-fp8.json"


def test_custom_paged_attention_limit_by_release() -> None:
    # rocm_flash_attn.py _use_rocm_custom_paged_attention: max_seq_len <= 32768 from #8310 (0.6.2) to 0.9.1, 128 K after
    assert rocm_custom_pa_max_seq_len("0.6.3.dev109+gcb3b2b9b") == 32768
    assert rocm_custom_pa_max_seq_len("0.9.1") == 32768
    assert rocm_custom_pa_max_seq_len("0.9.2") == 131072
    m = load_model("llama3.1-405b")
    # a 32,784-token prompt + 2,048 outputs passes 32,768: the generic kernel, one block per query head = 128 / 8
    assert vllm_decode_kv_reads(m, "AMD", "0.6.3", 32784 + 2048 - 1) == 16
    assert vllm_decode_kv_reads(m, "AMD", "0.6.3", 2048 + 2048 - 1) == 1  # within the custom kernel's limit
    assert vllm_decode_kv_reads(m, "AMD", "0.6.4", 34831, custom_pa_max_seq_len=131072) == 1  # AMD's fork
    assert vllm_decode_kv_reads(m, "NVIDIA", "0.6.3", 34831) == 1


def test_generic_kernel_reads_the_kv_cache_once_per_query_head() -> None:
    # KV per token per GPU at TP 8, bf16: 126 layers x (K + V) x 1 KV head x 128 x 2 B = 64,512 B; 4 sequences of
    # 34,000 tokens: 8.774 GB; the generic kernel reads it 16 times, 15 x 8.774 GB = 131.6 GB more per step
    m, g = load_model("llama3.1-405b"), load_gpu("mi300x")
    run = dict(tp=8, dtype="fp8", kv_dtype="bf16", decode_seqs=4, decode_context=34000)
    once = step_time(m, g, ServingAssumptions(), **run)
    generic = step_time(m, g, ServingAssumptions(decode_kv_reads=16), **run)
    extra_bytes = 15 * 4 * 34000 * 126 * 2 * 128 * 2
    assert extra_bytes == 131_604_480_000
    assert generic.bytes_read - once.bytes_read == extra_bytes


def test_unfused_fp8_fallback_by_release_and_checkpoint() -> None:
    assert vllm_fp8_unfused("AMD", "0.6.3.dev109+gcb3b2b9b", "fbgemm_fp8")  # cutlass off on ROCm, scale vectors
    assert not vllm_fp8_unfused("AMD", "0.7.3", "fbgemm_fp8")  # PR #12501: rowwise torch._scaled_mm
    assert not vllm_fp8_unfused("AMD", "0.6.3", "fp8")  # per-tensor scales: one fused torch._scaled_mm
    assert not vllm_fp8_unfused("NVIDIA", "0.6.3", "fbgemm_fp8")  # CUTLASS scaled_mm takes the vectors


def test_unfused_fallback_kernels_of_meta_405b_fp8() -> None:
    # Meta's checkpoint leaves attention in bf16 (modules_to_not_convert): per layer gate_up + down are fp8 (quantise +
    # GEMM, + mul, mul, cast unfused), q/k/v + o bf16, + 6 other kernels + 2 all-reduces. The model prices a tensor
    # group's GEMMs in one dtype (its bytes averaged over the layers), so the first / last layers' bf16 MLPs count as
    # fp8 here: 126 layers x 2 fp8 GEMMs (the checkpoint has 124 x 2).
    m, g = load_model(str(CONFIG)), load_gpu("mi300x")
    assert forward_kernels(m, g, None, 8) == 126 * (2 * 2 + 2 + 8) == 1764
    assert forward_kernels(m, g, None, 8, unfused_dequant=True) == 126 * (2 * 5 + 2 + 8) == 2520


def test_unfused_fallback_moves_24_bytes_per_output_element() -> None:
    # 8,192 prefill tokens through gate_up (N = 2 x 53,248 / 8 = 13,312) and down (N = 16,384) at TP 8, the model's
    # 126 fp8 layers (above): 24 B x 8,192 x (13,312 + 16,384) x 126 = 735.6 GB more, at the GEMMs' HBM bandwidth
    from calc.hardware.efficiency import memory_efficiency

    m, g = load_model(str(CONFIG)), load_gpu("mi300x")
    run = dict(tp=8, dtype=None, prefill_tokens=8192, prefill_prompt=4096, prefill_causal=False)
    fused = step_time(m, g, ServingAssumptions(), **run)
    unfused = step_time(m, g, ServingAssumptions(fp8_unfused_dequant=True), **run)
    extra = 24 * 8192 * (13312 + 16384) * 126
    assert extra == 735_647_367_168
    bandwidth = g.hbm_tb_s * 1e12 * memory_efficiency(g, None)
    assert abs((unfused.gemm_s - fused.gemm_s) - extra / bandwidth) < 1e-9


def test_latency_prices_the_release_kernels_and_explains_them(cli) -> None:  # noqa: ANN001
    # --engine vllm --engine-version 0.6.3 on MI300X, Meta's FP8 checkpoint, 32,784 + 2,048 tokens: both ROCm paths;
    # the current release (no version) runs neither, and its TPOT is the lower
    run = ("latency", str(CONFIG), "--gpu", "mi300x", "--num-gpus", "8", "--prompt", "32784", "--output", "2048",
           "--batch", "4", "--explain", "--json")
    old = cli(*run, "--engine", "vllm", "--engine-version", "0.6.3")
    now = cli(*run, "--engine", "vllm")
    assert old.code == 0 and now.code == 0
    import json

    assert json.loads(old.out)["tpot_s"] > json.loads(now.out)["tpot_s"]
    text = " ".join(cli(*run[:-1], "--engine", "vllm", "--engine-version", "0.6.3").out.split())
    assert "reads each KV head 16 times per step" in text and "fp8 GEMMs unfused" in text
    assert "reads each KV head" not in " ".join(cli(*run[:-1], "--engine", "vllm").out.split())


def test_report_and_compare_price_the_rocm_decode_kernel_as_latency_and_serve_do(cli) -> None:  # noqa: ANN001
    # Mistral NeMo 12B (40 layers, 32 query heads, 8 KV heads of 128, a 1,024,000-token window) on one MI300X under the
    # current vLLM: 200,000 + 256 tokens pass the ROCm custom kernel's 128 K limit, so decode runs the generic kernel,
    # which reads each KV head 32 / 8 = 4 times. At the mean decode context 200,000 + 256 / 2 = 200,128 tokens the KV
    # cache is 40 x 2 x 8 x 128 x 2 B = 163,840 B per token: 3 extra reads = 3 x 163,840 x 200,128 B per step more
    # than on an H100 (same weights, one read). report and compare must price it as latency and serve do.
    run = ("--num-gpus", "1", "--prompt", "200000", "--output", "256")
    extra = 3 * 163_840 * 200_128
    assert extra == 98_366_914_560
    report = {g: cli("report", "mistral-nemo-12b", "--gpu", g, *run, "--json").json() for g in ("mi300x", "h100")}
    assert (report["mi300x"]["latency"]["decode_bytes_per_step"]
            - report["h100"]["latency"]["decode_bytes_per_step"]) == extra
    latency = cli("latency", "mistral-nemo-12b", "--gpu", "mi300x", *run, "--json").json()
    assert report["mi300x"]["latency"]["tpot_s"] == latency["tpot_s"]
    targets = (*run, "--tpot-ms", "100")  # batch 1 meets it on both
    compared = cli("compare", "mistral-nemo-12b", "mi300x", *targets, "--json").json()[0]
    served = cli("serve", "mistral-nemo-12b", "--gpu", "mi300x", *targets, "--json").json()["best"]
    assert compared["batch"] == served["batch"] == 1
    assert compared["tpot_s"] * 1e3 == served["tpot_ms"]
