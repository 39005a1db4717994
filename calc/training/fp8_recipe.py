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

Where a Megatron-Core step (Transformer Engine modules: TELayerNormColumnParallelLinear, TERowParallelLinear; stack
"megatron") casts less than one full cast per GEMM operand per micro-batch (Transformer Engine at commit d0067d0,
transformer_engine/pytorch/module/{layernorm_linear,linear,base}.py; Megatron-LM megatron/core/extensions/
transformer_engine.py), calc.training.cost prices:

  shared input   Megatron's linear_qkv holds q, k, v and linear_fc1 holds gate and up as ONE TE linear: their common
                 input is cast once (SHARED_INPUT_GROUPS), not once per projection.
  norm fusion    linear_qkv and the dense MLP's linear_fc1 are TELayerNormColumnParallelLinear: the RMSNorm kernel writes
                 its output already quantized (layernorm_linear.py: ``with_quantized_norm``, ``apply_normalization(...,
                 input_quantizer)``), rowwise 1 B + columnwise 1 B in place of the bf16 write the elementwise term already
                 prices: 0 B more for recipes whose scale is known before the kernel (NORM_FUSED_RECIPES: delayed scaling
                 reads it from the amax history; MXFP8 finds its 1x32 block scales inside the kernel). Current scaling
                 (tensorwise) needs the tensor's amax before the cast and blockwise is not fused here: full cast.
  fp8 gathers    with sequence parallelism the quantized norm output and the row-parallel GEMM's output gradient are
                 cast on the rank's T/t rows and all-gathered in fp8 (layernorm_linear.py ``gather_along_first_dim(ln_out,
                 tp_group, quantizer=quantizer)``; base.py ``grad_output_preprocess``: "FP8 with all-gather: ... fused
                 cast + transpose"); a per-tensor fp8 all-gather carries rowwise data only
                 (``supports_only_rowwise_all_gather``), so the columnwise copy is made after the gather:
                 (cast - 1) B per element of the T/t local rows (0 when norm-fused) + FP8_TRANSPOSE_BYTES per element of
                 the T gathered rows. The all-gathers themselves move 1 B per element (calc.training.cost, TP).
  weights        Megatron's TE wrappers pass ``is_first_microbatch`` (True only on the first micro-batch after an optimizer
                 step) and TE keeps the quantized weight and its transpose in a workspace (``update_workspace`` /
                 ``cache_weight`` in linear.py / layernorm_mlp.py): a weight is cast once per step, not once per
                 micro-batch. Per micro-batch that is 1/m of a weight cast (Llama-3.1-70B, TP 4: 214 M elements x 4 B /
                 3.0 TB/s = 0.29 ms per layer per step against 64 micro-batches x ~13 ms): left out of the
                 per-micro-batch layer cost.
  weight memory  the memory engine keeps 2 B per weight under fp8, as under bf16. That is what the runs this tool is
                 checked against hold: NeMo 2 and Megatron-Bridge fp8 recipes set ``fp8_param_gather = True``
                 (nemo/collections/llm/recipes/precision/mixed_precision.py ``bf16_with_fp8_mixed``; Megatron-Bridge
                 src/megatron/bridge/training/mixed_precision.py, the current-scaling and MXFP8 recipes alike), so the
                 model's weights ARE the fp8 tensors, the 1 B row-wise data and the 1 B column-wise copy a TN-only GPU
                 needs, in place of the bf16 weight and with no separate cast cache (the fp32 master is the optimizer's).
                 A Megatron-LM run WITHOUT --fp8-param-gather keeps the bf16 weight and TE's cached fp8 weight and
                 transpose beside it (~2 B per linear weight more); not priced. Pricing that cache on top of every fp8
                 run calls four corpus runs that ran (Llama-3-70B on 64 GB200 under FSDP, Nemotron-4-340B on 128 H100)
                 "does not fit".
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
# Megatron-Core / Transformer Engine (module docstring): projections one TE linear holds, the first of each group carrying
# the group's one input cast; the components whose first group is fed by a TE LayerNorm-fused linear
SHARED_INPUT_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
NORM_FED_COMPONENTS = frozenset({"attention", "mlp"})
NORM_FUSED_RECIPES = frozenset({"delayed", "mxfp8"})
FP8_TRANSPOSE_BYTES = 2.0  # read the gathered rowwise fp8 copy (1 B) and write its transpose (1 B)
# How sources name a recipe (corpus rows, user input), mapped to the recipe above (first match wins).
SPELLINGS = (("rowwise", "rowwise"), ("mxfp8", "mxfp8"), ("blockwise", "blockwise"), ("current", "tensorwise"),
             ("tensorwise", "tensorwise"), ("dynamic", "tensorwise"), ("delayed", "delayed"))


def recipe_of(text: str | None) -> str | None:
    """The named recipe a free-text description names (None when it names none)."""
    if not text:
        return None
    low = text.lower()
    return next((name for word, name in SPELLINGS if word in low), None)


# Bytes per element of a GEMM input a Transformer Engine linear saves for its backward under fp8 (calc.memory.activations
# layer_buffers ``gemm_input_bytes``): the fp8 data (1 B; TE v2.8 linear.py keeps only the column-wise or the row-wise copy
# of the quantized input) plus its scales: per-tensor recipes one scale per tensor (nothing per element), MXFP8 one
# E8M0 byte per 32 elements (OCP Microscaling Formats v1.0, MXFP8: block size 32, 8-bit shared scale), blockwise one fp32
# scale per 1x128 tile (TE Float8BlockScaling), rowwise one fp32 scale per row of thousands (left out). torchao's
# Float8Linear (the fsdp stack) saves the bf16 input instead.
SAVED_INPUT_BYTES = {"delayed": 1.0, "tensorwise": 1.0, "rowwise": 1.0, "mxfp8": 1.0 + 1 / 32,
                     "blockwise": 1.0 + 4 / 128}
TE_STACKS = frozenset({"megatron", "llm-foundry", "deepspeed"})  # stacks whose fp8 linears are Transformer Engine's


def saved_gemm_input_bytes(dtype: str, stack: str, recipe: str) -> float:
    """Bytes per element of a saved GEMM input: SAVED_INPUT_BYTES[recipe] for an fp8 run on a Transformer Engine stack
    (``stack`` a calc.training.stack key), else 0 (the activations' own dtype)."""
    return SAVED_INPUT_BYTES[recipe] if dtype.startswith("fp8") and stack in TE_STACKS else 0.0
