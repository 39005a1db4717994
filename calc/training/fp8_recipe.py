"""fp8 training recipes: the HBM traffic of each fp8 GEMM operand's cast and the rate of the scaled GEMM.

Every recipe casts each operand of a linear's GEMMs (input [m,k] and weight [k,n] forward, the output gradient [m,n]
backward) from bf16 to fp8 with a scale; the GEMMs that stay bf16 (attention core, norms, router, output head) are
the step model's (calc.training.cost). Per element of each operand:

  delayed     Transformer Engine DelayedScaling (the NeMo / Megatron default through 2024; llm-foundry amp_fp8): the
              scale comes from the amax history, the new amax is found inside the cast kernel: read 2 B + fp8 write 1 B
              + the transposed / column-wise copy the other GEMM of the pair needs 1 B (Hopper fp8 tensor cores take only
              TN operands; TE Float8Tensor) = 4 B.
  tensorwise  current (dynamic) per-tensor scaling (torchao Float8Linear default; TE Float8CurrentScaling): one more
              read of the input for its amax before the cast: 4 + 2 = 6 B.
  rowwise     torchao rowwise (per-row scales, CUTLASS rowwise-scaled GEMM): the same 6 B, and a GEMM slower than the
              per-tensor cuBLAS one: rate ROWWISE_GEMM_RATE of it. torchao's own training benchmark (torchao/float8/
              README.md, "Training benchmarks", Llama3-8B, 8 x H100, seq 8192, batch 1, FSDP2, per-op SAC,
              torch.compile) measured 6150 tokens/s in bf16, 7689.5 tensorwise (+25.03%) and 6768 rowwise (+10.05%):
              the rowwise step is 7689.5 / 6768 = 1.136 x the tensorwise step. ROWWISE_GEMM_RATE is the rate that
              makes this engine's step for that run 1.136 x slower than its tensorwise step (tests/test_attention_stack.py
              reproduces the ratio).
  mxfp8       MXFP8 (Blackwell; TE MXFP8BlockScaling): 1x32 block scales computed in the cast kernel, row- and column-wise
              copies: 2 + 1 + 1 = 4 B.
  blockwise   DeepSeek-V3 style 1x128 activation tiles / 128x128 weight blocks (TE Float8BlockScaling, DeepGEMM): scales
              found inside the tile cast: 4 B.
"""

from __future__ import annotations

ROWWISE_GEMM_RATE = 0.78
# recipe -> (HBM bytes per operand element cast, fp8 GEMM rate relative to the per-tensor scaled GEMM)
FP8_RECIPES: dict[str, tuple[float, float]] = {
    "delayed": (4.0, 1.0),
    "tensorwise": (6.0, 1.0),
    "rowwise": (6.0, ROWWISE_GEMM_RATE),
    "mxfp8": (4.0, 1.0),
    "blockwise": (4.0, 1.0),
}
# How sources name a recipe (corpus rows, user input), mapped to the recipe above (first match wins).
SPELLINGS = (("rowwise", "rowwise"), ("mxfp8", "mxfp8"), ("blockwise", "blockwise"), ("current", "tensorwise"),
             ("tensorwise", "tensorwise"), ("dynamic", "tensorwise"), ("delayed", "delayed"))


def recipe_of(text: str | None) -> str | None:
    """The named recipe a free-text description names (None when it names none)."""
    if not text:
        return None
    low = text.lower()
    return next((name for word, name in SPELLINGS if word in low), None)
