"""`--dtype awq / gptq`: a model priced as its W4A16 group-128 checkpoint (AutoAWQ / AutoGPTQ layouts,
calc.memory.weights.WEIGHT_FORMATS). Expected numbers are worked out by hand from Llama-2-7B's architecture and the
formats' tensors, not read back from the code."""

from __future__ import annotations

import json

import pytest

from calc.bands import dtype_class
from calc.memory.weights import requantize, weights_class, weights_per_gpu
from calc.serving.step import weight_gemm_time
from calc.serving.weights import weight_format
from calc.sources.catalog import load_gpu, load_model

# Llama-2-7B (config.json: hidden 4096, 32 layers, 32 heads, intermediate 11008, vocab 32000, untied head, fp16).
# Linears per block (in, out): q, k, v, o 4096 x 4096; gate, up 4096 x 11008; down 11008 x 4096.
LINEARS = [(4096, 4096)] * 4 + [(4096, 11008)] * 2 + [(11008, 4096)]
LAYERS = 32
# Left at fp16 by both quantizers: embedding + head 2 x 32000 x 4096, 2 norms per block + the final norm of 4096.
FP16_REST = (2 * 32000 * 4096 + (2 * LAYERS + 1) * 4096) * 2


def _awq_bytes(n_in: int, n_out: int) -> float:
    """AutoAWQ GEMM layout: qweight int4 (packed in int32), scales fp16 and qzeros int4 per 128 inputs per output."""
    groups = n_in // 128
    return n_in * n_out / 2 + groups * n_out * 2 + groups * n_out / 2


def _gptq_bytes(n_in: int, n_out: int) -> float:
    """AutoGPTQ: the same three tensors plus g_idx, one int32 per input row."""
    return _awq_bytes(n_in, n_out) + 4 * n_in


def test_llama2_7b_awq_checkpoint_bytes():
    """6,476,005,376 block weights x (0.5 + 2.5/128) B = 3,364,487,168 B + 524,820,480 B at fp16 = 3,889,307,648 B."""
    m, dtype = requantize(load_model("llama2-7b"), "awq")
    assert dtype is None and m.quantization is not None and m.quantization.method == "awq"
    expected = LAYERS * sum(_awq_bytes(i, o) for i, o in LINEARS) + FP16_REST
    assert expected == 3_889_307_648
    assert weights_per_gpu(m, None, 1, 1) == pytest.approx(expected, abs=1)


def test_llama2_70b_awq_is_the_published_checkpoint():
    """Llama-2-70B: 80 blocks of 855,638,016 Linear weights at (0.5 + 2.5/128) B = 35,562,455,040 B, embedding and
    head 2 x 32000 x 8192 x 2 B, 161 norms of 8192 x 2 B: 36,613,668,864 B. The Hub lists TheBloke's AWQ shards of
    this architecture at 9.94 + 9.9 + 9.9 + 6.87 GB = 36.61 GB (Llama-2-70B-Chat-AWQ model-00001 and -00004,
    Llama-2-70B-AWQ model-00002 and -00003; sizes rounded to 0.01 GB)."""
    expected = 80 * 855_638_016 * (0.5 + 2.5 / 128) + 2 * 32000 * 8192 * 2 + 161 * 8192 * 2
    assert expected == 36_613_668_864
    assert expected == pytest.approx((9.94 + 9.9 + 9.9 + 6.87) * 1e9, abs=0.03e9)
    m, _ = requantize(load_model("llama2-70b"), "awq")
    assert weights_per_gpu(m, None, 1, 1) == pytest.approx(expected, abs=1)


def test_llama2_7b_gptq_adds_its_g_idx():
    """g_idx: 32 layers x 4 B x (4 x 4096 + 2 x 4096 + 11008) input rows = 4,554,752 B more than AWQ."""
    m, _ = requantize(load_model("llama2-7b"), "gptq")
    expected = LAYERS * sum(_gptq_bytes(i, o) for i, o in LINEARS) + FP16_REST
    assert expected == 3_889_307_648 + 4_554_752
    assert weights_per_gpu(m, None, 1, 1) == pytest.approx(expected, abs=1)


def test_w4a16_is_weight_only_everywhere():
    """AWQ / GPTQ kernels dequantise int4 to fp16 in the GEMM (W4A16): no fp4 or int4 tensor-core GEMM, even on
    a GPU with an fp4 peak."""
    m, _ = requantize(load_model("llama2-7b"), "awq")
    for gpu in ("b200", "h100", "rtx4090"):
        fmt = weight_format(m, load_gpu(gpu), None)
        assert fmt.weight_only and fmt.compute_dtype == "fp16"


def test_awq_decode_streams_about_a_quarter_of_fp16():
    """Batch-1 decode reads the block weights at 0.51953 B (4.16 bits) and the fp16 head; the embedding is a
    lookup. Block weights 6,476,005,376; head 32000 x 4096 = 131,072,000."""
    m, _ = requantize(load_model("llama2-7b"), "awq")
    _, _, moved = weight_gemm_time(m, load_gpu("rtx4090"), 1, 1, 1, None)
    assert moved == pytest.approx(6_476_005_376 * (0.5 + 2.5 / 128) + 131_072_000 * 2, rel=2e-3)


def test_band_group_of_an_int4_checkpoint():
    m, _ = requantize(load_model("llama2-7b"), "gptq")
    assert weights_class(m, None) == "int4"
    assert dtype_class("awq") == dtype_class("gptq") == "int4"  # corpus rows named by format band as int4


def test_cli_awq(cli):
    out = cli("memory", "llama2-7b", "--mode", "infer", "--dtype", "awq", "--json")
    assert out.code == 0
    r = json.loads(out.out)
    assert r["weights_bytes"] == 3_889_307_648 and r["weights_dtype"] == "int4"
    fp16 = cli("latency", "llama2-7b", "--gpu", "rtx4090", "--dtype", "fp16", "--prompt", "1", "--output", "512",
               "--json").json()
    awq = cli("latency", "llama2-7b", "--gpu", "rtx4090", "--dtype", "awq", "--prompt", "1", "--output", "512",
              "--json").json()
    assert awq["tpot_s"] < 0.5 * fp16["tpot_s"]  # a memory-bound decode reading ~0.28x the bytes


@pytest.mark.parametrize("args,flag,words", [
    (["memory", "llama2-7b", "--mode", "train", "--dtype", "awq"], "--dtype", "serving weight format"),
    (["memory", "llama2-7b", "--mode", "infer", "--dtype", "gptq", "--group-size", "64"], "--group-size", "128"),
    (["flops", "llama2-7b", "--dtype", "gptq", "--intensity"], "--dtype", "byte width"),
    (["train-step", "llama2-7b", "--gpu", "h100", "--dtype", "awq"], "--dtype", "training computes in"),
])
def test_cli_refusals(cli, args, flag, words):
    out = cli(*args)
    assert out.code == 2
    assert flag in out.err and words in out.err and "Traceback" not in out.err


def test_bare_int4_is_weight_only_w4a16():
    """`--dtype int4` (no checkpoint format): the blocks' weight matrices at half a byte, embeddings and lm_head at 16
    bits (as engines quantize a checkpoint), multiplied as W4A16, as every serving engine's integer 4-bit linear runs
    (Marlin / TensorRT-LLM weight-only). Llama-2-7B (config.json shapes): 32 x (4 x 4096^2 + 3 x 4096 x 11008) =
    6,476,005,376 block weights, an lm_head of 32000 x 4096 = 131,072,000. A batch-1 decode step streams
    6,476,005,376 x 0.5 + 131,072,000 x 2 = 3,500,146,688 B at the A100-80G's 2.039 TB/s x 90% = 1.91 ms, where bf16
    streams (6,476,005,376 + 131,072,000) x 2. It used to run the GEMMs as int4 x int4 with 128 padded token rows at
    the fp16 peak, a compute-bound 7.1 ms beyond streaming that made int4 decode no faster than bf16."""
    m, gpu = load_model("llama2-7b"), load_gpu("a100-80g")
    fmt = weight_format(m, gpu, "int4")
    assert fmt.act_dtype == fmt.compute_dtype == m.checkpoint_dtype == "bf16" and fmt.weight_only  # 16-bit activations
    blocks, head = 6_476_005_376, 131_072_000
    seconds, _flops, moved = weight_gemm_time(m, gpu, 1, 1, 1, "int4")
    assert moved == blocks // 2 + 2 * head  # the embedding is a lookup, not a GEMM; norms are not GEMMs
    stream = moved / (2.039e12 * 0.9)
    assert stream <= seconds <= stream + 225 * 3e-6  # streaming plus at most ~3 us per GEMM launch (7 x 32 + lm_head)
    bf16_seconds, _f, bf16_moved = weight_gemm_time(m, gpu, 1, 1, 1, "bf16")
    # the same launches; bf16 streams 4x the block weights (and at least that: its 128-row tile is near the A100's ridge)
    assert bf16_moved == 2 * (blocks + head) and bf16_seconds - seconds >= 2.5 * stream


def test_bare_int4_decode_latency_below_bf16_and_awq():
    """The same through `latency --json`: TPOT at batch 1 falls with the bytes streamed (bf16 > awq > int4; awq keeps
    embeddings and lm_head at 16 bits and adds group scales) and the KV cache stays 16-bit (vLLM's auto)."""
    from conftest import run_cli

    tpot = {}
    for dtype in ("bf16", "awq", "int4"):
        r = run_cli("latency", "llama2-7b", "--gpu", "a100-80g", "--dtype", dtype, "--prompt", "128", "--output", "128",
                    "--batch", "1", "--json")
        assert r.code == 0, r.err
        tpot[dtype] = r.json()["tpot_s"]
    assert tpot["int4"] < tpot["awq"] < 0.6 * tpot["bf16"]
