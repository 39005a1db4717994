"""The input cast of a dense fp8 (W8A8) linear in a serving step (calc.serving.act_quant), worked by hand."""

import pytest

from calc.serving.assumptions import DEFAULT_ASSUMPTIONS
from calc.serving.step import weight_gemm_time
from calc.sources.catalog import load_gpu, load_model


def test_llama3_70b_fp8_tp4_prefill_cast_by_hand():
    # Llama-3-70B at --dtype fp8, TP 4, 4,096 prompt tokens, no sampled rows. Per layer the four dense fp8 linears
    # quantize their inputs once each: qkv (column-parallel, K = 8,192 whole), o_proj (row-parallel, K = 8,192 / 4),
    # gate_up (K = 8,192), down (row-parallel, K = 28,672 / 4): 8,192 + 2,048 + 8,192 + 7,168 = 25,600 elements per
    # token per layer, x 80 layers x 4,096 tokens x 3 B = 25,165,824,000 B at 0.9 x 3.35 TB/s = 8.3469 ms.
    m, h100 = load_model("llama3-70b"), load_gpu("h100")
    with_cast = weight_gemm_time(m, h100, 4096, 0, 4, "fp8")[0]
    without = weight_gemm_time(m, h100, 4096, 0, 4, "fp8", a=DEFAULT_ASSUMPTIONS.model_copy(
        update={"fp8_act_quant_bytes": 0.0}))[0]
    assert with_cast - without == pytest.approx(25_165_824_000 / (0.9 * 3.35e12), rel=1e-9)


def test_bf16_linears_pay_no_cast():
    m, h100 = load_model("llama3-70b"), load_gpu("h100")
    zero = DEFAULT_ASSUMPTIONS.model_copy(update={"fp8_act_quant_bytes": 0.0})
    assert weight_gemm_time(m, h100, 4096, 0, 4, "bf16")[0] == weight_gemm_time(m, h100, 4096, 0, 4, "bf16", a=zero)[0]


def test_weight_only_fp8_on_ampere_pays_no_cast():
    # DeepSeek-V3's FP8 checkpoint on an A100 (no fp8 tensor cores) runs weight-only (FP8 Marlin dequantizes the weights
    # inside the kernel): its inputs stay bf16, no cast; on an H100 the same checkpoint is W8A8 and pays one.
    m, a100, h100 = load_model("deepseek-v3"), load_gpu("a100"), load_gpu("h100")
    zero = DEFAULT_ASSUMPTIONS.model_copy(update={"fp8_act_quant_bytes": 0.0})
    assert weight_gemm_time(m, a100, 4096, 0, 8, None)[0] == weight_gemm_time(m, a100, 4096, 0, 8, None, a=zero)[0]
    assert weight_gemm_time(m, h100, 4096, 0, 8, None)[0] > weight_gemm_time(m, h100, 4096, 0, 8, None, a=zero)[0]
