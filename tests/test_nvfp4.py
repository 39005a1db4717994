"""`--dtype nvfp4 / mxfp4`: a model priced as its 4-bit block-scaled checkpoint, and fp4 tensor-core GEMMs on
Blackwell (calc.memory.weights.requantize, calc.serving.weights). Every expected number is worked out by hand from
the architecture and the format's layout, not read back from the code."""

from __future__ import annotations

import json

import pytest

from calc.cli.options import WEIGHT_FORMAT_NAMES
from calc.hardware.efficiency import gemm_plateau, gemm_time, plateau_key
from calc.memory.weights import WEIGHT_FORMATS, requantize, weights_per_gpu
from calc.serving.step import weight_gemm_time
from calc.serving.weights import weight_format
from calc.sources.catalog import load_gpu, load_model

# Llama-3-8B by hand (config.json: hidden 4096, 32 layers, 32 heads / 8 KV heads of 128, intermediate 14336, vocab
# 128256, untied head). Linear weights per block: q 4096x4096, k 4096x1024, v 4096x1024, o 4096x4096, gate/up
# 4096x14336, down 14336x4096.
LINEARS = [(4096, 4096), (4096, 1024), (4096, 1024), (4096, 4096), (4096, 14336), (4096, 14336), (14336, 4096)]
LAYERS = 32


def _nvfp4_bytes(n_in: int, n_out: int) -> float:
    """NVFP4 (ModelOpt): 4 bits per weight, one e4m3 byte per 16 inputs per output row, fp32 weight_scale_2 and
    input_scale per Linear."""
    return n_in * n_out / 2 + n_in / 16 * n_out + 8


def _mxfp4_bytes(n_in: int, n_out: int) -> float:
    """MXFP4 (OCP MX): 4 bits per weight, one e8m0 byte per 32 inputs per output row."""
    return n_in * n_out / 2 + n_in / 32 * n_out


# Unquantized at bf16: embedding and head 2 x 128256 x 4096, 2 norms per block + the final norm x 4096.
BF16_REST = (2 * 128256 * 4096 + (2 * LAYERS + 1) * 4096) * 2


def test_weight_format_names_agree():
    assert tuple(WEIGHT_FORMATS) == WEIGHT_FORMAT_NAMES


@pytest.mark.parametrize("fmt,per_matrix", [("nvfp4", _nvfp4_bytes), ("mxfp4", _mxfp4_bytes)])
def test_llama3_8b_weights_as_a_4bit_checkpoint(fmt, per_matrix):
    m, dtype = requantize(load_model("llama3-8b"), fmt)
    assert dtype is None and m.quantization is not None and m.checkpoint_dtype == "bf16"
    expected = LAYERS * sum(per_matrix(i, o) for i, o in LINEARS) + BF16_REST
    assert weights_per_gpu(m, None, 1, 1) == pytest.approx(expected, abs=1)
    # nvfp4: 6,979,321,856 linear weights x 0.5625 B + 8 B x 224 Linears + 2,101,870,592 B at bf16 = 6.027 GB
    if fmt == "nvfp4":
        assert expected == pytest.approx(6.0273e9, rel=1e-4)


def test_other_dtypes_pass_through():
    m = load_model("llama3-8b")
    assert requantize(m, "fp8") == (m, "fp8")
    assert requantize(m, None) == (m, None)


def test_b200_fp4_peak_is_the_datasheet():
    """HGX B200: FP4 Tensor Core 18 PFLOPS with sparsity per GPU -> 9 PF dense = 148 SMs x 4 x 8192 x 1856 MHz."""
    b200 = load_gpu("b200")
    assert b200.datasheet_peak_tflops["fp4"] == 9000
    assert 148 * 4 * 8192 * 1856e6 / 1e12 == pytest.approx(9000, rel=1e-3)


def test_fp4_gemms_on_blackwell_weight_only_on_hopper():
    m, _ = requantize(load_model("llama3.3-70b"), "nvfp4")
    b200, h100 = load_gpu("b200"), load_gpu("h100")
    assert weight_format(m, b200, None).compute_dtype == "fp4"  # W4A4 on the fp4 tensor cores
    assert not weight_format(m, b200, None).weight_only
    assert weight_format(m, h100, None).compute_dtype == "bf16"  # Marlin FP4: dequantised in the kernel
    assert weight_format(m, h100, None).weight_only
    assert plateau_key(b200, "fp4") == "Blackwell/fp4"
    assert plateau_key(h100, "fp4") == "Hopper"  # no fp4 peak: no fp4 GEMM
    # shipped gpt-oss (MXFP4 experts) on B200 multiplies its experts at the fp4 peak too
    assert weight_format(load_model("gpt-oss-120b"), b200, None).compute_dtype == "fp4"


def test_large_fp4_gemm_runs_at_the_fp4_plateau():
    """A 16384 x 8192 x 8192 GEMM (tile-aligned): 2 m n k / (9 PF x plateau) plus one launch."""
    b200 = load_gpu("b200")
    m_, n, k = 16384, 8192, 8192
    seconds = gemm_time(b200, m_, n, k, "fp4")
    compute = 2 * m_ * n * k / (9000e12 * gemm_plateau(b200, "fp4"))
    assert seconds == pytest.approx(compute, rel=0.02)
    # the fp4 GEMM beats the fp8 one by the peaks' ratio times the plateaus' (4.5 PF at the fp8 plateau)
    assert gemm_time(b200, m_, n, k, "fp8") / seconds == pytest.approx(
        2 * gemm_plateau(b200, "fp4") / gemm_plateau(b200, "fp8"), rel=0.03)


def test_nvfp4_decode_streams_a_quarter_of_bf16():
    """Batch-1 decode of Llama-3.3-70B on one B200 moves its weights once: the blocks' linears at 0.5625 B
    (4.5 bits) instead of 2 B; the embedding is not read (a lookup), the head stays bf16.
    Linear weights per block: 8192 x (8192 + 1024 + 1024 + 8192) + 3 x 8192 x 28672 = 855,638,016; x 80 layers
    = 68,451,041,280. Head 128256 x 8192 = 1,050,673,152."""
    m, _ = requantize(load_model("llama3.3-70b"), "nvfp4")
    b200 = load_gpu("b200")
    _, _, moved = weight_gemm_time(m, b200, 1, 1, 1, None)
    linears, head = 68_451_041_280, 1_050_673_152
    expected = linears * 0.5625 + 80 * 7 * 8 + head * 2
    assert moved == pytest.approx(expected, rel=2e-3)
    _, _, bf16 = weight_gemm_time(load_model("llama3.3-70b"), b200, 1, 1, 1, "bf16")
    assert bf16 == pytest.approx((linears + head) * 2, rel=2e-3)


def test_cli_nvfp4(cli):
    out = cli("memory", "llama3-8b", "--mode", "infer", "--dtype", "nvfp4", "--json")
    assert out.code == 0
    weights = json.loads(out.out)["weights_bytes"]
    assert weights == pytest.approx(LAYERS * sum(_nvfp4_bytes(i, o) for i, o in LINEARS) + BF16_REST, abs=1)
    lat = cli("latency", "llama3.3-70b", "--gpu", "b200", "--dtype", "nvfp4", "--prompt", "1000", "--output", "1000",
              "--batch", "8", "--explain")
    assert lat.code == 0 and "fp4" in lat.out
    fp8 = json.loads(cli("latency", "llama3.3-70b", "--gpu", "b200", "--dtype", "fp8", "--prompt", "1000", "--output",
                         "1000", "--batch", "8", "--json").out)
    fp4 = json.loads(cli("latency", "llama3.3-70b", "--gpu", "b200", "--dtype", "nvfp4", "--prompt", "1000",
                         "--output", "1000", "--batch", "8", "--json").out)
    assert fp4["tpot_s"] < fp8["tpot_s"] and fp4["ttft_s"] < fp8["ttft_s"]


@pytest.mark.parametrize("args,flag,words", [
    (["memory", "llama3-8b", "--mode", "train", "--dtype", "nvfp4"], "--dtype", "serving weight format"),
    (["memory", "llama3-8b", "--mode", "finetune", "--dtype", "mxfp4"], "--dtype", "--method qlora"),
    (["memory", "llama3-8b", "--mode", "infer", "--dtype", "nvfp4", "--group-size", "32"], "--group-size", "own"),
    (["latency", "llama3-8b", "--gpu", "b200", "--dtype", "fp4"], "--dtype", "nvfp4"),
    (["concurrency", "llama3-8b", "--gpu", "b200", "--kv-dtype", "fp4"], "--kv-dtype", "not stored in fp4"),
    (["flops", "llama3-8b", "--dtype", "nvfp4", "--intensity"], "--dtype", "byte width"),
    (["train-step", "llama3-8b", "--gpu", "b200", "--dtype", "nvfp4"], "--dtype", "training computes in"),
])
def test_cli_refusals(cli, args, flag, words):
    out = cli(*args)
    assert out.code == 2
    assert flag in out.err and words in out.err and "Traceback" not in out.err


def test_weights_class_names_the_checkpoint_format():
    from calc.memory.weights import weights_class

    assert weights_class(load_model("deepseek-v3"), None) == "fp8"  # fp8 block-scaled as shipped
    assert weights_class(load_model("gpt-oss-120b"), None) == "mxfp4"
    assert weights_class(load_model("llama3-8b"), None) == "bf16"
    assert weights_class(load_model("deepseek-v3"), "bf16") == "bf16"  # --dtype overrides
    assert weights_class(requantize(load_model("llama3-8b"), "nvfp4")[0], None) == "nvfp4"


def test_shipped_checkpoint_reads_its_format_band_group(cli):
    """DeepSeek-V3 as shipped is an fp8 MoE on Hopper: its band is that group's (as a corpus row of the same
    deployment is banded, benchmarks/fit_corpus.band_group), not the all-generations pool."""
    r = cli("latency", "deepseek-v3", "--gpu", "h200", "--num-gpus", "8", "--prompt", "228", "--output", "213",
            "--batch", "4", "--json").json()
    assert r["dtype"] == "as-shipped" and r["weights_dtype"] == "fp8"
    assert r["bands"]["tpot_s"]["group"] == "serving_decode|Hopper|fp8|moe"
    c = cli("concurrency", "gpt-oss-120b", "--gpu", "h100", "--max-model-len", "8192", "--json").json()
    assert c["weights_dtype"] == "mxfp4"
