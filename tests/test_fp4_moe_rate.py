"""fp4 MoE grouped GEMMs (calc.serving.moe.expert_gemm_rate, ServingAssumptions.fp4_grouped_gemm_*): the shipped
defaults are the output of benchmarks/fit_fp4_moe_rate.py on aiconfigurator's B200 TensorRT-LLM MoE table, and the
rate follows min(1, (d / D) ** alpha)."""

from __future__ import annotations

import pytest
from fit_fp4_moe_rate import fit, points

from calc.serving.assumptions import ServingAssumptions
from calc.serving.moe import expert_gemm_rate


def test_the_shipped_defaults_are_the_fit() -> None:
    a = ServingAssumptions()
    assert fit() == (a.fp4_grouped_gemm_dim, a.fp4_grouped_gemm_exponent)


def test_the_table_extract_is_whole() -> None:
    # 157 nvfp4 + 14 w4a8_mxfp4_mxfp8 points of the 1.3.0rc20 table at >= 128 tokens per expert (the file's header)
    assert len(points()) == 171


def test_rate_by_hand() -> None:
    a = ServingAssumptions(fp4_grouped_gemm_dim=12288, fp4_grouped_gemm_exponent=0.45)
    # Qwen3-30B-A3B's experts (768 wide) at TP 1: (768 / 12288) ** 0.45 = 0.0625 ** 0.45 = 0.2872
    assert expert_gemm_rate(4096, a, "fp4", "Blackwell", dim=768) == pytest.approx(0.0625 ** 0.45)
    assert expert_gemm_rate(4096, a, "fp4", "Blackwell", dim=768) == pytest.approx(0.2872, abs=1e-4)
    # Mixtral 8x7B's (hidden 4096, intermediate 14336): min(K, N) = 4096 -> (1/3) ** 0.45 = 0.6100; 16384 wide -> 1
    assert expert_gemm_rate(4096, a, "fp4", "Blackwell", dim=4096) == pytest.approx(0.6100, abs=1e-4)
    assert expert_gemm_rate(4096, a, "fp4", "Blackwell", dim=16384) == 1.0
    # decode-sized (< 128 tokens per expert): the weight-streaming rate, whatever the format
    assert expert_gemm_rate(64, a, "fp4", "Blackwell", dim=768) == a.grouped_gemm_efficiency
    # fp8 and 16-bit experts are not touched by it
    assert expert_gemm_rate(4096, a, "fp8", "Blackwell", dim=768) == a.fp8_grouped_gemm_rate
