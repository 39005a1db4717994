"""--dtype fp8 / int8 / int4 convert the blocks' weight matrices, as engines quantize a checkpoint; embeddings, the
output head, routers and norms stay 16-bit (calc.memory.weights.LOW_BIT_DTYPES), in memory and in the serving step.

Llama 3 8B by hand: attention 32 x (2 x 4096^2 + 2 x 4096 x 1024) = 1,342,177,280; MLP 32 x 3 x 4096 x 14336 =
5,637,144,576; norms 65 x 4096 = 266,240; embedding = head = 128,256 x 4096 = 525,336,576 (8,030,261,248 in all)."""

from __future__ import annotations

import pytest

from calc.serving.step import weight_gemm_time
from calc.sources.catalog import load_gpu, load_model

LINEARS = 1_342_177_280 + 5_637_144_576
KEPT = 266_240 + 2 * 525_336_576  # norms, embedding, head


@pytest.mark.parametrize(("dtype", "expected"), [
    ("fp8", LINEARS + 2 * KEPT),
    ("int4", LINEARS // 2 + 2 * KEPT),
    ("bf16", 2 * (LINEARS + KEPT)),
])
def test_memory_weights(cli, dtype: str, expected: int) -> None:
    d = cli("memory", "llama3-8b", "--gpu", "h100", "--dtype", dtype, "--json").json()
    assert d["weights_bytes"] == expected


def test_group_scales_on_the_converted_matrices_only(cli) -> None:
    # one fp16 scale per 128 weights of the 6,979,321,856 block weights: 109,051,904 B
    d = cli("memory", "llama3-8b", "--gpu", "h100", "--dtype", "int4", "--group-size", "128", "--json").json()
    assert d["weights_bytes"] == LINEARS // 2 + LINEARS * 2 // 128 + 2 * KEPT


def test_a_group_that_does_not_divide_the_inputs_is_refused(cli) -> None:
    r = cli("memory", "llama3-8b", "--gpu", "h100", "--dtype", "int4", "--group-size", "7")
    assert r.code == 2 and "--group-size" in r.err and "4,096" in r.err


def test_a_decode_step_streams_the_head_in_16_bits() -> None:
    # one token at TP 1: every block matrix at 1 B and the head at 2 B (the embedding is a gather, not streamed)
    _s, _f, moved = weight_gemm_time(load_model("llama3-8b"), load_gpu("h100"), 1, 1, 1, "fp8")
    assert moved == LINEARS + 2 * 525_336_576
