"""Catalog commands: `models`, `gpus`, `show`."""

from __future__ import annotations

from typing import Annotated

import typer

from calc.cli.options import JsonOpt
from calc.errors import LLMCalcError


def models(as_json: JsonOpt = False) -> None:
    """List the model catalog with exact parameter counts."""
    from calc.model.params import count_params
    from calc.report.render import console, emit_json, models_view
    from calc.sources.catalog import list_models

    rows = []
    for m in list_models():
        p = count_params(m)
        rows.append({"name": m.name, "aliases": m.aliases, "description": m.description, "num_layers": m.num_layers,
                     "hidden_size": m.hidden_size, "num_heads": m.num_heads, "num_kv_heads": m.kv_heads,
                     "total_params": p.total_params, "active_params": p.active_params})
    if as_json:
        emit_json({"models": rows})
        return
    console.print(models_view(rows))


def gpus(as_json: JsonOpt = False) -> None:
    """List the GPU catalog with derived and datasheet dense peaks."""
    from calc.hardware.peaks import summarize_gpu
    from calc.report.render import console, emit_json, gpus_view
    from calc.sources.catalog import list_gpus

    summaries = [summarize_gpu(g) for g in list_gpus()]
    if as_json:
        emit_json(summaries)
        return
    console.print(gpus_view(summaries))


def show(name: Annotated[str, typer.Argument(help="a model or GPU name, or a spec file")], as_json: JsonOpt = False) -> None:
    """Show one model or GPU spec (GPUs with their peak derivation)."""
    from calc.hardware.peaks import summarize_gpu
    from calc.report.render import console, emit, emit_json, gpu_detail_view, spec_view
    from calc.sources.catalog import load_gpu, load_model

    try:
        spec = load_model(name, "NAME")
    except LLMCalcError as model_error:
        try:
            gpu = load_gpu(name, "NAME")
        except LLMCalcError:
            raise model_error from None
        emit(summarize_gpu(gpu), as_json, False, gpu_detail_view)
        return
    if as_json:
        emit_json(spec)
        return
    console.print(spec_view(spec))
