"""`memory --mode finetune`: option defaults and checks, then the engine (calc.memory.finetune) and its view.
Imported only when that mode runs, so `llmcalc --help` stays fast."""

from __future__ import annotations

from typing import Any

from calc.cli.options import DEFAULT_DTYPE, refuse
from calc.errors import LLMCalcError

OFFLOADS = ("optimizer", "params", "activations")


def _offloads(text: str | None) -> set[str]:
    items = {t.strip().lower() for t in (text or "").split(",") if t.strip()}
    unknown = items - set(OFFLOADS)
    if unknown:
        raise LLMCalcError("--offload", f"unknown {', '.join(sorted(unknown))}; use a comma list of {', '.join(OFFLOADS)}")
    return items


def finetune_memory_command(model: str, *, gpu: str | None, dtype: str, batch: int, seq: int, recompute: str, flash: bool,
                            plan: Any, zero: int, options: dict[str, Any], as_json: bool, explain: bool) -> None:
    from calc.memory.finetune import finetune_memory, fit_table
    from calc.report.finetune import finetune_view
    from calc.report.render import emit
    from calc.sources.catalog import load_gpu, load_model

    o = options
    method = (o["--method"] or "lora").lower()
    if method == "full":
        for flag in ("--lora-rank", "--lora-alpha", "--lora-targets", "--lora-dropout"):
            refuse(flag, o[flag], "sets a LoRA adapter; --method full trains every weight")
    if method != "qlora":
        refuse("--quant", o["--quant"], "sets the 4-bit/8-bit base of --method qlora")
        refuse("--no-double-quant", o["--no-double-quant"], "applies to the NF4 base of --method qlora")
    if method not in ("lora", "dora"):
        refuse("--dtype", dtype, "is the frozen base dtype of --method lora/dora; full uses --precision, qlora --quant",
               DEFAULT_DTYPE)
    if (o["--loss"] or "fp32") == "fp32":
        refuse("--loss-chunks", o["--loss-chunks"], "applies to --loss chunked or fused")
    offload = _offloads(o["--offload"])
    m = load_model(model)
    g = load_gpu(gpu) if gpu else None
    kwargs = dict(
        plan=plan, method=method, lora_rank=o["--lora-rank"] or 8, lora_alpha=o["--lora-alpha"],
        lora_targets=o["--lora-targets"] or "q,v", lora_dropout=o["--lora-dropout"] or 0.0,
        optimizer=(o["--optimizer"] or "adamw").lower(), precision=(o["--precision"] or "mixed").lower(),
        base_dtype=(o["--quant"] or "nf4").lower(), double_quant=not o["--no-double-quant"], frozen_dtype=dtype,
        grad_accum=o["--grad-accum"] or 1, recompute=recompute, attention="flash" if flash else "eager",
        fused=o["--compile"], loss=(o["--loss"] or "fp32").lower(), loss_chunks=o["--loss-chunks"] or 8,
        dropout=o["--dropout"] or 0.0, zero=zero, offload_optimizer="optimizer" in offload, offload_params="params" in offload,
        offload_activations="activations" in offload, optimizer_in_backward=o["--optimizer-in-backward"],
    )
    if o["--cuda-context-gib"] is not None:
        kwargs["cuda_context_gib"] = o["--cuda-context-gib"]
    if o["--fragmentation"] is not None:
        kwargs["fragmentation"] = o["--fragmentation"]
    result = finetune_memory(m, gpu=g, batch=batch, seq=seq, **kwargs)
    if g is not None:
        result = result.model_copy(update={"fit_table": fit_table(m, g, **kwargs)})
    emit(result, as_json, explain, finetune_view)
