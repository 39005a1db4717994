"""Model arithmetic commands: `params`, `flops`."""

from __future__ import annotations

from typing import Annotated

import typer

from calc.cli.options import (
    DEFAULT_BATCH,
    DEFAULT_DTYPE,
    DEFAULT_SEQ,
    AttentionPairs,
    AttentionPairsOpt,
    BatchOpt,
    DtypeOpt,
    ExplainOpt,
    JsonOpt,
    ModelArg,
    OldCausalCountOpt,
    SeqOpt,
    TokensOpt,
    alias,
    human_int,
)


def params(model: ModelArg, as_json: JsonOpt = False, explain: ExplainOpt = False) -> None:
    """Exact parameter count per component, beside the textbook 12*L*H^2 + V*H."""
    from calc.model.params import count_params
    from calc.report.render import emit, params_view
    from calc.sources.catalog import load_model

    emit(count_params(load_model(model)), as_json, explain, params_view)


def flops(
    model: ModelArg,
    batch: BatchOpt = DEFAULT_BATCH,
    seq: SeqOpt = DEFAULT_SEQ,
    context: Annotated[int | None, typer.Option(
        "--context", parser=human_int("--context"), help="tokens attended S' (default: --seq)")] = None,
    attention_pairs: AttentionPairsOpt = AttentionPairs.full,
    old_causal: OldCausalCountOpt = None,
    output: Annotated[int | None, typer.Option(
        "--output", parser=human_int("--output"), help="also generate this many tokens after the --seq prompt (as latency / serve count "
                                                  "them: the prefill makes the first, then --output - 1 decode steps)")] = None,
    generate: Annotated[int | None, typer.Option("--generate", parser=human_int("--generate"), hidden=True)] = None,
    intensity: Annotated[bool, typer.Option("--intensity", help="per-matmul FLOPs/byte of prefill and one decode step")] = False,
    fused: Annotated[bool, typer.Option("--fused", help="GEMM shapes of separate vs fused QKV + MLP-in (the parallel-layer form)")] = False,
    tokens: TokensOpt = None,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """FLOPs of a forward pass and a training step, per token beside 2N and 6N; optionally decode
    (--output), arithmetic intensity and the fused parallel-layer GEMM."""
    from calc.cli.options import counted_causal, refuse, refuse_weight_format
    from calc.model import flops as engine
    from calc.report.render import console, emit, emit_json, emit_warnings, flops_view, gemm_view
    from calc.sources.catalog import load_model
    from calc.units import dtype_bytes

    causal = counted_causal(attention_pairs, old_causal)
    decode = alias(output, generate, "--output", "--generate")
    refuse("--dtype", dtype if not (intensity or fused) else None,
           "only sets the bytes moved of --intensity / --fused; FLOPs do not depend on it", DEFAULT_DTYPE)
    refuse_weight_format(dtype, "FLOPs do not depend on it; --intensity / --fused take a byte width (fp8, int4, ...)")
    dtype_bytes(dtype)
    m = load_model(model)
    result = engine.forward_flops(m, batch, seq, context, causal)
    extras = {}
    if decode is not None:
        extras["decode"] = engine.decode_flops(m, batch, seq, decode)
    if intensity:
        extras["intensity_prefill"] = engine.arithmetic_intensity(m, batch, seq, result.context, dtype)
        extras["intensity_decode"] = engine.arithmetic_intensity(m, batch, 1, result.context + 1, dtype)
    if fused:
        extras["fused"] = engine.fused_parallel_shapes(m, batch * seq, dtype)
    if tokens is not None:  # total training compute of D tokens at this --seq
        extras["training_compute"] = engine.training_compute(result, tokens)
    if as_json:
        emit_warnings({"forward": result, **extras})  # the dump below is a dict: emit_json would not see the warnings
        emit_json({**result.model_dump(mode="json"), **extras})
        return
    emit(result, False, explain, flops_view)
    emit_warnings(extras)
    for name, extra in extras.items():
        console.print(gemm_view(name, extra))
        if explain and name == "decode":  # the decode formula (and MLA's absorbed per-key cost) under its table
            for line in extra.explain:
                console.print(f"  {line}", markup=False, highlight=False)
