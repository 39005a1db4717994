"""One-page answers: `report`, `compare`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from calc.cli.finetune import CompileOpt, LoraRankOpt, LoraTargetsOpt, MethodOpt, OptimizerOpt, PrecisionOpt
from calc.cli.groups import takes
from calc.cli.options import (
    DEFAULT_BATCH,
    DEFAULT_DTYPE,
    DEFAULT_LAUNCH,
    DEFAULT_OUTPUT,
    DEFAULT_PROMPT,
    DEFAULT_SEQ,
    DEFAULT_SERVING_KNOBS,
    DEFAULT_TRAFFIC,
    FINETUNE_4BIT,
    AttentionWindowsOpt,
    CalibrationOpt,
    DocTokensOpt,
    DtypeOpt,
    Engine,
    EngineLaunch,
    EngineOpt,
    EngineVersionOpt,
    ExplainOpt,
    GlobalBatchOpt,
    GlobalBatchTokensOpt,
    GpuOpt,
    JsonOpt,
    KvDtypeOpt,
    MaxModelLenOpt,
    MfuOpt,
    Mode,
    ModelArg,
    NumGpusOpt,
    OldModelOpt,
    OldPriceOpt,
    OutputOpt,
    OutputOptional,
    PlotOpt,
    PpOpt,
    PriceOpt,
    PromptOpt,
    PromptOptional,
    RecipeOpt,
    RecomputeOpt,
    SeqOptional,
    ServingKnobs,
    StackOpt,
    TokensOpt,
    TpOpt,
    Traffic,
    ZeroOptional,
    given_weights,
    global_batch_sequences,
    human_int,
    note_fp32,
    option_given,
    refuse,
    refuse_switch,
    refuse_weight_format,
    training_recipe,
)
from calc.cli.serving import (
    attention_windows_of,
    check_step_budget,
    check_weight_values,
    engine_settings,
    refuse_engine_on_gpu,
    refuse_rate_options,
    refuse_unloadable,
    refuse_unused_knobs,
    serving_assumptions,
)


class ReportFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    html = "html"


@takes("launch", EngineLaunch)
@takes("knobs", ServingKnobs)
@takes("traffic", Traffic)
def report(
    ctx: typer.Context,
    model: ModelArg,
    gpu: GpuOpt,
    num_gpus: NumGpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    global_batch: GlobalBatchOpt = None,
    global_batch_tokens: GlobalBatchTokensOpt = None,
    doc_tokens: DocTokensOpt = None,
    mode: Annotated[Mode, typer.Option("--mode", help="infer, train or finetune")] = Mode.infer,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    kv_dtype: KvDtypeOpt = None,
    batch: Annotated[int, typer.Option(
        "--batch", "-b", parser=human_int("--batch"), show_default=False,
        help="requests per batch (--mode infer / finetune: default 1); the micro-batch of the plan with --mode train "
             "(default: the fastest the plan search finds)")] = DEFAULT_BATCH,
    prompt: PromptOptional = None,
    output: OutputOptional = None,
    seq: SeqOptional = None,
    traffic: Traffic = DEFAULT_TRAFFIC,
    knobs: ServingKnobs = DEFAULT_SERVING_KNOBS,
    engine: EngineOpt = Engine.vllm,
    engine_version: EngineVersionOpt = None,
    max_model_len: MaxModelLenOpt = None,
    launch: EngineLaunch = DEFAULT_LAUNCH,
    attention_windows: AttentionWindowsOpt = None,
    tokens: TokensOpt = None,
    mfu_assumed: MfuOpt = None,
    price: PriceOpt = None,
    old_price: OldPriceOpt = None,
    zero: ZeroOptional = None,
    stack: StackOpt = None,
    recipe: RecipeOpt = None,
    calibration: CalibrationOpt = None,
    fmt: Annotated[ReportFormat, typer.Option(
        "--format", help="table, markdown or html (one self-contained page)")] = ReportFormat.table,
    plot: PlotOpt = None,
    method: MethodOpt = None,
    lora_rank: LoraRankOpt = None,
    lora_targets: LoraTargetsOpt = None,
    optimizer: OptimizerOpt = None,
    precision: PrecisionOpt = None,
    recompute: RecomputeOpt = None,
    compile_: CompileOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """One page: params, FLOPs, memory bars, fit, concurrency, TTFT/TPOT or training days, assumptions; the
    serving plan is the one `serve` makes for the same --prompt/--output, --ttft-ms/--tpot-ms, --rate or --users and
    --num-gpus (--rate / --users without --num-gpus: the page's memory, concurrency and latency are one replica of
    serve's pick).
    --mode finetune: parameters, trainable parameters, fine-tuning memory per buffer, fit and the largest batch x sequence,
    on --num-gpus laid out as --tp x --pp x data-parallel (memory --mode finetune's placement)."""
    ttft_ms, tpot_ms, rate, users, max_utilization, router = traffic.unpack()
    from calc.cli.common import (
        load_calibration,
        output_path,
        price_for,
        training_fit,
        window_output,
    )
    from calc.errors import LLMCalcError
    from calc.report.build import build_report
    from calc.report.views import report_markdown, report_view
    from calc.sources.catalog import load_gpu, load_model

    if as_json and fmt is not ReportFormat.table:
        raise LLMCalcError("--format", f"--json and --format {fmt.value} are two outputs; give one")
    if explain and fmt is not ReportFormat.table:  # the documents carry their assumptions; the derivation is the table's
        raise LLMCalcError("--explain", f"prints under the table; --format {fmt.value} writes a document without it: "
                                        "drop one (--json carries the assumptions too)")
    serving = {**knobs.flags(),  # the options `serve` takes
               "--engine": engine.value if option_given(ctx, "engine") else None, "--engine-version": engine_version,
               "--attention-windows": attention_windows, "--max-utilization": max_utilization, "--router": router,
               "--max-model-len": max_model_len, **launch.flags()}
    finetune = {"--method": method, "--lora-rank": lora_rank, "--lora-targets": lora_targets, "--optimizer": optimizer,
                "--precision": precision, "--recompute": recompute, "--compile": compile_}
    if mode is Mode.finetune:
        from calc.cli.finetune import finetune_report

        for flag, value in (("--prompt", prompt), ("--output", output), ("--kv-dtype", kv_dtype), ("--tokens", tokens),
                            ("--ttft-ms", ttft_ms), ("--tpot-ms", tpot_ms), ("--rate", rate), ("--users", users),
                            ("--mfu", mfu_assumed), ("--price", price or old_price), ("--calibration", calibration),
                            ("--plot", plot), ("--global-batch", global_batch), ("--doc-tokens", doc_tokens),
                            ("--global-batch-tokens", global_batch_tokens), *serving.items()):
            refuse(flag, value, "does not apply to --mode finetune (a memory answer)")
        refuse("--recipe", recipe, "sets --mode train's training states; --mode finetune takes --optimizer and "
                                   "--precision")
        refuse_weight_format(dtype, FINETUNE_4BIT)
        finetune_report(model, gpu, num_gpus=num_gpus, tp=tp, pp=pp, dtype=dtype, batch=batch, seq=seq or DEFAULT_SEQ,
                        zero=zero or 0, options={**finetune, "--stack": stack and stack.value},  # as memory --mode finetune
                        fmt=fmt.value, as_json=as_json, explain=explain)
        return
    if mode is Mode.infer:
        for flag, value in (("--tp", tp), ("--pp", pp)):
            refuse(flag, value, "lays out --mode train's plan or --mode finetune's GPUs; --mode infer takes serve's layout "
                                "for --num-gpus: give latency --tp --pp for a layout of your own")
    if mode is not Mode.train:
        for flag, value in (("--global-batch", global_batch), ("--global-batch-tokens", global_batch_tokens),
                            ("--doc-tokens", doc_tokens)):
            refuse(flag, value, "sets the training plan's batch or sequences; add --mode train or drop it")
    elif mfu_assumed is not None:  # as train-time: an assumed MFU times no plan
        for flag, value in (("--global-batch", global_batch), ("--global-batch-tokens", global_batch_tokens),
                            ("--tp", tp), ("--pp", pp)):
            refuse(flag, value, "sizes the predicted plan; with --mfu it changes nothing, drop one")
    for flag, value in finetune.items():
        if flag == "--recompute" and mode is Mode.train:
            continue  # pins the plan's recomputation, as train-time --recompute does
        if flag == "--compile":  # a --compile/--no-compile switch: refused either way
            refuse_switch(flag, value, "sets the fine-tuning engine's fusions (report --mode finetune, memory --mode "
                                       "train / finetune); report --mode train prices train-plan's layout at its "
                                       "stack's fusions: give --stack, or use --mode finetune"
                                       if mode is Mode.train else "is a fine-tuning option; use --mode finetune")
        refuse(flag, value, "is a fine-tuning option; use --mode finetune")
    if mode is Mode.infer:
        for flag, value in (("--seq", seq), ("--tokens", tokens), ("--mfu", mfu_assumed), ("--zero", zero),
                            ("--stack", stack), ("--recipe", recipe)):
            refuse(flag, value, "is a training option; add --mode train or drop it")
        refuse("--price", price or old_price, "prices the training run's GPU-hours on this page (--mode train); the "
                                              "serving cost per million tokens of serve's pick is compare's: `llmcalc "
                                              "compare MODEL GPU --price GPU=USD`")
    else:
        refuse("--dispatcher", knobs.exchange, "report --mode train prices its searched plan with Megatron's all-to-all; "
                                           "give train-step --dispatcher for another")
        for flag, value in (("--prompt", prompt), ("--output", output), ("--kv-dtype", kv_dtype), ("--ttft-ms", ttft_ms),
                            ("--tpot-ms", tpot_ms), ("--rate", rate), ("--users", users), *serving.items()):
            if flag != "--gemm-plateau":  # the training plan's too (its cost below), as train-step takes it
                refuse(flag, value, "is a serving option; drop it with --mode train")
        from calc.cli.training import _training_dtype

        dtype = _training_dtype(dtype)  # the run's compute dtype, as train-time takes it (fp16 on a V100 / T4)
        refuse("--plot", plot, "the memory chart is drawn for --mode infer")
        if mfu_assumed is not None:
            refuse("--stack", stack, "sets the stack the plan is timed on; --mfu assumes the MFU instead: give one of them")
    plot_path = output_path(plot, "--plot", (".png", ".svg"))
    m, g = load_model(model), load_gpu(gpu)
    states = training_recipe(recipe, dtype if mode is Mode.train else "bf16")  # the training states (train-time's)
    refuse_engine_on_gpu(engine, g)
    # the serving plan's GPUs, as `serve` is given them: --num-gpus, else sized for --rate, else the page's one GPU
    serve_gpus = num_gpus or (None if rate or users else 1)
    refuse_unused_knobs(m, knobs, serve_gpus)
    refuse_rate_options(max_utilization, router, rate, num_gpus)
    s = engine_settings(engine, launch, max_model_len, engine_version)  # as latency / concurrency / serve
    if mode is Mode.infer:
        check_step_budget(s, m, g)
    n = num_gpus or 1
    prompt, output, seq = prompt or DEFAULT_PROMPT, DEFAULT_OUTPUT if output is None else output, seq or DEFAULT_SEQ
    windows = None  # --mode train: the engine's default (the flag is refused there)
    node = None  # --mode train: the node type a plan is placed on; None where none ships (the MFU is then assumed)
    if mode is Mode.train:  # one GPU without a node type: a node of one, as train-plan / train-time place it
        from calc.sources.catalog import system_for_gpu
        from calc.specs.system import one_gpu_node

        node = system_for_gpu(g) or (one_gpu_node(g.name) if n == 1 and mfu_assumed is None else None)
    if mode is Mode.infer:
        output = window_output(m, prompt, output, option_given(ctx, "output"), max_model_len)
        from calc.serving.latency import serving_plan

        plan = serving_plan(m, n, None, 1)  # TP = GPUs, refused naming --num-gpus when the heads do not split
        m, dtype = given_weights(ctx, m, dtype)  # without --dtype: the checkpoint as shipped
        refuse_unloadable(m, dtype, plan.tp, 1, engine, False, knobs.scales())  # as latency: a layout the engine would not load
        windows = attention_windows_of(m, attention_windows, s)  # applied by the engine (calc.serving.windows)
        check_weight_values(m, [g], dtype, knobs, engine, kv_dtype)
        note_fp32(dtype)
    elif mfu_assumed is not None or node is None:  # an assumed MFU (--mfu, or no node type to search a
        training_fit(m, g, n, seq, dtype, recipe=states)  # plan on) times this placement; a searched plan is refused by the search
    training_cost = None
    if mode is Mode.train:
        from calc.cli.training import check_doc_tokens

        check_doc_tokens(doc_tokens, seq)
    plateau = knobs.gemm_plateau if mode is Mode.train else None
    if mode is Mode.train and (stack is not None or recipe is not None or doc_tokens is not None or plateau is not None):
        from calc.cli.training import StepKnobs, _cost  # as train-time builds it (calc.cli.training._cost)

        for flag, value in (("--stack", stack), ("--gemm-plateau", plateau)):
            if node is None and value is not None:
                raise LLMCalcError(flag, f"times a plan on a node type, and none ships for {g.name}: drop it (the "
                                         "report then assumes an MFU)")
        if node is not None:  # without a node type the page is memory --mode train at --recipe
            training_cost = _cost(m, g, None, seq, dtype, calibration,
                                  StepKnobs(stack=stack, recipe=states, doc_tokens=doc_tokens, gemm_plateau=plateau),
                                  single_gpu=n == 1)
    assumptions = serving_assumptions(knobs, s, moe=m.moe is not None, max_utilization=max_utilization, router=router,
                                      attention_windows=windows)  # as serve
    # infer: why the engine's KV cache cannot admit the batch, and the flag that fixes it (calc.serving.capacity.FitProblem)
    problem, problem_flag = None, "--num-gpus"
    sized = mode is Mode.infer and (rate or users) is not None and num_gpus is None  # one replica of serve's pick
    if mode is Mode.infer:  # the release's kernels on this GPU, as latency and serve price them (calc.serving.engine_kernels)
        from calc.serving.engine_kernels import engine_kernels

        assumptions = engine_kernels(assumptions, m, g, s, prompt + output - 1, dtype)
        if not sized:  # fit first (sized for --rate: once serve has picked the replica, below)
            problem, problem_flag = _fit_problem(m, g, plan, s, dtype, kv_dtype, batch, prompt + output, assumptions)
            if problem and not as_json:  # JSON: the page, fits false, then the same refusal (as latency)
                raise LLMCalcError(problem_flag, problem)
    if mode is Mode.train and tokens is None:
        from calc.sanity import note

        note("--tokens", "--tokens not given: the training days, GPU-hours and cost are for 1T tokens (give --tokens, "
                         "e.g. 15T)")
    result = build_report(
        m, g, num_gpus=n, mode=mode.value, dtype=dtype, kv_dtype=kv_dtype, batch=batch, prompt=prompt, output=output,
        seq=seq, tokens=tokens or 1e12, mfu_assumed=mfu_assumed,
        price_per_gpu_hour=price_for(price, g.name, old_price) if mode is Mode.train else None,
        zero=zero, recipe=states, calibration=load_calibration(calibration),
        serve_gpus=serve_gpus, ttft_ms=ttft_ms, tpot_ms=tpot_ms, rate=rate, users=users,
        assumptions=assumptions, settings=s if mode is Mode.infer else None, training_cost=training_cost,
        micro_batch=batch if mode is Mode.train and option_given(ctx, "batch") else None,
        global_batch=global_batch_sequences(global_batch, global_batch_tokens, seq) if mode is Mode.train else None,
        pins=tuple((k, v) for k, v in (("tp", tp), ("pp", pp)) if v is not None), doc_tokens=doc_tokens,
        recompute=recompute.value if mode is Mode.train and recompute is not None else None,
    )
    if sized:  # serve's pick for the rate, or its refusal when no layout meets the targets (as serve exits)
        from calc.cli.serving import unmet_target_flag
        from calc.specs import Parallelism

        if result.serving is not None and result.serving.best is None:
            if as_json:
                from calc.report.render import emit_json

                emit_json(result)
            raise LLMCalcError(unmet_target_flag(None, rate, users, ttft_ms, tpot_ms), result.serving.verdict)
        replica = Parallelism(tp=result.latency.tp, pp=result.latency.pp)
        problem, problem_flag = _fit_problem(m, g, replica, s, dtype, kv_dtype, batch, prompt + output, assumptions)
    if problem:
        result = result.model_copy(update={"fits": False, "verdict": problem})
    if (rate or users) and result.serving is not None:  # the serving plan's count, checked as serve checks it
        from calc.sanity import check_gpus_needed, warn

        for line in check_gpus_needed(result.serving.gpus_needed, "--rate" if rate else "--users"):
            warn(*line.split(": ", 1))
    if not result.fits:  # nothing fits: JSON says fit "does not fit" (as latency, serve, train-plan), then exit 2
        if as_json:
            from calc.report.render import emit_json

            emit_json(result)
        raise LLMCalcError(problem_flag, result.verdict or "does not fit")
    if plot_path is not None and result.chart is not None:
        from calc.report.plot import plot_memory_chart

        plot_memory_chart(result.chart, f"{result.model} on {result.num_gpus} x {result.gpu}", str(plot_path))
    if as_json:
        from calc.report.render import emit_json

        emit_json(result)
    elif fmt is ReportFormat.markdown:
        import sys

        sys.stdout.write(report_markdown(result) + "\n")
    elif fmt is ReportFormat.html:
        import sys

        from calc.report.html import report_html

        sys.stdout.write(report_html(result) + "\n")
    else:
        from calc.report.render import console, how_sure

        console.print(report_view(result))
        block, band_lines = how_sure(result, explain)
        if block is not None:
            console.print(block)
        if explain:
            from calc.report.render import explain_panel

            console.print(explain_panel(report_explain(result) + band_lines))
    plan = result.serving
    if plan is not None and plan.fits and plan.best is None:  # the page, then serve's refusal: one exit code per outcome
        from calc.cli.serving import unmet_target_flag

        raise LLMCalcError(unmet_target_flag(num_gpus, rate, users, ttft_ms, tpot_ms), plan.verdict)


@takes("launch", EngineLaunch)
@takes("knobs", ServingKnobs)
@takes("traffic", Traffic)
def compare(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="MODEL then the GPUs to compare", metavar="MODEL GPU...")],
    old_model: OldModelOpt = None,
    num_gpus: NumGpusOpt = None,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    batch: Annotated[int | None, typer.Option("--batch", parser=human_int("--batch"), hidden=True)] = None,
    prompt: PromptOpt = DEFAULT_PROMPT,
    output: OutputOpt = DEFAULT_OUTPUT,
    traffic: Traffic = DEFAULT_TRAFFIC,
    engine: EngineOpt = Engine.vllm,
    engine_version: EngineVersionOpt = None,
    max_model_len: MaxModelLenOpt = None,
    attention_windows: AttentionWindowsOpt = None,
    launch: EngineLaunch = DEFAULT_LAUNCH,
    kv_dtype: KvDtypeOpt = None,
    knobs: ServingKnobs = DEFAULT_SERVING_KNOBS,
    price: PriceOpt = None,
    old_price: OldPriceOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """The layout `serve` picks on each GPU for the same request, --ttft-ms/--tpot-ms, --rate and --num-gpus, side by
    side (cost per million output tokens at that layout's batch with --price GPU=X)."""
    ttft_ms, tpot_ms, rate, users, max_utilization, router = traffic.unpack()
    from calc.cli.common import model_arg, price_table, window_output
    from calc.errors import LLMCalcError
    from calc.report.build import compare_gpus
    from calc.sources.catalog import load_gpu

    refuse("--batch", batch, "compare runs the batch `serve` picks for the targets; give --ttft-ms/--tpot-ms/--rate")
    if output < 1:
        raise LLMCalcError("--output", "compare needs >= 1 generated token per request (it prices output tokens)")
    first: str | None = None if old_model is not None else (names[0] if names else None)
    gpu_names = names if old_model is not None else names[1:]
    m = model_arg(first, old_model)
    if not gpu_names:
        raise LLMCalcError("GPU", "name at least one GPU after the model, e.g. `compare llama2-13b h100 a100`")
    gpus = [load_gpu(name, "GPU") for name in gpu_names]
    twice = sorted({g.name for g in gpus if sum(h.name == g.name for h in gpus) > 1})
    if twice:
        raise LLMCalcError("GPU", f"names {', '.join(twice)} twice (aliases of one GPU); name each GPU once")
    for g in gpus:
        refuse_engine_on_gpu(engine, g)
    refuse_unused_knobs(m, knobs, num_gpus)
    refuse_rate_options(max_utilization, router, rate, num_gpus)
    s = engine_settings(engine, launch, max_model_len, engine_version)  # as serve builds them
    for g in gpus:
        check_step_budget(s, m, g)
    assumptions = serving_assumptions(knobs, s, moe=m.moe is not None, max_utilization=max_utilization, router=router,
                                      attention_windows=attention_windows_of(m, attention_windows, s))
    output = window_output(m, prompt, output, option_given(ctx, "output"), max_model_len)
    if old_price is not None and price:
        raise LLMCalcError("--price-per-gpu-hour", "is the old spelling of --price; give only one of them")
    table = {"*": old_price} if old_price is not None else price_table(price, gpus)
    prices = {g.name: table.get(g.name, table.get("*")) for g in gpus}
    unused = [name for name in table if name != "*" and name not in prices]
    if unused:
        raise LLMCalcError("--price", f"names {', '.join(unused)}, which is not among the GPUs compared ({', '.join(prices)})")
    m, dtype = given_weights(ctx, m, dtype)
    check_weight_values(m, gpus, dtype, knobs, engine, kv_dtype, "GPU")
    note_fp32(dtype)
    rows = compare_gpus(m, gpus, num_gpus=num_gpus, dtype=dtype, kv_dtype=kv_dtype, prompt=prompt, output=output,
                        ttft_ms=ttft_ms, tpot_ms=tpot_ms, rate=rate, users=users,
                        prices={k: v for k, v in prices.items() if v is not None},
                        settings=s, assumptions=assumptions)
    from calc.report.render import emit
    from calc.report.views import compare_view
    from calc.sanity import check_gpus_needed, warn

    for line in {line for r in rows for line in check_gpus_needed(r.gpus, "--rate" if rate else "--users")} \
            if rate or users else ():
        warn(*line.split(": ", 1))
    emit(rows, as_json, False, lambda r: compare_view(r, m.name, num_gpus))
    if explain and not as_json:
        from calc.report.render import console, explain_panel

        console.print(explain_panel([*(f"assumption: {a}" for a in shared_lines({r.gpu: r.assumptions for r in rows
                                                                                 if r.assumptions})),
                                     *(f"{r.gpu}: {line}" for r in rows for line in r.explain)]))
    if rows and not any(r.meets_targets for r in rows):  # no GPU answers: as serve refuses each of them (exit 2)
        from calc.cli.serving import unmet_target_flag
        from calc.serving.weights import load_problem

        nothing_fits = not any(r.fits for r in rows)
        no_peak = all(r.peak_tflops is None for r in rows)  # every GPU lacks the dtype's tensor peak
        quoted = next((r for r in rows if r.peak_tflops is not None), rows[0])  # a GPU that ran, if any
        # the engine would not run it on any GPU given (vLLM's fp32 Gemma 2 / 3, no 4-bit kernel): the GPU is the fix
        unrunnable = no_peak and all(load_problem(m, g, dtype, engine.value) for g in gpus)
        flag = ("GPU" if unrunnable else "--dtype" if no_peak else "--num-gpus" if nothing_fits
                else unmet_target_flag(num_gpus, rate, users, ttft_ms, tpot_ms))
        raise LLMCalcError(flag,
                           "no GPU compared " + ("runs it" if no_peak else "holds one request" if nothing_fits
                                                 else "meets the targets at the rate")
                           + f": {quoted.gpu}: {quoted.verdict}")


def shared_lines(per_gpu: dict[str, list[str]]) -> list[str]:
    """Each GPU's assumption lines, a line every GPU shares once and the rest prefixed with the GPUs that have it.

    >>> shared_lines({"h100": ["a", "b"], "a100": ["a", "c"]})
    ['a', 'h100: b', 'a100: c']
    """
    lines: dict[str, list[str]] = {}
    for gpu, assumptions in per_gpu.items():
        for line in assumptions:
            lines.setdefault(line, []).append(gpu)
    return [line if len(gpus) == len(per_gpu) else f"{', '.join(gpus)}: {line}" for line, gpus in lines.items()]


def report_explain(result: Any) -> list[str]:
    """--explain of a report page: its assumptions once each, then every section's own derivation (memory,
    concurrency, latency, serving, training time), each line once."""
    lines = [f"assumption: {a}" for a in result.assumptions]
    for section in (result.memory, result.concurrency, result.latency, result.serving, result.train_time):
        lines += getattr(section, "explain", None) or []
    return list(dict.fromkeys(lines))


def _fit_problem(m: Any, g: Any, plan: Any, s: Any, dtype: str | None, kv_dtype: str | None, batch: int, tokens: int,
                 assumptions: Any) -> tuple[str | None, str]:
    """Why the engine's KV cache cannot admit the page's --batch on ``plan``, and the flag that fixes it (None, and
    --num-gpus, when it can): the one capacity function latency / concurrency / serve admit requests with
    (calc.serving.capacity.batch_fit_problem)."""
    from calc.serving.capacity import batch_fit_problem

    found = batch_fit_problem(m, g, plan, s, dtype, kv_dtype, batch, tokens, assumptions)
    return (found.message, found.flag) if found else (None, "--num-gpus")
