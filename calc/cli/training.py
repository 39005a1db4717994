"""Training commands: `mfu`, `train-time`, `train-step`, `train-plan`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Annotated, Any

import typer

from calc.cli.finetune import CompileOpt, FragOpt, LoraRankOpt, LoraTargetsOpt, LossOpt
from calc.cli.groups import takes
from calc.cli.options import (
    DEFAULT_DTYPE,
    DEFAULT_SEQ,
    Attention,
    AttentionOpt,
    AttentionPairs,
    AttentionPairsOpt,
    BudgetOpt,
    CalibrationOpt,
    CpOpt,
    CpuOffloadOpt,
    DaysOpt,
    DispatcherOpt,
    DocTokensOpt,
    DpOpt,
    EpOpt,
    EtpOpt,
    ExplainOpt,
    GlobalBatchOpt,
    GlobalBatchTokensOpt,
    GpuOpt,
    GpuOptional,
    JsonOpt,
    MfuOpt,
    MicroBatchOpt,
    ModelArg,
    ModelArgOptional,
    NumGpusOpt,
    OffloadModulesOpt,
    OldCausalCountOpt,
    OldModelOpt,
    OldPriceOpt,
    PlateauOpt,
    PlotOpt,
    PpEmbeddingOpt,
    PpLossOpt,
    PpMicrobatchGroupOpt,
    PpOpt,
    PriceOpt,
    RecipeOpt,
    Recompute,
    RecomputeModulesOpt,
    RecomputeOpt,
    ReserveOpt,
    SeqOpt,
    SpOpt,
    Stack,
    StackOpt,
    SystemOpt,
    TokensOpt,
    TpOpt,
    VppOpt,
    ZeroOpt,
    counted_causal,
    global_batch_sequences,
    human_float,
    human_int,
    training_recipe,
)

TRAINING_DTYPES = ("bf16", "fp16", "fp8", "tf32", "fp32")


def _training_dtype(text: str) -> str:
    """Training computes in a float format: int4/int8 are inference weight formats, refused here."""
    from calc.errors import LLMCalcError

    if text.lower() not in TRAINING_DTYPES:
        raise LLMCalcError("--dtype", f"training computes in {', '.join(TRAINING_DTYPES)}; got {text!r}")
    from calc.cli.options import note_fp32

    note_fp32(text.lower())  # every training command with --dtype times its matmuls
    return text.lower()


TrainMethodOpt = Annotated[str | None, typer.Option(
    "--method", help="full (default: every weight trains), lora (a frozen base with rank --lora-rank adapters on "
                     "--lora-targets) or qlora (the base in NF4, dequantized for every GEMM); the memory under "
                     "--stack hf is memory --mode finetune's figure (its default stack), under megatron NeMo / "
                     "Megatron-Bridge PEFT's")]
PeakDtypeOpt = Annotated[str, typer.Option("--dtype", parser=_training_dtype,
                                           help="compute dtype of the peak: bf16, fp16, fp8, tf32, fp32 "
                                                "(fp32 storage: matmuls at the TF32 tensor peak)")]


def mfu(
    model: ModelArgOptional = None,
    gpu: GpuOptional = None,
    num_gpus: NumGpusOpt = None,
    seq: SeqOpt = DEFAULT_SEQ,
    tokens: TokensOpt = None,
    gpu_hours: Annotated[float | None, typer.Option(
        "--gpu-hours", parser=human_float("--gpu-hours"), help="GPU-hours the run took, e.g. 6.4M")] = None,
    tokens_per_s: Annotated[float | None, typer.Option(
        "--tokens-per-s", parser=human_float("--tokens-per-s"), help="observed tokens/s of all GPUs together")] = None,
    step_time: Annotated[float | None, typer.Option(
        "--step-time", parser=human_float("--step-time"), help="seconds per optimizer step (with --global-batch)")] = None,
    global_batch: GlobalBatchOpt = None,
    global_batch_tokens: GlobalBatchTokensOpt = None,
    tflops_per_gpu: Annotated[float | None, typer.Option(
        "--tflops-per-gpu", parser=human_float("--tflops-per-gpu"),
        help="a paper's achieved TFLOP/s per GPU of model FLOPs with attention, no recomputation (Llama 3 Table 4: "
             "400); Megatron-LM's published figures count recomputation (divide by 4/3 under full recompute)")] = None,
    dtype: PeakDtypeOpt = DEFAULT_DTYPE,
    attention_pairs: AttentionPairsOpt = AttentionPairs.full,
    old_causal: OldCausalCountOpt = None,
    doc_tokens: DocTokensOpt = None,
    method: TrainMethodOpt = None,
    lora_rank: LoraRankOpt = None,
    lora_targets: LoraTargetsOpt = None,
    calibration: CalibrationOpt = None,
    old_model: OldModelOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Model FLOPs utilisation from a finished run (--tokens --gpu-hours), observed --tokens-per-s,
    --step-time with --global-batch, or a published --tflops-per-gpu: exactly one of the four. --doc-tokens and
    --method lora count the model FLOPs as train-step does (packed documents, a frozen base)."""
    from calc.cli.common import load_calibration, model_arg
    from calc.errors import LLMCalcError
    from calc.report.render import emit, mfu_view
    from calc.sources.catalog import load_gpu
    from calc.training import mfu as engine

    causal = counted_causal(attention_pairs, old_causal)
    global_batch = global_batch_sequences(global_batch, global_batch_tokens, seq)  # either form, in sequences
    batch_flag = "--global-batch-tokens" if global_batch_tokens is not None else "--global-batch"  # the one typed
    values = {"--tokens": tokens, "--gpu-hours": gpu_hours, "--tokens-per-s": tokens_per_s, "--step-time": step_time,
              batch_flag: global_batch, "--tflops-per-gpu": tflops_per_gpu}
    chosen = [given for given in ([f for f in flags if values[f] is not None]  # the flags of each source given
                                  for flags in (("--tokens", "--gpu-hours"), ("--tokens-per-s",), ("--step-time", batch_flag),
                                                ("--tflops-per-gpu",)))
              if given]
    if gpu is None:
        raise LLMCalcError("--gpu", "missing; name the GPU the run used (see `llmcalc gpus`)")
    if len(chosen) != 1:  # named by the second source given (the one to drop), else --tokens
        raise LLMCalcError(chosen[1][0] if len(chosen) > 1 else "--tokens",
                           "give exactly one of: --tokens with --gpu-hours, --tokens-per-s, --step-time with "
                           "--global-batch, or --tflops-per-gpu"
                           + (f" (got {' and '.join('/'.join(c) for c in chosen)})" if chosen else ""))
    for a, b in (("--tokens", "--gpu-hours"), ("--step-time", batch_flag)):
        if (values[a] is None) != (values[b] is None):
            missing = a if values[a] is None else b
            raise LLMCalcError(missing, f"{a} and {b} go together; give both")
    if tokens is not None and num_gpus is not None:
        raise LLMCalcError("--num-gpus", "a finished run's MFU needs only --tokens and --gpu-hours; drop --num-gpus")
    if tflops_per_gpu is not None and num_gpus is not None:
        raise LLMCalcError("--num-gpus", "a per-GPU --tflops-per-gpu needs no GPU count; drop --num-gpus")
    check_doc_tokens(doc_tokens, seq)
    lora = _lora(method, lora_rank, lora_targets, ep=None, sharding="zero", recompute=Recompute.none, offloads=(0, None),
                 dtype=dtype)
    result = engine.mfu(
        model_arg(model, old_model), load_gpu(gpu), num_gpus=num_gpus or 1, seq=seq, dtype=dtype, tokens=tokens,
        gpu_hours=gpu_hours, tokens_per_s=tokens_per_s, step_time_s=step_time, global_batch=global_batch,
        causal=causal, calibration=load_calibration(calibration), tflops_per_gpu=tflops_per_gpu, doc_tokens=doc_tokens,
        lora=lora,
    )
    emit(result, as_json, explain, mfu_view)


def train_time(
    model: ModelArg,
    gpu: GpuOpt,
    num_gpus: NumGpusOpt = None,
    tokens: TokensOpt = None,
    seq: SeqOpt = DEFAULT_SEQ,
    days: DaysOpt = None,
    budget: BudgetOpt = None,
    mfu_assumed: MfuOpt = None,
    global_batch: GlobalBatchOpt = None,
    global_batch_tokens: GlobalBatchTokensOpt = None,
    system: SystemOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    cp: CpOpt = None,
    ep: EpOpt = None,
    zero: ZeroPin = None,
    micro_batch: MicroBatchPin = None,
    recompute: RecomputePin = None,
    price: PriceOpt = None,
    old_price: OldPriceOpt = None,
    dtype: PeakDtypeOpt = DEFAULT_DTYPE,
    attention_pairs: AttentionPairsOpt = AttentionPairs.full,
    old_causal: OldCausalCountOpt = None,
    calibration: CalibrationOpt = None,
    host_op_us: HostOpOpt = None,
    moe_routing: MoeRoutingOpt = None,
    stack: StackOpt = None,
    recipe: RecipeOpt = None,
    gemm_plateau: PlateauOpt = None,
    method: TrainMethodOpt = None,
    lora_rank: LoraRankOpt = None,
    lora_targets: LoraTargetsOpt = None,
    doc_tokens: DocTokensOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Days, GPU-hours and cost to train on D tokens at the MFU predicted for the fastest layout that fits
    (train-plan, --global-batch default 4,194,304 (2^22) tokens / --seq rounded up to a multiple of the GPUs;
    --tp/--pp/... pin a given plan), or at an assumed --mfu. --days D instead of --num-gpus: a whole-node GPU count
    whose plan finishes in D days (bisection);
    --budget USD (with --price): the fastest count within it, or with --days the cheapest on time within it."""
    global_batch = global_batch_sequences(global_batch, global_batch_tokens, seq)
    causal = counted_causal(attention_pairs, old_causal)
    check_doc_tokens(doc_tokens, seq)
    recipe_given, recipe = recipe, training_recipe(recipe, dtype)
    from calc.cli.common import load_calibration, price_for, training_fit
    from calc.errors import LLMCalcError
    from calc.report.render import emit, train_time_view
    from calc.sanity import warn
    from calc.units import check_fraction

    if tokens is None:
        raise LLMCalcError("--tokens", "missing; give the training tokens, e.g. 2T")
    if tokens < seq:
        raise LLMCalcError("--tokens", f"{tokens:,.6g} is less than one sequence of --seq {seq:,} tokens: a run trains "
                                       "whole sequences; give the training tokens, e.g. 2T")
    if days is not None and num_gpus is not None:
        raise LLMCalcError("--days", "asks for the GPU count that finishes in time; give --days or --num-gpus, not both")
    if budget is not None and num_gpus is not None:
        raise LLMCalcError("--budget", "asks for the GPU count the budget buys; give --budget or --num-gpus, not both")
    if num_gpus is None and days is None and budget is None:
        raise LLMCalcError("--num-gpus", "missing; how many GPUs train the model? (or --days D for the count that finishes "
                           "in D days, --budget USD with --price for the fastest within it)")
    lora = _lora(method, lora_rank, lora_targets, ep=ep, sharding="zero", recompute=recompute or Recompute.none,
                 offloads=(0, None), dtype=dtype)
    m, g = _specs(model, gpu, seq)
    from calc.hardware.peaks import peak_tflops

    peak_tflops(g, _training_dtype(dtype))  # a dtype without a peak on this GPU is refused before any fit or count
    unit_price = price_for(price, g.name, old_price)
    if budget is not None and unit_price is None:
        raise LLMCalcError("--budget", "needs --price (USD per GPU-hour) to turn GPU-hours into dollars, e.g. --price 2.5")
    if budget is not None and unit_price == 0:
        raise LLMCalcError("--price", "is 0: every GPU count is free, so --budget cannot pick one; give the price per GPU-hour")
    searched = None  # the plan the --days / --budget search found at its count (the same search, not redone)
    if days is not None or budget is not None:
        from calc.cli.options import refuse

        target = "--days" if days is not None else "--budget"
        for flag, value in (("--tp", tp), ("--pp", pp), ("--cp", cp), ("--ep", ep), ("--zero", zero),
                            ("--micro-batch", micro_batch), ("--recompute", recompute)):
            refuse(flag, value, f"pins a layout, and {target} searches the GPU count with the layout train-plan picks "
                                f"at each count (a pinned one may not run there): drop {flag}, or give --num-gpus")
        num_gpus, searched = _gpus_for_target(m, g, days, budget, unit_price, tokens, seq, mfu_assumed, global_batch,
                                              system, dtype, calibration, causal, host_op_us, moe_routing, stack, lora,
                                              recipe, doc_tokens, gemm_plateau)
    from calc.cli.options import refuse
    from calc.sources.catalog import load_system, system_for_gpu
    from calc.training import mfu as engine

    node = load_system(system) if system else system_for_gpu(g)  # the node type the plan is placed on, if any
    one_gpu = node is None and num_gpus == 1 and mfu_assumed is None  # a node of one, as train-plan places it
    no_node = node is None and not one_gpu
    _warn_scale(num_gpus, global_batch, seq, node,
                global_batch_tokens is not None)
    plan = None
    batch_flag = "--global-batch-tokens" if global_batch_tokens is not None else "--global-batch"  # the one given
    plan_options = ((batch_flag, global_batch), ("--system", system), ("--tp", tp), ("--pp", pp), ("--cp", cp),
                    ("--ep", ep), ("--zero", zero), ("--micro-batch", micro_batch), ("--recompute", recompute),
                    ("--host-op-us", host_op_us), ("--moe-routing", moe_routing), ("--stack", stack),
                    ("--recipe", recipe_given), ("--gemm-plateau", gemm_plateau))
    if mfu_assumed is not None:
        refuse("--calibration", calibration, "sets the efficiencies the predicted MFU comes from; --mfu overrides them: "
               "give one of --mfu or --calibration")
        for flag, value in plan_options:
            refuse(flag, value, "sizes the predicted plan; with --mfu it changes nothing, drop one")
    elif no_node:
        for flag, value in plan_options:
            refuse(flag, value, f"places a plan on a node type, and none ships for {g.name}: give --system too, or "
                                f"drop {flag} (the run then takes an assumed MFU, or --mfu)")
        warn("--gpu", f"no node type ships for {g.name} (system_specs/); using an assumed MFU of 0.4 "
             "(give --system to predict one from a plan)")
    if mfu_assumed is not None or no_node:  # after the layout flags are refused: the fit check places no plan of them
        training_fit(m, g, num_gpus, seq, _training_dtype(dtype), recipe)  # (a searched plan: the search refuses)
    else:
        from calc.training.plan import SearchSpace, best_plan

        pins = _pins(tp=tp, pp=pp, cp=cp, ep=ep, zero=zero, micro_batch=micro_batch, recompute=recompute)
        plan = searched
        if plan is None or pins:
            cost = _cost(m, g, system, seq, dtype, calibration,
                         StepKnobs(host_op_us=host_op_us, moe_routing=moe_routing, stack=stack, recipe=recipe,
                                   doc_tokens=doc_tokens, gemm_plateau=gemm_plateau), lora,
                         single_gpu=one_gpu)
            try:
                plan = best_plan(cost, num_gpus, global_batch, SearchSpace(fixed=pins))
            except LLMCalcError as refusal:  # nothing fits: JSON says so (as train-plan / train-step), then exit 2
                if as_json:
                    from calc.report.render import emit_json

                    emit_json({"model": m.name, "gpu": g.name, "num_gpus": num_gpus, "tokens": tokens, "seq": seq,
                               "fits": False, "fit": "does not fit", "verdict": refusal.problem})
                raise
            if not pins:
                _warn_idle_faster(cost, plan, num_gpus, global_batch, node)
    if plan is not None and tokens < plan.global_batch * seq:
        raise LLMCalcError("--tokens", f"{tokens:,.0f} tokens are less than one optimizer step of the plan "
                                       f"({plan.global_batch:,} sequences x {seq:,} = {plan.global_batch * seq:,} tokens); "
                                       f"give --tokens >= {plan.global_batch * seq:,}, or a smaller --global-batch")
    result = engine.train_time(
        m, g, num_gpus=num_gpus, tokens=tokens, seq=seq, mfu_assumed=check_fraction(mfu_assumed or 0.4, "--mfu"),
        dtype=dtype, price_per_gpu_hour=unit_price, causal=causal,
        calibration=load_calibration(calibration), plan=plan, lora=lora, doc_tokens=doc_tokens,
        rates_given=gemm_plateau is not None,
        mfu_source="assumed (--mfu)" if mfu_assumed is not None else f"assumed (0.4: no node type ships for {g.name})",
    )
    if days is not None or budget is not None:  # the search's grid, said where the count is printed
        nodes = f"nodes of {node.gpus_per_node} GPUs" if node else "GPUs"
        grid = (f"GPU count searched for {'--days' if days is not None else '--budget'} over whole {nodes}, node counts "
                "with no prime factor above 7 (calc.training.sizing.smooth_counts: 24, 25, 27, 28, 30, ...; a count like "
                "41 nodes leaves a layout few splits and is skipped; pin --num-gpus to time one)")
        result = result.model_copy(update={"assumptions": [*result.assumptions, grid],
                                           "explain": [*result.explain, f"assumption: {grid}"]})
    if plan is not None and global_batch is None:
        from calc.training.plan import default_batch_drop_warning

        if line := default_batch_drop_warning(seq, num_gpus):
            warn(*line.split(": ", 1))
    if plan is not None and (days is not None or budget is not None):
        from calc.training.plan import short_run_warning

        line = short_run_warning(tokens, plan.global_batch, seq, num_gpus, "--days" if days is not None else "--budget")
        if line:
            warn(*line.split(": ", 1))
    emit(result, as_json, explain, train_time_view)


def _warn_idle_faster(cost: Any, plan: Any, num_gpus: int, global_batch: int | None, node: Any) -> None:
    """One warning when --num-gpus is a node count with a prime factor above 7 and the largest count below it without
    one (calc.training.sizing.smooth_counts) trains faster, its other GPUs idle: such a count leaves a layout few
    splits (DeepSeek-V3 on 487 H100 nodes: TP2 x DP1948, ZeRO-3, MFU 0.07; 486 nodes: TP2 x PP9, MFU 0.23)."""
    from calc.errors import LLMCalcError
    from calc.sanity import warn
    from calc.training.plan import best_plan
    from calc.training.sizing import smooth_counts

    per_node = node.gpus_per_node if node is not None else 8
    nodes = num_gpus // per_node
    fewer = smooth_counts(nodes)[-1] * per_node if nodes else num_gpus
    if num_gpus % per_node or nodes < 11 or fewer == num_gpus:
        return
    try:
        other = best_plan(cost, fewer, global_batch)
    except LLMCalcError:
        return
    if other.step_time_s / other.global_batch < 0.97 * plan.step_time_s / plan.global_batch:  # seconds per sequence
        warn("--num-gpus", f"{num_gpus:,} GPUs ({nodes:,} nodes, a prime factor above 7) split this model only as "
                           f"{plan.layout} (MFU {plan.mfu:.3f}); {fewer:,} of them run {other.layout} at MFU "
                           f"{other.mfu:.3f}, {plan.step_time_s / plan.global_batch / (other.step_time_s / other.global_batch):.2f}"
                           f"x faster with {num_gpus - fewer:,} idle: give --num-gpus {fewer}")


def _gpus_for_target(m: Any, g: Any, days: float | None, budget: float | None, price: float | None, tokens: float,
                     seq: int, mfu_assumed: float | None, global_batch: int | None, system: str | None, dtype: str,
                     calibration: str | None, causal: bool, host_op_us: float | None = None,
                     moe_routing: MoeRouting | None = None, stack: Stack | None = None, lora: Any = None,
                     recipe: str | None = None, doc_tokens: int | None = None,
                     gemm_plateau: float | None = None) -> tuple[int, Any]:
    """The whole-node GPU count train-time answers for --days and/or --budget (calc.training.sizing):
      --days D            the smallest count whose train-time (best plan's MFU, or --mfu) is at most D
      --budget USD        the largest count (fastest run) whose cost, GPU-hours x --price, is at most USD
      both                the smallest count on time when it costs at most USD, else the cheapest of its multiples
                          2x .. 64x on time within USD; refused when none of them is
    Refused naming the flag and the figure that would do when no count qualifies. Returns (count, the best plan found
    there, None with an assumed MFU)."""
    from calc.cli.common import load_calibration, training_fit
    from calc.errors import LLMCalcError
    from calc.sources.catalog import load_system, system_for_gpu
    from calc.training import mfu as engine
    from calc.training.plan import best_plan
    from calc.training.sizing import (
        MAX_GPUS,
        finishes_within,
        largest_gpus_within_budget,
        smallest_gpus_within,
        smallest_over_batch_pieces,
    )
    from calc.units import abbrev, check_positive, count

    for flag, value in (("--days", days), ("--budget", budget)):
        if value is not None:
            check_positive(value, flag)
    if budget is not None and days is None and mfu_assumed is not None:
        raise LLMCalcError("--budget", "with an assumed --mfu the cost is the same on any GPU count (GPU-hours = FLOPs / "
                           "(peak x MFU)), so no count is the fastest within it: give --days too, or drop --mfu")
    node = load_system(system) if system else system_for_gpu(g)
    if budget is not None and days is None and node is None:
        raise LLMCalcError("--budget", f"no node type ships for {g.name}, so its MFU is assumed (0.4) and the cost is the "
                                       "same on any count: give --days too, or --system NODE.yaml for a plan search")
    cost = None if mfu_assumed is not None or node is None else _cost(
        m, g, system, seq, dtype, calibration, StepKnobs(host_op_us=host_op_us, moe_routing=moe_routing, stack=stack,
                                                         recipe=recipe, doc_tokens=doc_tokens, gemm_plateau=gemm_plateau), lora)
    calib = load_calibration(calibration)
    per_node = node.gpus_per_node if node is not None else 8
    runs: dict[int, Any] = {}
    plans: dict[int, Any] = {}

    def run_at(n: int) -> Any:
        if n not in runs:
            plan = None
            try:
                if cost is not None:
                    plan = plans[n] = best_plan(cost, n, global_batch, suggest=False)  # the message is not shown
                else:  # an assumed MFU times no plan, but the count must hold the run, as --num-gpus checks it
                    training_fit(m, g, n, seq, _training_dtype(dtype), recipe or "bf16-adam")
            except LLMCalcError:
                runs[n] = None  # nothing fits on n GPUs (or the batch does not split): more GPUs
                return None
            runs[n] = engine.train_time(m, g, num_gpus=n, tokens=tokens, seq=seq, mfu_assumed=mfu_assumed or 0.4,
                                        dtype=dtype, causal=causal, calibration=calib, plan=plan, price_per_gpu_hour=price,
                                        lora=lora, doc_tokens=doc_tokens)
        return runs[n]

    def days_at(n: int) -> float | None:
        r = run_at(n)
        return None if r is None else r.days

    def cost_at(n: int) -> float | None:
        r = run_at(n)
        return None if r is None else r.cost

    what = f"{m.name} on {abbrev(tokens)} tokens"
    # fewer GPUs than the run needs at 100% MFU can never finish in time: the search starts above them
    floor = 0 if days is None else int(engine.train_time(m, g, num_gpus=1, tokens=tokens, seq=seq, mfu_assumed=1.0,
                                                         dtype=dtype, causal=causal, lora=lora,
                                                         doc_tokens=doc_tokens).days / days)
    # with a plan search, only node counts a layout factors well (calc.training.sizing.smooth_counts)
    smallest = smallest_gpus_within(days_at, float("inf") if days is None else days, per_node, at_least=floor,
                                    smooth=cost is not None)
    if smallest is None:
        if days is None:
            raise LLMCalcError("--budget", f"no GPU count up to {MAX_GPUS:,} fits {what}; shorten --seq or use GPUs with more memory")
        raise LLMCalcError("--days", f"no GPU count up to {MAX_GPUS:,} trains {what} in {count(days)} days; "
                           "allow more days or fewer tokens")
    if days is not None and cost is not None and global_batch is None:
        # the default global batch follows the GPU count, so days do not fall with it across a batch piece's edge:
        # the lower pieces' counts are checked too (calc.training.sizing.smallest_over_batch_pieces)
        from calc.training.plan import default_batch_piece

        smallest = smallest_over_batch_pieces(finishes_within(days_at, days), smallest, per_node,
                                              lambda n: default_batch_piece(seq, n))
    if budget is None:
        return smallest, plans.get(smallest)
    need = cost_at(smallest)
    assert need is not None  # smallest fits
    if need > budget:
        # the fewest GPUs that fit may be the dearest run (full recomputation, a low MFU): the cheapest of the counts
        # 2x .. 64x above it (each on time when they take fewer days) is what the budget is held against
        above = [n for n in (smallest * 2**k for k in range(1, 7)) if n <= MAX_GPUS]
        low_cost, low_n = min([(need, smallest)] + [(c, n) for n in above if (c := cost_at(n)) is not None
                                                     and (days is None or run_at(n).days <= days)])
        if low_cost > budget:
            on_time = f" in {count(days)} days" if days is not None else ""
            tried = ", ".join(f"{n:,}" for n in [smallest, *above])
            raise LLMCalcError("--budget", f"${budget:,.0f} is short: training {what}{on_time} costs ${low_cost:,.0f} at "
                               f"the cheapest of the counts tried ({tried} GPUs: {low_n:,}, {run_at(low_n).days:.1f} "
                               f"days); raise --budget to ${low_cost:,.0f}, try --num-gpus near {low_n:,}"
                               + (" or allow more days" if days is not None else " or train on fewer tokens"))
        smallest = low_n  # within the budget: the search goes on from the cheapest count
    if days is not None:
        return smallest, plans.get(smallest)
    best = largest_gpus_within_budget(cost_at, budget, smallest, per_node, smooth=cost is not None)
    assert best is not None  # smallest is within the budget
    return best, plans.get(best)


# --- training performance model: train-step, train-plan -----------------------------------------

class Fp8Recipe(StrEnum):  # calc.training.fp8_recipe.FP8_RECIPES
    delayed = "delayed"
    tensorwise = "tensorwise"
    rowwise = "rowwise"
    mxfp8 = "mxfp8"
    blockwise = "blockwise"


class Activations(StrEnum):
    per_tensor = "per-tensor"
    textbook = "textbook"


ActivationsModelOpt = Annotated[Activations, typer.Option(
    "--activations", help="activation memory: per-tensor (the tensors kept, per architecture) or textbook (Korthikanti 2022)")]
Fp8RecipeOpt = Annotated[Fp8Recipe | None, typer.Option(
    "--fp8-recipe", help="fp8 scaling recipe (fp8 runs): delayed, tensorwise, rowwise, mxfp8, blockwise (default: the stack's)")]
CollectiveEffOpt = Annotated[float | None, typer.Option(
    "--collective-eff", parser=human_float("--collective-eff", maximum=1.0), help="achieved busBW / link bandwidth (default 0.8)")]
OverlapEffOpt = Annotated[float | None, typer.Option(
    "--overlap-eff", parser=human_float("--overlap-eff", allow_zero=True, maximum=1.0),
    help="share of overlappable communication hidden under compute (default 0.85)")]
TpOverlapOpt = Annotated[float | None, typer.Option(
    "--tp-overlap", parser=human_float("--tp-overlap", allow_zero=True, maximum=1.0),
    help="share of TP collectives hidden under the GEMMs (default: the stack's: megatron hides the overlap efficiency's "
         "share with TP > 1 and --sp, as NeMo / Megatron-Bridge recipes run Transformer Engine userbuffers, none under "
         "LoRA; 0 for the other stacks; 0 = a bare Megatron-LM run, whose --tp-comm-overlap is off)")]
EpOverlapOpt = Annotated[float | None, typer.Option(
    "--ep-overlap", parser=human_float("--ep-overlap", allow_zero=True, maximum=1.0), help="share of expert all-to-all hidden (default 0)")]
class MoeRouting(StrEnum):  # calc.hardware.moe_ops.MOE_ROUTINGS
    aux_loss = "aux-loss"
    force_balanced = "force-balanced"
    token_drop = "token-drop"


MoeRoutingOpt = Annotated[MoeRouting | None, typer.Option(
    "--moe-routing", help="how the router assigns tokens to experts, which sets the load spread the most-loaded EP rank waits for: "
    "aux-loss (learned routing, assumed per-batch expert-load CV 0.3; default), force-balanced (Megatron "
    "--moe-router-force-load-balancing: random top-k logits, a binomial load) or token-drop (capacity factor with "
    "padding to capacity: no spread)")]
class CpComm(StrEnum):  # calc.training.ring_attention.RING_IMPLS
    p2p = "p2p"
    torch_allgather = "torch-allgather"
    allgather = "allgather"


CpCommOpt = Annotated[CpComm | None, typer.Option(
    "--cp-comm", help="how context-parallel ranks get the other ranks' K/V: p2p (ring passes of the KV heads hidden "
    "under the attention, Megatron-Core / Transformer Engine), torch-allgather (PyTorch context_parallel as torchtitan "
    "runs it: K/V after repeat_kv all-gathered once, fp32 gradient passes, fp32 merge) or allgather (one all-gather "
    "forward, all-gather + reduce-scatter of dK/dV backward, exposed: Llama 3 405B, arXiv 2407.21783 sec. 3.3.2); "
    "default: the stack's (torch-allgather for --stack fsdp, else p2p)")]
PpP2pOverlapOpt = Annotated[bool | None, typer.Option(
    "--pp-p2p-overlap/--no-pp-p2p-overlap", help="pipeline sends posted asynchronously and hidden under the stage's "
    "compute at the overlap efficiency (Llama 3 405B's asynchronous p2p, arXiv 2407.21783 sec. 3.3.2), or exposed "
    "whole; default: the stack's (megatron: hidden with --vpp > 1, as Megatron --overlap-p2p-comm and NeMo do; "
    "exposed without; other stacks exposed)")]
EpOverlap1f1bOpt = Annotated[bool, typer.Option(
    "--ep-overlap-1f1b", help="Megatron-Core --overlap-moe-expert-parallel-comm (combined 1F1B): each micro-batch's "
    "expert all-to-all runs under another's compute, forward under backward and vice versa (replaces --ep-overlap)")]
HostOpOpt = Annotated[float | None, typer.Option(
    "--host-op-us", parser=human_float("--host-op-us", allow_zero=True, maximum=10000.0),
    help="host (CPU) microseconds per launched op in eager training: a layer's forward / backward costs max(GPU time, "
    "ops x this) (default 15; 0 never binds; calc.training.host)")]
HostCopyOpt = Annotated[float | None, typer.Option(
    "--host-copy-gb-s", parser=human_float("--host-copy-gb-s", minimum=0.1, maximum=10000.0),
    help="GB/s one direction of an activation-offload copy runs at (--cpu-offload-layers / --offload-modules), e.g. "
    "what a pinned-memory copy reaches on your host (default: the GPU's host link x 0.8; calc.training.offload)")]
CapacityOpt = Annotated[float | None, typer.Option(
    "--capacity-factor", parser=human_float("--capacity-factor", maximum=64.0),
    help="MoE expert capacity factor (Megatron --moe-expert-capacity-factor): the busiest expert takes at most cf x "
         "its balanced share, the overflow dropped; with --moe-routing token-drop every expert is padded to it "
         "(default: dropless, no cap)")]


ShardingOpt = Annotated[str, typer.Option(
    "--sharding", help="zero (ZeRO stage --zero, DeepSpeed / Megatron), fsdp-pp (torchtitan's FSDP2 with --pp > 1 "
    "and --zero 3: stage weights gathered and fp32 gradients unsharded all step, one all-gather and one "
    "reduce-scatter per step) or zero2-pp (Llama 3's FSDP with --pp > 1 and --zero 2: stage weights whole, each "
    "micro-batch's gradients reduce-scattered into an fp32 shard, one weight all-gather per step)")]


@dataclass(frozen=True)
class LayoutFlags:
    """The layout options beyond TP x PP x DP x CP that train-step and `memory --mode train` take (one option group,
    calc.cli.groups.takes): the expert grid, interleaving and the pipeline split, Megatron's module recomputation and
    offloading, the sharding. `memory` refuses them in its other modes (``given``)."""

    ep: EpOpt = None
    etp: EtpOpt = None
    vpp: VppOpt = 1
    pp_embedding: PpEmbeddingOpt = False
    pp_loss: PpLossOpt = False
    pp_microbatch_group: PpMicrobatchGroupOpt = None
    recompute_modules: RecomputeModulesOpt = None
    cpu_offload_layers: CpuOffloadOpt = 0
    offload_modules: OffloadModulesOpt = None
    sharding: ShardingOpt = "zero"

    def given(self) -> list[tuple[str, Any, Any]]:
        """(flag, value, default) of each option, for a mode that refuses them (calc.cli.options.refuse)."""
        return [("--" + f.name.replace("_", "-"), getattr(self, f.name), f.default) for f in fields(self)]


DEFAULT_LAYOUT_FLAGS = LayoutFlags()


def refuse_fp8_recipe_on_gpu(fp8_recipe: Any, g: Any) -> None:
    """--fp8-recipe mxfp8 on a GPU without MX block-scaled tensor cores (Blackwell's): refused, by train-step and
    `memory --mode train` alike."""
    from calc.errors import LLMCalcError

    if fp8_recipe is not None and fp8_recipe.value == "mxfp8" and g is not None and g.arch != "Blackwell":
        raise LLMCalcError("--fp8-recipe", f"mxfp8 (MX block scaling) runs on Blackwell tensor cores only, not on "
                                           f"{g.name} ({g.arch}): give delayed, tensorwise, rowwise or blockwise")


def training_layout(*, num_gpus: int | None, tp: int | None, pp: int | None, dp: int | None, cp: int | None, sp: bool,
                    micro_batch: int, zero: int, recompute: Recompute, flags: LayoutFlags = DEFAULT_LAYOUT_FLAGS) -> Any:
    """The calc.training.layout.Layout the layout flags name, one builder for train-step and `memory --mode train`:
    each degree defaults to 1, DP to --num-gpus / (TP x PP x CP) (1 without --num-gpus); module lists are comma- or
    space-separated. Validity is calc.training.layout.check_training_layout's (with the global batch); --pp-embedding /
    --pp-loss without a pipeline are refused here, for both commands."""
    from calc.errors import LLMCalcError
    from calc.training.layout import Layout

    tp_, pp_, cp_ = tp or 1, pp or 1, cp or 1
    if dp is None:
        if num_gpus is None:
            dp = 1
        elif num_gpus % (tp_ * pp_ * cp_):
            raise LLMCalcError("--num-gpus", f"{num_gpus} is not a multiple of TP x PP x CP = {tp_ * pp_ * cp_}")
        else:
            dp = num_gpus // (tp_ * pp_ * cp_)
    f = flags
    if pp_ == 1:  # train-step and `memory --mode train` alike
        from calc.cli.options import refuse

        for flag, given in (("--pp-embedding", f.pp_embedding), ("--pp-loss", f.pp_loss)):
            refuse(flag, given, "counts a layer slot in the pipeline split; with --pp 1 there is no split: give --pp > 1 "
                                "or drop it", False)
    return Layout(tp=tp_, pp=pp_, dp=dp, cp=cp_, ep=f.ep or 1, etp=f.etp, vpp=f.vpp, sp=sp, micro_batch=micro_batch,
                  zero=zero, recompute=recompute.value, sharding=f.sharding, pp_embedding=f.pp_embedding,
                  pp_loss=f.pp_loss, pp_microbatch_group=f.pp_microbatch_group,
                  recompute_modules=frozenset((f.recompute_modules or "").replace(",", " ").split()),
                  cpu_offload_layers=f.cpu_offload_layers,
                  offload_modules=frozenset((f.offload_modules or "").replace(",", " ").split()))  # type: ignore[arg-type]


ZeroPin = Annotated[int | None, typer.Option("--zero", parser=human_int("--zero", minimum=0, maximum=3),
                                             help="pin the ZeRO stage (default: search 0-3)")]
MicroBatchPin = Annotated[int | None, typer.Option("--micro-batch", parser=human_int("--micro-batch"),
                                                   help="pin the micro-batch (default: search 1, 2, 4, 8)")]
RecomputePin = Annotated[Recompute | None, typer.Option("--recompute", help=(
    "pin recomputation: none, selective (Megatron: the attention core), full, sac, deepseek, as train-step's "
    "--recompute (default: the lightest that fits, searched over none, selective without flash attention, full, "
    "and deepseek for MLA models)"))]


def _warn_scale(num_gpus: int | None, global_batch: int | None, seq: int, node: Any, tokens_form: bool = False) -> None:
    """One stderr line per scale finding (calc.training.plan.scale_warnings), for every training command; the batch
    warning names the flag the user typed (--global-batch-tokens when ``tokens_form``)."""
    from calc.sanity import warn
    from calc.training.plan import scale_warnings

    flag = "--global-batch-tokens" if tokens_form else "--global-batch"
    for line in scale_warnings(num_gpus, global_batch, seq, node.gpus_per_node if node is not None else None, flag):
        field, _, message = line.partition(": ")
        warn(field, message)


def _warn_predicted_mfu(plan: Any, cost: Any) -> None:
    """The warning of calc.sanity.check_predicted_mfu for a plan's predicted MFU (train-time's rides on its result),
    saying so where ``cost`` carries GEMM rates the user gave."""
    from calc.sanity import check_predicted_mfu, warn

    for line in check_predicted_mfu(plan, measured=cost.calibration is not None or cost.eff.gemm_plateau is not None):
        warn(*line.split(": ", 1))


def _pins(**degrees: Any) -> tuple[tuple[str, Any], ...]:
    """The degrees the user pinned, for the plan search (None = searched)."""
    return tuple((k, v.value if isinstance(v, Recompute) else v) for k, v in degrees.items() if v is not None)


def _specs(model: str, gpu: str, seq: int) -> tuple[Any, Any]:
    """The model and GPU a training command names, loaded once; a sequence past the context window is a
    warning here (training may extend the context)."""
    from calc.cli.common import check_context
    from calc.sources.catalog import load_gpu, load_model

    m, g = load_model(model), load_gpu(gpu)
    check_context(m, seq, "--seq", refuse=False, why=" (training beyond it extends the context)")
    return m, g


@dataclass(frozen=True)
class StepKnobs:
    """The step model's options train-step and train-plan both take (calc.cli.groups.takes): kernels, stack, fp8
    scaling, training-state recipe, efficiencies and overlaps, MoE exchange, packed documents; ``_cost`` turns them
    into the ModelCost's Efficiencies. Commands that take a few of them (train-time, report) build one here."""

    attention: AttentionOpt = Attention.flash
    stack: StackOpt = None
    fp8_recipe: Fp8RecipeOpt = None
    recipe: RecipeOpt = None
    collective_eff: CollectiveEffOpt = None
    overlap_eff: OverlapEffOpt = None
    tp_overlap: TpOverlapOpt = None
    doc_tokens: DocTokensOpt = None
    ep_overlap: EpOverlapOpt = None
    ep_overlap_1f1b: EpOverlap1f1bOpt = False
    dispatcher: DispatcherOpt = None
    moe_routing: MoeRoutingOpt = None
    cp_comm: CpCommOpt = None
    pp_p2p_overlap: PpP2pOverlapOpt = None
    capacity_factor: CapacityOpt = None
    gemm_plateau: PlateauOpt = None
    host_op_us: HostOpOpt = None
    activations: ActivationsModelOpt = Activations.per_tensor


DEFAULT_KNOBS = StepKnobs()


def _cost(m: Any, g: Any, system: str | None, seq: int, dtype: str, calibration: str | None,
          knobs: StepKnobs = DEFAULT_KNOBS, lora: Any = None, single_gpu: bool = False,
          memory: dict[str, Any] | None = None, host_copy_gb_s: float | None = None) -> Any:
    """The model / GPU / system triple and every efficiency, as the step model's ModelCost (``lora``: _lora's, LoRA on a
    frozen base; ``memory``: --loss / --compile / --fragmentation over the stack's memory settings, as `memory --mode
    train` takes them: Efficiencies loss, fused, fragmentation)."""
    from dataclasses import replace

    from calc.errors import LLMCalcError
    from calc.sources.catalog import load_system, system_for_gpu
    from calc.training.cost import Efficiencies, ModelCost

    k = knobs
    attention, stack, fp8_recipe, recipe, doc_tokens = k.attention, k.stack, k.fp8_recipe, k.recipe, k.doc_tokens
    capacity_factor, dispatcher, moe_routing, ep_overlap, ep_overlap_1f1b = (k.capacity_factor, k.dispatcher, k.moe_routing,
                                                                             k.ep_overlap, k.ep_overlap_1f1b)
    check_doc_tokens(doc_tokens, seq)
    node = load_system(system) if system else system_for_gpu(g)
    if node is None and single_gpu:  # one GPU moves nothing between GPUs: a node of one, no link figure read
        from calc.specs.system import one_gpu_node

        node = one_gpu_node(g.name)
    if node is None:
        raise LLMCalcError("--system", f"no node type ships for {g.name}; give --system (see system_specs/) or a YAML "
                                       "(one GPU needs none: --num-gpus 1)")
    if node.gpu != g.name:
        raise LLMCalcError("--system", f"{node.name} is built from {node.gpu}, not {g.name}")
    if m.moe is None and capacity_factor is not None:
        raise LLMCalcError("--capacity-factor", f"{m.name} has no experts")
    if m.moe is None and dispatcher is not None:
        raise LLMCalcError("--dispatcher", f"{m.name} has no experts")
    from calc.hardware.moe_ops import TRAINING_DISPATCHERS

    if dispatcher is not None and dispatcher.value not in TRAINING_DISPATCHERS:
        raise LLMCalcError("--dispatcher", f"{dispatcher.value} is not priced for training (Megatron's all-to-all or "
                                           f"DeepEP / HybridEP): give {' or '.join(TRAINING_DISPATCHERS)}")
    if m.moe is None and moe_routing is not None:
        raise LLMCalcError("--moe-routing", f"{m.name} has no experts")
    if m.moe is None and ep_overlap is not None:
        raise LLMCalcError("--ep-overlap", f"{m.name} has no experts: no expert all-to-all to hide")
    if fp8_recipe is not None and dtype != "fp8":  # TRAINING_DTYPES: fp8 is the one that runs fp8 GEMMs
        raise LLMCalcError("--fp8-recipe", f"scales fp8 GEMMs; --dtype {dtype} runs none: give --dtype fp8 or drop it")
    refuse_fp8_recipe_on_gpu(fp8_recipe, g)
    if m.moe is None and ep_overlap_1f1b:
        raise LLMCalcError("--ep-overlap-1f1b", f"{m.name} has no experts: no expert all-to-all to hide")
    if ep_overlap_1f1b and ep_overlap is not None:
        raise LLMCalcError("--ep-overlap-1f1b", "sets how the expert all-to-all hides (under the other micro-batch's "
                           "compute); --ep-overlap sets a fixed share instead: give one of them")
    overrides = {f: v for f, v in {"collective": k.collective_eff, "overlap": k.overlap_eff, "tp_overlap": k.tp_overlap,
                                   "ep_overlap": ep_overlap, "capacity_factor": capacity_factor,
                                   "gemm_plateau": k.gemm_plateau, "stack": stack and stack.value,
                                   "fp8_recipe": fp8_recipe and fp8_recipe.value,
                                   "host_op_s": None if k.host_op_us is None else k.host_op_us * 1e-6,
                                   "ep_overlap_1f1b": ep_overlap_1f1b or None,
                                   "dispatcher": dispatcher and dispatcher.value,
                                   "moe_routing": moe_routing and moe_routing.value,
                                   "cp_comm": k.cp_comm and k.cp_comm.value,
                                   "pp_p2p_overlap": k.pp_p2p_overlap, "host_copy_gb_s": host_copy_gb_s,
                                   "recipe": training_recipe(recipe, dtype), **(memory or {})}.items() if v is not None}
    if attention not in (Attention.flash, Attention.unfused):  # a named fused kernel, where it runs
        from calc.hardware.attention import kernel_unavailable

        if why := kernel_unavailable(attention.value, g.arch):
            raise LLMCalcError("--attention", f"{why}, not on {g.name} ({g.arch}): give flash (the stack's kernel) or "
                                              "a kernel built for it")
        overrides["attention_kernel"] = attention.value
    eff = replace(Efficiencies(flash=attention != Attention.unfused, activations=k.activations.value), **overrides)
    from calc.hardware.calibration import load_calibration as load_checked

    calib = load_checked(calibration, g) if calibration else None
    if calib is not None and calib.time_model == "roofline":  # calibrate --from-runs: a whole-step fit, not a GEMM curve
        raise LLMCalcError("--calibration", "this file is `calibrate --from-runs`' whole-step roofline (FLOPs / (peak x "
                                            "e_c) stands for the step), which the training step model would read as its "
                                            "GEMM rate and add attention, elementwise work and communication on top "
                                            "again; for a measured training step give train-step --measured-step-time "
                                            "(it prints the GEMM plateau that reproduces it) and --gemm-plateau")
    if calib is not None and calib.ops.get("gemm") and k.gemm_plateau is not None:  # the measured curve times the GEMMs
        raise LLMCalcError("--gemm-plateau", "the --calibration file's measured GEMM curve sets every GEMM's rate, so a "
                                             "plateau would change nothing: give one of them")
    return ModelCost(m, g, node, seq, dtype, eff, calib, lora, doc_tokens)


def check_doc_tokens(doc_tokens: int | None, seq: int) -> None:
    """--doc-tokens must be below --seq: packed documents are shorter than the sequence they are packed into."""
    from calc.errors import LLMCalcError

    if doc_tokens is not None and doc_tokens >= seq:
        raise LLMCalcError("--doc-tokens", f"{doc_tokens:,} is not below --seq {seq:,}: packed documents are shorter than "
                           "the sequence; drop --doc-tokens for one document per sequence")


def _lora(method: str | None, rank: int | None, targets: str | None, *, ep: int | None, sharding: str,
          recompute: Recompute, offloads: tuple[int, str | None], dtype: str) -> Any:
    """--method full (every weight trains, the default), lora or qlora (calc.training.adapters.Lora); what a LoRA step
    does not price is refused naming its flag."""
    from calc.cli.options import refuse
    from calc.errors import LLMCalcError

    name = (method or "full").lower()
    if name == "dora":
        raise LLMCalcError("--method", "dora is priced for memory only (memory --mode finetune --method dora); "
                                       "train-step times full, lora or qlora")
    if name not in ("full", "lora", "qlora"):
        raise LLMCalcError("--method", f"unknown method {method!r}; train-step times full (default), lora or qlora")
    if name == "full":
        for flag, value in (("--lora-rank", rank), ("--lora-targets", targets)):
            refuse(flag, value, "sets a LoRA adapter; give --method lora (the default full trains every weight)")
        return None
    why = "is not priced for a LoRA step (its memory is the fine-tuning engine's)"
    refuse("--ep", ep if (ep or 1) > 1 else None, why + "; expert parallelism: give --ep 1")
    refuse("--sharding", sharding if sharding != "zero" else None, why)
    refuse("--recompute", recompute.value if recompute.value not in ("none", "selective", "full") else None,
           why + "; give none, selective or full")
    refuse("--cpu-offload-layers", offloads[0] or None, why)
    refuse("--offload-modules", offloads[1], why)
    from calc.training.adapters import Lora

    if name == "qlora" and dtype != "bf16":
        raise LLMCalcError("--dtype", f"{dtype}: QLoRA dequantizes its NF4 base to bf16 for every GEMM (bitsandbytes); "
                                      "drop --dtype")
    return Lora.of(rank, targets, "nf4" if name == "qlora" else "bf16")


def batch_or_default(global_batch: int | None, seq: int, num_gpus: int) -> int:
    """The global batch given, else the one train-time and report use (calc.training.plan.default_global_batch:
    4,194,304 tokens / --seq rounded up to a multiple of the GPUs), said in a note under the answer."""
    if global_batch is not None:
        return global_batch
    from calc.sanity import note
    from calc.training.plan import DEFAULT_BATCH_TOKENS, GPUS_PER_SEQUENCE, default_batch_piece, default_global_batch

    batch = default_global_batch(seq, num_gpus)
    rule = (f"{DEFAULT_BATCH_TOKENS:,} tokens / --seq, a multiple of the {num_gpus:,} GPUs" if default_batch_piece(seq, num_gpus)
            else f"one sequence per {GPUS_PER_SEQUENCE} GPUs: past 8 x {DEFAULT_BATCH_TOKENS:,} tokens / --seq GPUs the "
                 "batch grows with the cluster")
    note("--global-batch", f"--global-batch not given: {batch:,} sequences x {seq:,} = {batch * seq:,} tokens per step "
                           f"(the default: {rule}, as train-time and report take it)")
    return batch


@takes("knobs", StepKnobs)
@takes("flags", LayoutFlags)
def train_step(
    model: ModelArg,
    gpu: GpuOpt,
    global_batch: GlobalBatchOpt = None,
    global_batch_tokens: GlobalBatchTokensOpt = None,
    num_gpus: NumGpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    dp: DpOpt = None,
    cp: CpOpt = None,
    flags: LayoutFlags = DEFAULT_LAYOUT_FLAGS,
    sp: SpOpt = False,
    micro_batch: MicroBatchOpt = 1,
    seq: SeqOpt = DEFAULT_SEQ,
    zero: ZeroOpt = 0,
    recompute: RecomputeOpt = Recompute.none,
    system: SystemOpt = None,
    knobs: StepKnobs = DEFAULT_KNOBS,
    host_copy_gb_s: HostCopyOpt = None,
    measured_step_time: Annotated[float | None, typer.Option(
        "--measured-step-time", parser=human_float("--measured-step-time"),
        help="a step time you measured for this plan: prints the error and the GEMM plateau that reproduces it")] = None,
    reserve_gib: ReserveOpt = None,
    dtype: PeakDtypeOpt = DEFAULT_DTYPE,
    calibration: CalibrationOpt = None,
    method: TrainMethodOpt = None,
    lora_rank: LoraRankOpt = None,
    lora_targets: LoraTargetsOpt = None,
    compile_: CompileOpt = None,
    loss: LossOpt = None,
    fragmentation: FragOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Step time of one parallel plan: every term (compute, recompute, TP/EP/CP/PP/DP communication,
    bubble, optimizer) and how much is exposed, tokens/s, MFU, HFU, memory per GPU. A plan that does not
    fit is refused with the memory it needs. --method lora times LoRA on a frozen base (memory as
    `memory --mode finetune --method lora` prices it)."""
    global_batch = global_batch_sequences(global_batch, global_batch_tokens, seq)
    from calc.cli.common import emit_outcome
    from calc.report.training_views import train_step_view
    from calc.training.step import train_step as engine

    lora = _lora(method, lora_rank, lora_targets, ep=flags.ep, sharding=flags.sharding, recompute=recompute,
                 offloads=(flags.cpu_offload_layers, flags.offload_modules), dtype=dtype)
    one = num_gpus == 1 or (num_gpus is None and all((x or 1) == 1 for x in (tp, pp, dp, cp, flags.ep)))
    cost = _cost(*_specs(model, gpu, seq), system, seq, dtype, calibration, knobs, lora, single_gpu=one,
                 memory={"loss": loss and loss.lower(), "fused": compile_, "fragmentation": fragmentation},
                 host_copy_gb_s=host_copy_gb_s)
    if (flags.ep or 1) == 1:  # one rank holds every expert: no token exchange, no busiest EP rank (calc.training.cost ep_imbalance)
        from calc.cli.options import refuse

        refuse("--moe-routing", knobs.moe_routing, "sets the load spread the busiest expert-parallel rank waits for; with --ep 1 "
                                             "every rank holds all experts: give --ep > 1 or drop it")
        refuse("--dispatcher", knobs.dispatcher, "is the expert-parallel token exchange; with --ep 1 there is none: give --ep > 1 "
                                           "or drop it")
    layout = training_layout(num_gpus=num_gpus, tp=tp, pp=pp, dp=dp, cp=cp, sp=sp, micro_batch=micro_batch, zero=zero,
                             recompute=recompute, flags=flags)
    from calc.cli.options import refuse

    if layout.cp == 1:
        refuse("--cp-comm", knobs.cp_comm, "sets how context-parallel ranks exchange K/V; with --cp 1 there is no exchange: "
                                     "give --cp > 1 or drop it")
    if layout.pp == 1:
        refuse("--pp-p2p-overlap", knobs.pp_p2p_overlap is not None, "sets how the pipeline's stage-to-stage sends hide; with "
                                                                "--pp 1 there are none: give --pp > 1 or drop it")
    if layout.offload_flag() is None:
        refuse("--host-copy-gb-s", host_copy_gb_s, "times activation offloading's host copies; this plan offloads "
                                                   "nothing: give --cpu-offload-layers / --offload-modules or drop it")
    if layout.tp == 1:
        refuse("--tp-overlap", knobs.tp_overlap, "sets how much of the TP collectives hides under the GEMMs; with --tp 1 there "
                                           "are none: give --tp > 1 or drop it")
    _warn_scale(layout.num_gpus, global_batch, seq, cost.system, global_batch_tokens is not None)
    from calc.memory.training import DEFAULT_CUDA_CONTEXT_GIB

    result = engine(cost, layout, global_batch=batch_or_default(global_batch, seq, layout.num_gpus), num_gpus=num_gpus,
                    reserve_gib=DEFAULT_CUDA_CONTEXT_GIB if reserve_gib is None else reserve_gib)
    if measured_step_time is not None:
        from calc.training.calibrate import with_measurement

        result = with_measurement(result, cost, layout, measured_step_time)
    _warn_predicted_mfu(result if measured_step_time is None else None, cost)  # a plan that does not fit has no MFU
    emit_outcome(result, as_json, explain, train_step_view, None if result.fits else result.verdict)


@takes("knobs", StepKnobs)
def train_plan(
    model: ModelArg,
    gpu: GpuOpt,
    num_gpus: NumGpusOpt = None,
    global_batch: GlobalBatchOpt = None,
    global_batch_tokens: GlobalBatchTokensOpt = None,
    seq: SeqOpt = DEFAULT_SEQ,
    tp: TpOpt = None,
    pp: PpOpt = None,
    cp: CpOpt = None,
    ep: EpOpt = None,
    zero: ZeroPin = None,
    micro_batch: MicroBatchPin = None,
    recompute: RecomputePin = None,
    cross_node_tp: Annotated[bool, typer.Option("--cross-node-tp", help="let TP span nodes")] = False,
    top: Annotated[int, typer.Option("--top", parser=human_int("--top", maximum=1000), help="plans to show")] = 10,
    system: SystemOpt = None,
    knobs: StepKnobs = DEFAULT_KNOBS,
    dtype: PeakDtypeOpt = DEFAULT_DTYPE,
    calibration: CalibrationOpt = None,
    method: TrainMethodOpt = None,
    lora_rank: LoraRankOpt = None,
    lora_targets: LoraTargetsOpt = None,
    compile_: CompileOpt = None,
    loss: LossOpt = None,
    fragmentation: FragOpt = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """The fastest TP/PP/DP/CP/EP layouts that fit (with ZeRO stage, micro-batch, recomputation and
    interleaving), ranked by predicted step time; --tp/--pp/--cp/--ep/--zero/--micro-batch/--recompute pin one.
    --method lora|qlora searches the layouts a LoRA step is priced for (no EP; none, selective or full recompute)."""
    global_batch = global_batch_sequences(global_batch, global_batch_tokens, seq)
    from calc.cli.common import output_path
    from calc.errors import LLMCalcError
    from calc.report.render import emit
    from calc.report.training_views import plot_step_breakdown, train_plan_view
    from calc.training.plan import MIN_TOKENS_PER_CP_RANK, SearchSpace, search_plans, searches_cp

    if num_gpus is None:
        raise LLMCalcError("--num-gpus", "missing; how many GPUs train the model?")
    target = output_path(plot, "--plot", (".png", ".svg"))
    pins = _pins(tp=tp, pp=pp, cp=cp, ep=ep, zero=zero, micro_batch=micro_batch, recompute=recompute)
    # with lora the search keeps to what a LoRA step prices (calc.training.plan)
    lora = _lora(method, lora_rank, lora_targets, ep=ep, sharding="zero", recompute=recompute or Recompute.none,
                 offloads=(0, None), dtype=dtype)
    cost = _cost(*_specs(model, gpu, seq), system, seq, dtype, calibration, knobs, lora, single_gpu=num_gpus == 1,
                 memory={"loss": loss and loss.lower(), "fused": compile_, "fragmentation": fragmentation})
    if ep is not None and ep > 1 and cost.m.moe is None:
        raise LLMCalcError("--ep", f"{cost.m.name} has no experts; expert parallelism needs a MoE model")
    _warn_scale(num_gpus, global_batch, seq, cost.system, global_batch_tokens is not None)
    space = SearchSpace(cross_node_tp=cross_node_tp, fixed=pins)
    if knobs.cp_comm is not None and not searches_cp(cost, num_gpus, space):
        from calc.cli.options import refuse

        refuse("--cp-comm", knobs.cp_comm, f"sets how context-parallel ranks exchange K/V; the search tries no CP > 1 here "
                                     f"(each CP rank needs >= {MIN_TOKENS_PER_CP_RANK:,} of the --seq {seq:,} tokens, "
                                     "CP a power of two dividing the GPUs): give a longer --seq or --cp, or drop it")
    result = search_plans(cost, num_gpus, batch_or_default(global_batch, seq, num_gpus), top=top, space=space)
    _warn_predicted_mfu(result.plans[0] if result.plans else None, cost)
    if target is not None and result.plans:
        plot_step_breakdown(result.plans, f"{result.model} on {num_gpus} x {result.gpu}: step time by term", str(target))
    if as_json:
        from calc.report.render import emit_json

        emit_json(result)
    else:
        emit(result, False, False, train_plan_view)
    if explain and not as_json:
        from calc.report.confidence import how_sure_text
        from calc.report.render import console, explain_panel

        console.print(explain_panel(result.explain + how_sure_text(result, explain=True)))
    if not result.plans:  # one exit code per outcome, whatever the format
        raise LLMCalcError("--num-gpus", result.verdict)
