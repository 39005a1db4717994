"""One-page sizing report and GPU comparison, assembled from the engines' own results.

Nothing is computed here: every number is a field of a ParamCount, FlopsResult, MemoryResult,
LatencyResult, ConcurrencyResult or TrainTimeResult, or an engine call over a range of workloads
(for the chart), so the report's JSON is exactly the union of the single commands' JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, computed_field

from calc.hardware.calibration import Calibration
from calc.memory import MemoryResult, inference_memory
from calc.memory.weights import WeightsDtype, weights_class
from calc.model.flops import FlopsResult, forward_flops
from calc.model.params import ParamCount, count_params
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions
from calc.serving.capacity import ConcurrencyResult, concurrency, with_engine_fit
from calc.serving.engine_memory import request_kv_bytes
from calc.serving.latency import LatencyResult, latency
from calc.serving.plan import ServePlan, plan_explain, serve_plan
from calc.serving.windows import model_as_run
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.specs.serving import EngineSettings
from calc.training.mfu import TrainTimeResult, train_time


class ChartPoint(BaseModel):
    """Memory of the whole box at one workload: weights flat, KV cache growing."""

    requests: int
    tokens_per_request: int
    weights_bytes: int
    kv_cache_bytes: int
    other_bytes: int  # activations + reserves


class MemoryChart(BaseModel):
    capacity_bytes: int
    vs_concurrency: list[ChartPoint]
    vs_context: list[ChartPoint]


class Report(BaseModel):
    mode: str
    model: str
    gpu: str
    num_gpus: int
    params: ParamCount
    flops: FlopsResult
    memory: MemoryResult | None  # None only when no training layout fits (``fits`` False)
    concurrency: ConcurrencyResult | None = None
    latency: LatencyResult | None = None
    train_time: TrainTimeResult | None = None
    chart: MemoryChart | None = None
    serving: ServePlan | None = None
    fits: bool = True  # False: no training layout fits the GPUs (as train-plan); ``verdict`` says what would
    verdict: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def assumptions(self) -> list[str]:
        """The page's assumptions, once each, as its sections list them: serving, the concurrency answer's and the
        serving plan's; training, the memory page's and the training time's (its plan's, or the assumed MFU)."""
        parts = ([self.concurrency, self.serving] if self.mode == "infer" else [self.memory, self.train_time])
        return list(dict.fromkeys(a for part in parts if part is not None for a in part.assumptions))


def _chart(conc: ConcurrencyResult, m: ModelSpec) -> MemoryChart:
    """Memory vs requests and vs context, in the engine's terms (as `concurrency` counts it): weights,
    KV in whole blocks per request, and the rest (reserve outside the utilisation fraction, non-torch
    memory, the profile run's activation peak)."""
    limit = conc.max_concurrency

    def point(requests: int, tokens: int) -> ChartPoint:
        return ChartPoint(
            requests=requests, tokens_per_request=tokens, weights_bytes=conc.weights_stored_bytes,
            # the one per-request rule of admission (as `concurrency` counts it)
            kv_cache_bytes=requests * conc.num_gpus * request_kv_bytes(m, tokens, conc.kv_dtype, conc.tp, conc.pp,
                                                                       conc.block_size, conc.hybrid),
            other_bytes=conc.reserve_bytes + conc.activation_bytes,
        )

    top = max(2 * limit, 4)
    counts = sorted({1, *(round(top * i / 8) for i in range(1, 9))} - {0})
    contexts = [t for t in (1024, 2048, 4096, 8192, 16384, 32768) if t <= m.context_window] or [1024]  # none past the model's
    return MemoryChart(
        capacity_bytes=conc.capacity_bytes,
        vs_concurrency=[point(n, conc.max_tokens) for n in counts],
        vs_context=[point(max(limit, 1), t) for t in contexts],
    )


def build_report(
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int = 1, mode: str = "infer", dtype: str | None = "bf16",
    kv_dtype: str | None = None, batch: int = 1, prompt: int = 1024, output: int = 256, seq: int = 4096,
    tokens: float = 1e12, mfu_assumed: float | None = 0.4, price_per_gpu_hour: float | None = None,
    plan: Parallelism | None = None, zero: int | None = 0, recipe: str = "bf16-adam", calibration: Calibration | None = None,
    serve_gpus: int | None = None, ttft_ms: float | None = None, tpot_ms: float | None = None, rate: float | None = None,
    users: int | None = None,
    assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS, settings: EngineSettings | None = None,
    training_cost: Any = None, micro_batch: int | None = None, recompute: str | None = None,
    global_batch: int | None = None, pins: tuple[tuple[str, int], ...] = (), doc_tokens: int | None = None,
) -> Report:
    """Inference: params, FLOPs of the prompt, memory of B requests of P+T tokens, concurrency,
    latency, the memory chart and the serving plan `serve` makes for the same request, targets and rate
    (``serve_gpus`` is serve's --num-gpus: None sizes for ``rate``). Training: params, FLOPs at S, training
    memory, days/GPU-hours. ``settings``: the engine (--engine, --engine-version) whose accounting the concurrency
    and the serving plan follow (vLLM V1 when None, as `concurrency` and `serve` default). ``training_cost``: the
    calc.training.cost.ModelCost the plan is searched with (--stack and the efficiencies, as train-time builds it);
    None: the GPU's node type at the default efficiencies. ``micro_batch``: training's micro-batch when the user pins it
    (--batch), else None (searched); ``recompute``: its recomputation when pinned (--recompute), else searched."""
    if mode == "infer":  # the model as the engine runs it: its sliding layers full where it ignores the windows
        m = model_as_run(m, assumptions.attention_windows)  # (calc.serving.windows)
    params = count_params(m)
    if mode == "train":
        plan = plan or Parallelism(dp=num_gpus)

        def placement(searched: bool) -> Any:  # `memory --mode train` of this placement, what an assumed MFU times:
            # ZeRO-1 without recomputation unless --zero / --recompute pin them; where no plan search follows
            # (``searched`` False: no node type), the first of ZeRO-1, ZeRO-3, then recomputing selective, full that
            # fits (memory --mode train's own advice; train-time's fit check ends at ZeRO-3, full)
            from calc.training.cost import Efficiencies
            from calc.training.layout import Layout
            from calc.training.step import stacked_layout_memory, steady_state_microbatches

            tries = [(z, r) for r in ([recompute or "none"] if recompute or searched else ["none", "selective", "full"])
                     for z in ([1 if zero is None else zero] if zero is not None or searched else [1, 3])]
            for z, r in tries:
                layout = Layout(tp=plan.tp, pp=plan.pp, dp=plan.dp, cp=plan.cp, sp=plan.sequence_parallel,
                                micro_batch=batch, zero=z, recompute=r)
                found = stacked_layout_memory(m, layout, steady_state_microbatches(layout), seq=seq, gpu=gpu,
                                              eff=Efficiencies(recipe=recipe))
                if found.fits:
                    break
            return found

        from calc.sources.catalog import system_for_gpu
        from calc.specs.system import one_gpu_node
        from calc.training.cost import ModelCost

        # the node type a plan is placed on (at the default efficiencies unless given); one GPU without one: a node
        # of one (calc.specs.system.one_gpu_node), as train-plan and train-time place it
        system = system_for_gpu(gpu) or (one_gpu_node(gpu.name) if plan.num_gpus == 1 and not mfu_assumed else None)
        train_dtype = dtype or "bf16"  # the run's compute dtype (--dtype: fp16 on a GPU without bf16, as train-time)
        cost = training_cost or (ModelCost(m, gpu, system, seq, train_dtype, calibration=calibration) if system else None)
        # no node type ships for the GPU and no MFU is given: the MFU is assumed (0.4), the page this placement's
        # memory, as train-time prices it
        no_node = cost is None and not mfu_assumed
        memory = placement(cost is not None) if mfu_assumed or no_node else None  # an assumed MFU times no plan: ...
        best = None
        if cost is not None and not (memory is not None and memory.fits):  # ... unless it does not fit: train-plan's
            best = _best_training_plan(plan.num_gpus, seq, cost, zero, micro_batch, recompute, global_batch,
                                       pins)  # fastest fitting layout
        if best is not None and not best.plans:  # nothing fits: the answer is the search's verdict (as train-plan)
            return Report(mode=mode, model=m.name, gpu=gpu.name, num_gpus=plan.num_gpus, params=params,
                          flops=forward_flops(m, batch, seq), memory=None, fits=False,
                          verdict=best.verdict + ("" if mfu_assumed else "; give --mfu to assume one instead"))
        best = best.plans[0] if best is not None else None
        if best is not None:  # the searched layout's memory, priced as train-step prices it (the layout train-time's fit
            # check finds, calc.cli.common.training_fit); its MFU times the run unless one is assumed
            memory = timed_plan_memory(m, gpu, best, training_cost.eff if training_cost else None)
            if mfu_assumed:
                memory = memory.model_copy(update={"assumptions": [
                    f"DP {plan.dp} over every GPU does not fit at --mfu: the page shows train-plan's fastest fitting "
                    f"layout ({best.layout})", *memory.assumptions]})
                best = None
        timed = train_time(m, gpu, num_gpus=plan.num_gpus, tokens=tokens, seq=seq, mfu_assumed=mfu_assumed or 0.4,
                           doc_tokens=doc_tokens, dtype=train_dtype,
                           rates_given=training_cost is not None and training_cost.eff.gemm_plateau is not None,
                           price_per_gpu_hour=price_per_gpu_hour, calibration=calibration, plan=best)
        if no_node:
            timed = timed.model_copy(update={"mfu_source": f"assumed (0.4: no node type ships for {gpu.name})"})
        return Report(
            mode=mode, model=m.name, gpu=gpu.name, num_gpus=plan.num_gpus, params=params,
            flops=forward_flops(m, batch, seq), memory=memory, train_time=timed,
            fits=memory.fits is not False if no_node else True,
        )
    max_tokens = prompt + output
    accounting = (settings or EngineSettings()).accounting()  # whose "auto" KV dtype every section reads
    serving = serve_plan(m, gpu, prompt=prompt, output=output, ttft_ms=ttft_ms, tpot_ms=tpot_ms, rate=rate, users=users,
                         num_gpus=serve_gpus, dtype=dtype, kv_dtype=kv_dtype, settings=settings,
                         calibration=calibration, assumptions=assumptions) if output >= 1 else None
    layout, sized = Parallelism(tp=num_gpus), None
    if serve_gpus is None and serving is not None and serving.best is not None:  # sized for --rate: the page's
        layout, sized = replica_layout(serving.best)  # deployment is one replica of serve's pick
        num_gpus = layout.num_gpus
    conc = concurrency(m, gpu, num_gpus=num_gpus, tp=layout.tp, pp=layout.pp, max_tokens=max_tokens, dtype=dtype,
                       kv_dtype=kv_dtype, settings=settings, assumptions=assumptions)
    if sized:
        conc = conc.model_copy(update={"assumptions": [sized, *conc.assumptions]})
    return Report(
        mode=mode, model=m.name, gpu=gpu.name, num_gpus=num_gpus, params=params,
        flops=forward_flops(m, batch, prompt),
        memory=with_engine_fit(inference_memory(m, gpu=gpu, plan=layout, dtype=dtype, kv_dtype=kv_dtype,
                                                batch=batch, seq=max_tokens,
                                                accounting=accounting),
                               m, gpu, layout, dtype, kv_dtype, max_tokens, batch, settings, assumptions),
        concurrency=conc,
        latency=latency(m, gpu, num_gpus=num_gpus, tp=layout.tp, pp=layout.pp, batch=batch, prompt=prompt, output=output,
                        dtype=dtype, kv_dtype=kv_dtype, calibration=calibration, assumptions=assumptions,
                        chunk_tokens=conc.prefill_chunk_tokens, accounting=accounting,
                        ).model_copy(update={"max_concurrency": conc.max_concurrency, "engine": conc.engine,
                                             "max_model_len": max_tokens}),  # as latency launches it
        chart=_chart(conc, m),
        serving=serving,
    )


def replica_layout(best: Any) -> tuple[Parallelism, str]:
    """The TP x PP layout report's single-deployment sections (memory, concurrency, latency) price for one replica of
    serve's pick ``best`` when --rate sizes the GPUs, and the line saying so. An expert-parallel pick (DP attention
    groups + EP) has no such layout: the sections then take TP over its GPUs, and the line names the commands that
    price the EP layout itself (latency / concurrency --ep)."""
    if best.ep == 1:
        layout = Parallelism(tp=best.tp, pp=best.pp)
        return layout, (f"sized for the traffic (--rate / --users): the page prices one replica of serve's pick, {best.name} on "
                        f"{layout.num_gpus} GPUs ({best.replicas} replicas in all: the serving plan)")
    layout = Parallelism(tp=best.gpus_per_replica)
    return layout, (f"sized for the traffic (--rate / --users): serve's pick is {best.name} on {best.gpus_per_replica} GPUs; the page's "
                    f"memory, concurrency and latency price TP {best.gpus_per_replica} over those GPUs (latency / "
                    f"concurrency --ep {best.ep} price the expert-parallel layout)")


def _best_training_plan(num_gpus: int, seq: int, cost: Any, zero: int | None = None, micro_batch: int | None = None,
                        recompute: str | None = None, global_batch: int | None = None,
                        layout: tuple[tuple[str, int], ...] = ()) -> Any:
    """The train-plan search (top 1) on ``cost`` (a calc.training.cost.ModelCost: build_report's training_cost, or
    the GPU's node type at the default efficiencies) whose fastest fitting layout's predicted MFU replaces an assumed
    one (mfu_assumed=None), with the ZeRO stage pinned when --zero is given, the micro-batch when --batch is and the
    degrees in ``layout`` (--tp / --pp), on ``global_batch`` sequences (--global-batch, as train-time takes it), else
    train-plan's (calc.training.plan.default_global_batch); no plans when nothing fits."""
    from calc.training.plan import SearchSpace, default_global_batch, search_plans

    pins = ((("zero", zero),) * (zero is not None) + (("micro_batch", micro_batch),) * (micro_batch is not None)
            + (("recompute", recompute),) * (recompute is not None) + layout)
    return search_plans(cost, num_gpus, global_batch or default_global_batch(seq, num_gpus), top=1,
                        space=SearchSpace(fixed=pins))


def timed_plan_memory(m: ModelSpec, gpu: GPUSpec, step: Any, eff: Any = None) -> MemoryResult:
    """The training memory page of a timed plan (a calc.training.step.TrainStepResult): its TP/PP/DP/CP/EP,
    ZeRO stage, micro-batch, recomputation and the micro-batches its schedule keeps in flight, through the
    function `memory --mode train` prices a plan with (calc.training.step.layout_memory), on the ``eff`` (stack)
    the plan was timed with (None: train-step's defaults)."""
    from calc.training.layout import Layout
    from calc.training.step import stacked_layout_memory

    layout = Layout(tp=step.tp, pp=step.pp, dp=step.dp, cp=step.cp, ep=step.ep, etp=step.etp, vpp=step.vpp, sp=step.sp,
                    micro_batch=step.micro_batch, zero=step.zero, recompute=step.recompute)
    return stacked_layout_memory(m, layout, step.num_microbatches, seq=step.seq, gpu=gpu, eff=eff,
                                 global_batch=step.global_batch)  # its smallest count one the plan's batch splits


class CompareRow(BaseModel):
    model: str
    gpu: str
    engine: str  # the serving engine whose band its figures read (calc.report.confidence)
    weights_dtype: WeightsDtype
    peak_tflops: float | None  # None: the GPU has no tensor peak in the dtype asked (verdict says which it has)
    memory_bytes: int
    hbm_tb_s: float
    fits: bool  # some layout's KV cache holds one request
    meets_targets: bool  # serve found a layout meeting --ttft-ms / --tpot-ms (and the rate)
    layout: str | None  # serve's pick: replicas x layout
    gpus: int | None
    batch: int | None
    max_concurrency: int
    ttft_s: float | None
    tpot_s: float | None
    tokens_per_s: float | None  # output tokens/s of the whole deployment (every replica)
    cost_per_million_tokens: float | None  # flat out: over the deployment's tokens_per_s
    verdict: str
    price_per_gpu_hour: float | None = None  # --price for this GPU, the cost's rate; None: no price given
    assumptions: list[str] = []  # the serve plan's on this GPU (compare --explain prints them, once where shared)
    target_ttft_ms: float | None = None  # the targets and rate the layout was picked for, under serve's keys
    target_tpot_ms: float | None = None
    rate: float | None = None
    users: int | None = None  # --users the layout was sized for (closed loop), under serve's key
    # --rate with a price: the deployment's cost over the traffic's own output tokens (rate x output a second), what the
    # traffic costs; cost_per_million_tokens is the floor a deployment kept busy reaches
    cost_per_million_tokens_at_rate: float | None = None
    explain: list[str] = []  # the arithmetic of this GPU's figures: serve's for its pick, its tokens/s and its cost

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ttft_ms(self) -> float | None:
        """TTFT in ms, under serve's key (ttft_s kept for earlier readers)."""
        return None if self.ttft_s is None else self.ttft_s * 1e3

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tpot_ms(self) -> float | None:
        """TPOT in ms, under serve's key."""
        return None if self.tpot_s is None else self.tpot_s * 1e3


def cost_per_million_tokens(gpus: int, price_per_gpu_hour: float, tokens_per_s: float) -> float:
    """$ per million output tokens of a deployment running flat out:
    GPUs x price/GPU-hour / (output tokens/s x 3600 s/h) x 1e6 (a GPU-hour buys 3600 x tokens/s / GPUs tokens)."""
    return gpus * price_per_gpu_hour / (tokens_per_s * 3600) * 1e6


def compare_gpus(
    m: ModelSpec, gpus: list[GPUSpec], *, num_gpus: int | None = None, dtype: str | None = "bf16",
    kv_dtype: str | None = None, prompt: int = 1024,
    output: int = 256, ttft_ms: float | None = None, tpot_ms: float | None = None, rate: float | None = None,
    users: int | None = None, prices: dict[str, float] | None = None, settings: EngineSettings | None = None,
    assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS,
) -> list[CompareRow]:
    """The layout `serve` picks (calc.serving.plan.serve_plan, same request, targets, rate and --num-gpus) on
    each GPU, priced at the batch it runs: output tokens/s = serve's tokens/s per GPU x its GPUs = replicas x B x O /
    (TTFT + (O - 1) x TPOT) (each request's own prefill included, calc.serving.plan.slot_tokens_per_s), and
    cost_per_million_tokens over its GPUs. ``dtype`` None: weights as shipped; the peak shown is the one the
    quantized GEMMs run at (calc.serving.weights). ``settings`` and ``assumptions``: the engine and the serving
    assumptions as `serve` takes them from its options (vLLM V1 and the defaults when not given)."""
    from calc.errors import LLMCalcError
    from calc.hardware.peaks import peak_tflops
    from calc.serving.engine_kernels import engine_kernels
    from calc.serving.weights import load_problem, weight_format

    s = settings or EngineSettings()
    asked = {"target_ttft_ms": ttft_ms, "target_tpot_ms": tpot_ms, "rate": rate, "users": users}
    rows = []
    for gpu in gpus:  # the engine as `serve` runs it, with the release's kernels on this GPU (ROCm decode attention)
        compute = weight_format(m, gpu, dtype).compute_dtype
        try:
            problem = load_problem(m, gpu, dtype, s.engine)
            if problem is not None:  # the engine would not run it on this GPU as priced (fp32 Gemma, no 4-bit kernel)
                raise LLMCalcError(*problem)
            peak = peak_tflops(gpu, compute)
        except LLMCalcError as exc:  # e.g. a T4 has no bf16 tensor core (vLLM refuses bf16 there too): a row, not the table
            rows.append(CompareRow(
                model=m.name, gpu=gpu.name, engine=s.engine, weights_dtype=weights_class(m, dtype), peak_tflops=None,
                memory_bytes=gpu.memory_bytes, hbm_tb_s=gpu.hbm_tb_s, fits=False, meets_targets=False, layout=None,
                gpus=None, batch=None, max_concurrency=0, ttft_s=None, tpot_s=None, tokens_per_s=None,
                cost_per_million_tokens=None, verdict=exc.problem + (": compare it with another --dtype"
                                                                     if exc.field == "--dtype" else ""),
                price_per_gpu_hour=(prices or {}).get(gpu.name), **asked))
            continue
        kernels = engine_kernels(assumptions, m, gpu, s, prompt + output - 1, dtype)
        plan = serve_plan(m, gpu, prompt=prompt, output=output, ttft_ms=ttft_ms, tpot_ms=tpot_ms, rate=rate, users=users,
                          num_gpus=num_gpus, dtype=dtype, kv_dtype=kv_dtype, settings=s, assumptions=kernels)
        best = plan.best
        # the deployment's steady-state output rate, each request's prefill included, as serve ranks it
        # (calc.serving.plan.slot_tokens_per_s): tokens/s per GPU x its GPUs
        tokens = best.tokens_per_s_per_gpu * best.gpus_needed if best else None
        price = (prices or {}).get(gpu.name)
        rows.append(CompareRow(
            model=m.name, gpu=gpu.name, engine=s.engine, weights_dtype=weights_class(m, dtype),
            peak_tflops=peak,
            memory_bytes=gpu.memory_bytes, hbm_tb_s=gpu.hbm_tb_s, fits=plan.fits, meets_targets=best is not None,
            layout=f"{best.replicas} x {best.name}" if best else None, gpus=best.gpus_needed if best else None,
            batch=best.batch if best else None, max_concurrency=plan.layouts[0].max_concurrency if plan.layouts else 0,
            ttft_s=best.ttft_ms / 1e3 if best else None, tpot_s=best.tpot_ms / 1e3 if best else None, tokens_per_s=tokens,
            cost_per_million_tokens=cost_per_million_tokens(best.gpus_needed, price, tokens) if best and price is not None
            else None, verdict=plan.verdict, assumptions=plan.assumptions, price_per_gpu_hour=price, **asked,
            cost_per_million_tokens_at_rate=cost_per_million_tokens(best.gpus_needed, price, rate * output)
            if best and price is not None and rate else None,
            explain=_compare_explain(best, tokens, price, rate and rate * output),
        ))
    return rows


def _compare_explain(best: Any, tokens: float | None, price: float | None, traffic: float | None = None) -> list[str]:
    """The arithmetic of one GPU's compare row: the picked layout's serve derivation, the deployment's tokens/s and
    its cost per million output tokens (cost_per_million_tokens), flat out and, with --rate, over the traffic's
    ``traffic`` output tokens a second."""
    if best is None or tokens is None:
        return []
    lines = [*plan_explain([best]),
             f"tokens/s = tokens/s per GPU x GPUs = {best.tokens_per_s_per_gpu:,.1f} x {best.gpus_needed} = {tokens:,.0f}"]
    if price is not None:
        lines.append(f"$/M tokens = GPUs x $/GPU-hour / (tokens/s x 3,600 s/h) x 10^6 = {best.gpus_needed} x {price:g} / "
                     f"({tokens:,.1f} x 3,600) x 10^6 = {cost_per_million_tokens(best.gpus_needed, price, tokens):.4g}")
    if price is not None and traffic:
        lines.append(f"$/M tokens at the rate = GPUs x $/GPU-hour / (rate x output x 3,600 s/h) x 10^6 = "
                     f"{best.gpus_needed} x {price:g} / ({traffic:,.1f} x 3,600) x 10^6 = "
                     f"{cost_per_million_tokens(best.gpus_needed, price, traffic):.4g}")
    return lines
