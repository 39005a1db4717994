"""`--mode finetune` of `memory` and `report`: the fine-tuning options, their defaults and checks, then the
engine (calc.memory.finetune). Engine modules are imported inside the functions so `llmcalc --help` stays fast."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from calc.cli.options import DEFAULT_DTYPE, human_float, human_int, refuse
from calc.errors import LLMCalcError

OFFLOADS = ("optimizer", "params", "activations")


def _opt(flag: str, help_text: str, parser=None, **kw):  # noqa: ANN001, ANN202
    return typer.Option(flag, help=help_text, parser=parser, **kw)


MethodOpt = Annotated[str | None, _opt("--method", "finetune: full, lora, qlora or dora (default lora)")]
LoraRankOpt = Annotated[int | None, _opt("--lora-rank", "finetune: adapter rank r (default 8)", human_int("--lora-rank"))]
# PEFT's lora_alpha, taken so that a user who passes it hears why it is not needed: refused (no byte of memory)
LoraAlphaOpt = Annotated[float | None, _opt("--lora-alpha", "finetune: adapter scale alpha; refused (it changes no byte of memory)",
                                            human_float("--lora-alpha"), hidden=True)]
LoraTargetsOpt = Annotated[str | None, _opt("--lora-targets", "finetune: q,k,v,o,gate,up,down,experts or all-linear (default q,v)")]
LoraDropoutOpt = Annotated[float | None, _opt("--lora-dropout", "finetune: dropout on the adapter input (default 0)",
                                              human_float("--lora-dropout", allow_zero=True, maximum=1))]
AdapterInputsOpt = Annotated[str | None, _opt(
    "--adapter-inputs", "finetune: what each adapter keeps of its input: shared (adapters in the model dtype: litgpt, "
                        "torchtune), fp32 (PEFT fp32 adapters, no autocast: an fp32 copy each) or autocast (PEFT under "
                        "bf16 autocast: a bf16 copy each, none on 4-bit layers) (default shared)")]
PrepareKbitOpt = Annotated[bool, _opt(
    "--prepare-kbit", "qlora: PEFT prepare_model_for_kbit_training (embeddings, norms, head and residual stream in fp32)")]
RepeatKvOpt = Annotated[bool, _opt(
    "--repeat-kv", "finetune: K and V copied to every query head before attention (transformers repeat_kv: padded "
                   "batches under SDPA, eager attention)")]
OptimizerOpt = Annotated[str | None, _opt(
    "--optimizer", "finetune: adamw, adamw8bit, paged-adamw8bit, paged-adamw, adafactor, sgd, lion (default adamw)")]
PrecisionOpt = Annotated[str | None, _opt("--precision", "finetune: mixed (bf16 + fp32 master), bf16 (pure) or fp32 (default mixed)")]
QuantOpt = Annotated[str | None, _opt("--quant", "qlora: base in nf4 (default) or int8")]
DoubleQuantOpt = Annotated[bool, _opt("--no-double-quant", "qlora: keep fp32 absmax per 64 weights (no double quantisation)")]
GradAccumOpt = Annotated[int | None, _opt("--grad-accum", "finetune: micro-batches per step; gradients persist (default 1)",
                                          human_int("--grad-accum"))]
CompileOpt = Annotated[bool | None, _opt("--compile/--no-compile", "train, finetune: fused elementwise ops (torch.compile, or "
                                         "Megatron's fusions: norm upcast, silu kept out) or eager ones (default: the stack's)")]
LossOpt = Annotated[str | None, _opt("--loss", "cross-entropy buffers: fp32 (torch CE on upcast logits, 12 B/logit; "
                                              "16 B per logit of the vocab shard under TP, loss_parallel), compiled (the same "
                                              "under torch.compile, torchtitan's with compile on: 4 B), megatron "
                                              "(Megatron-Core vocab-parallel CE, 6 B), flash-ce (flash-attn fused CE, 4 B), "
                                              "chunked or fused (default: the stack's: fp32 on hf, megatron on megatron)")]
LossChunksOpt = Annotated[int | None, _opt("--loss-chunks", "finetune: chunks of a chunked/fused loss (default 8)",
                                           human_int("--loss-chunks"))]
DropoutOpt = Annotated[float | None, _opt("--dropout", "finetune: hidden/attention dropout of the config (default 0)",
                                          human_float("--dropout", allow_zero=True, maximum=1))]
OffloadOpt = Annotated[str | None, _opt("--offload", "finetune: CPU offload of optimizer, params and/or activations (comma list)")]
OptInBwdOpt = Annotated[bool, _opt("--optimizer-in-backward", "finetune: step each parameter as its gradient arrives")]
ContextOpt = Annotated[float | None, _opt("--cuda-context-gib", "finetune: CUDA context per GPU, GiB (default 0.5)",
                                          human_float("--cuda-context-gib", allow_zero=True, maximum=100))]
ActivationsOpt = Annotated[str | None, _opt("--activations", "train: per-tensor (default) or textbook (Korthikanti et al. 2022)")]
FragOpt = Annotated[float | None, _opt("--fragmentation", "train, finetune: allocator reserved/allocated - 1 (default: the "
                                                        "stack's: 0.05 on hf, 0 on megatron)",
                                       human_float("--fragmentation", allow_zero=True, maximum=1))]


def _offloads(text: str | None) -> set[str]:
    items = {t.strip().lower() for t in (text or "").split(",") if t.strip()}
    unknown = items - set(OFFLOADS)
    if unknown:
        raise LLMCalcError("--offload", f"unknown {', '.join(sorted(unknown))}; use a comma list of {', '.join(OFFLOADS)}")
    return items


def finetune_report(model: str, gpu: str, *, num_gpus: int | None, tp: int | None, pp: int | None, dtype: str,
                    batch: int, seq: int, zero: int, options: dict[str, Any], fmt: str, as_json: bool, explain: bool = False) -> None:
    """`report --mode finetune`: exact and trainable parameters, the fine-tuning memory page, fit and batch x sequence,
    on --num-gpus (default 1) as --tp x --pp x data-parallel (memory --mode finetune's placement)."""
    import sys

    from calc.cli.common import memory_refusal, placement
    from calc.model.params import count_params
    from calc.report.finetune import finetune_markdown, finetune_page
    from calc.report.render import console, emit_json
    from calc.sources.catalog import load_model

    recompute = options.pop("--recompute", None)
    result = finetune_result(model, gpu=gpu, dtype=dtype, batch=batch, seq=seq, recompute=recompute.value if recompute else "none",
                             flash=True, plan=placement(tp, pp, None, None, False, num_gpus, spread="dp"), zero=zero,
                             options=options)
    params = count_params(load_model(model))
    refusal = memory_refusal(result)
    if as_json:  # the page's top-level keys as in the other modes (fits, fit, verdict, assumptions), then its sections
        emit_json({"mode": "finetune", "model": result.model, "gpu": result.gpu, "num_gpus": result.num_gpus,
                   "params": params, "finetune": result, "fits": result.fits, "verdict": refusal,
                   "assumptions": result.assumptions})
    elif fmt == "markdown":
        sys.stdout.write(finetune_markdown(params, result) + "\n")
    elif fmt == "html":
        from calc.report.finetune import finetune_html

        sys.stdout.write(finetune_html(params, result) + "\n")
    else:
        from calc.report.render import how_sure

        console.print(finetune_page(params, result))
        block, band_lines = how_sure(result, explain)
        if block is not None:
            console.print(block)
        if explain:
            from calc.report.render import explain_panel

            console.print(explain_panel([*(f"assumption: {a}" for a in result.assumptions), *result.explain, *band_lines]))
    if refusal is not None:  # one exit code per outcome, whatever the format
        raise LLMCalcError("--num-gpus", refusal)


def finetune_result(model: str, *, gpu: str | None, dtype: str, batch: int, seq: int, recompute: str, flash: bool,
                    plan: Any, zero: int, options: dict[str, Any]) -> Any:
    """The FinetuneResult named by the options (defaults: LoRA r=8 on q,v, AdamW, mixed precision), with the
    largest batch x sequence table when a GPU is given."""
    from dataclasses import replace

    from calc.memory.finetune import finetune_memory, fit_table
    from calc.sources.catalog import load_gpu, load_model
    from calc.training.cost import other_stack_note, stack_memory_line
    from calc.training.stack import DEFAULT_STACK, check_stack_runs, check_tp, memory_defaults, stack_key

    o = {k: options.get(k) for k in FINETUNE_FLAGS}
    method = (o["--method"] or "lora").lower()
    stack = o["--stack"] or DEFAULT_STACK["finetune"]
    check_stack_runs(stack, zero=zero, pp=plan.pp)
    from calc.training.layout import zero_with_pp_problem

    if plan.pp > 1 and (problem := zero_with_pp_problem(zero, plan.pp)):  # as --mode train and train-step refuse it
        raise LLMCalcError("--zero", problem)
    if method == "full":
        for flag in ("--lora-rank", "--lora-alpha", "--lora-targets", "--lora-dropout", "--adapter-inputs"):
            refuse(flag, o[flag], "sets a LoRA adapter; --method full trains every weight")
    refuse("--lora-alpha", o["--lora-alpha"], "scales the adapter's output (alpha / r) and changes no byte of memory: "
                                              "drop it (the memory follows --lora-rank and --lora-targets)")
    if method != "qlora":
        refuse("--quant", o["--quant"], "sets the 4-bit/8-bit base of --method qlora")
        refuse("--no-double-quant", o["--no-double-quant"], "applies to the NF4 base of --method qlora")
        refuse("--prepare-kbit", o["--prepare-kbit"], "prepares a 4-/8-bit base: --method qlora", False)
    if method not in ("lora", "dora"):
        refuse("--dtype", dtype, "is the frozen base dtype of --method lora/dora; full uses --precision, qlora --quant",
               DEFAULT_DTYPE)
    elif dtype in ("int8", "int4"):  # an integer base is bitsandbytes' (LLM.int8 / NF4), priced with its scales
        raise LLMCalcError("--dtype", f"a LoRA on an {dtype} base is QLoRA: give --method qlora --quant "
                                      f"{'int8' if dtype == 'int8' else 'nf4'} (bitsandbytes' format, its scales counted)")
    mem = memory_defaults(stack)

    def stack_settings(of: Any) -> dict[str, Any]:
        """A stack's memory settings (calc.memory.training.StackMemory) as finetune_memory keywords, the flags over them."""
        return dict(fused=of.fused if o["--compile"] is None else o["--compile"], loss=(o["--loss"] or of.loss).lower(),
                    fragmentation=of.fragmentation if o["--fragmentation"] is None else o["--fragmentation"],
                    grad_buffer=of.grad_buffer, fsdp_reduce_bytes=of.fsdp_reduce_bytes,
                    caching_allocator=of.caching_allocator, fp32_shards=of.fp32_shards, bnb_linears=of.bnb_linears)

    loss = stack_settings(mem)["loss"]
    if loss not in ("chunked", "fused"):
        refuse("--loss-chunks", o["--loss-chunks"], "applies to --loss chunked or fused")
    rows = batch * seq // plan.cp  # the token rows of the [tokens, vocab] logits a rank's loss chunks split
    if o["--loss-chunks"] is not None and o["--loss-chunks"] > rows:
        raise LLMCalcError("--loss-chunks", f"{o['--loss-chunks']:,} chunks of the loss over {rows:,} tokens a rank leave "
                                            "chunks without a whole token; give <= that many")
    offload = _offloads(o["--offload"])
    if zero and plan.dp == 1:
        raise LLMCalcError("--zero", f"ZeRO-{zero} shards over data-parallel ranks; give --dp > 1 (or --num-gpus)")
    m = load_model(model)
    check_tp(stack, m, plan.tp)
    g = load_gpu(gpu) if gpu else None
    kwargs = dict(
        plan=plan, method=method, lora_rank=o["--lora-rank"] or 8, lora_alpha=o["--lora-alpha"],
        lora_targets="q,v" if o["--lora-targets"] is None else o["--lora-targets"], lora_dropout=o["--lora-dropout"] or 0.0,
        adapter_inputs=(o["--adapter-inputs"] or "shared").lower(),
        optimizer=(o["--optimizer"] or "adamw").lower(), precision=(o["--precision"] or "mixed").lower(),
        base_dtype=(o["--quant"] or "nf4").lower(), double_quant=not o["--no-double-quant"], frozen_dtype=dtype,
        prepare_kbit=bool(o["--prepare-kbit"]), kv_repeated=bool(o["--repeat-kv"]),
        # a pipeline runs at least p micro-batches per step (1F1B: the first stage holds p), accumulating into the
        # gradients, as `memory --mode train` / train-step price it (calc.training.step.steady_state_microbatches)
        grad_accum=o["--grad-accum"] or plan.pp, recompute=recompute, attention="flash" if flash else "eager",
        loss_chunks=o["--loss-chunks"] or 8, **stack_settings(mem), dropout=o["--dropout"] or 0.0, zero=zero,
        offload_optimizer="optimizer" in offload,
        offload_params="params" in offload,
        offload_activations="activations" in offload, optimizer_in_backward=bool(o["--optimizer-in-backward"]),
    )
    if o["--cuda-context-gib"] is not None:
        kwargs["cuda_context_gib"] = o["--cuda-context-gib"]
    result = finetune_memory(m, gpu=g, batch=batch, seq=seq, **kwargs)
    other = DEFAULT_STACK["train"]
    note = None
    if stack_key(stack) != other:  # full or adapters: train-step prices both on its stack
        # the peak the same job gets under train-step's default stack (its loss, fusions, allocator, buffers)
        theirs = memory_defaults(other)
        alt = finetune_memory(m, batch=batch, seq=seq, **{**kwargs, **stack_settings(theirs), "suggest": False})
        note = other_stack_note(other, "--mode train and train-step", result.per_gpu_bytes, alt.per_gpu_bytes)
    result = result.model_copy(update={"stack": stack_key(stack), "stack_note": note,
                                       "assumptions": [*result.assumptions, stack_memory_line(stack, replace(
                                           mem, loss=loss, fused=kwargs["fused"], fragmentation=kwargs["fragmentation"])),
                                           *([note] if note else [])]})
    if g is not None:
        result = result.model_copy(update={"fit_table": fit_table(m, g, **kwargs)})
    return result


FINETUNE_FLAGS = ("--method", "--lora-rank", "--lora-alpha", "--lora-targets", "--lora-dropout", "--adapter-inputs",
                  "--optimizer", "--precision",
                  "--quant", "--no-double-quant", "--prepare-kbit", "--repeat-kv",
                  "--grad-accum", "--compile", "--loss", "--loss-chunks", "--dropout",
                  "--offload", "--optimizer-in-backward", "--cuda-context-gib", "--fragmentation", "--stack")
