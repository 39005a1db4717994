"""The `latency` answer as a view of the serving model: a static batch of identical requests, each
phase one engine step (calc.serving.step). Whether the batch fits is calc.serving.capacity's answer.
"""

from __future__ import annotations

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.hardware.calibration import Calibration
from calc.hardware.peaks import peak_tflops, ridge_point
from calc.memory.weights import WeightsDtype, weights_class, weights_per_gpu
from calc.model.parallel import check_layout, check_num_gpus, inference_layout
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions
from calc.serving.engine_memory import resolve_kv_dtype
from calc.serving.moe import attention_ranks
from calc.serving.step import (
    StepTime,
    attention_dtype,
    calibrated_gpu,
    decode_context,
    decode_range,
    pipelined,
    prompt_chunks,
    request_seconds,
    step_time,
)
from calc.serving.weights import weight_format
from calc.serving.windows import model_as_run
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.specs.serving import check_accounting
from calc.units import TERA, abbrev, check_count, check_positive, duration, figure, human


def _reach(what: str, at_peak: float, modelled: float, target: float | None) -> str:
    """One target's line: the time ``what`` needs at 100% of peak (``at_peak``, the floor no engine beats) beside the
    modelled time, and whether the target is reachable: not even at peak, only at a share of peak the model does not
    reach (at_peak / target, against at_peak / modelled), or reached. '' without a target."""
    if target is None:
        return ""
    if at_peak > target:
        reach = "not reachable on these GPUs even at 100% of peak"
    elif modelled > target:
        reach = (f"reachable only at >= {at_peak / target:.0%} of peak; the model reaches {at_peak / modelled:.0%} "
                 "(GEMM efficiency, attention, communication and step overhead)")
    else:
        reach = "reachable"
    return f"{what} needs >= {duration(at_peak)} at 100% of peak ({duration(modelled)} modelled): {duration(target)} is {reach}"


def serving_plan(m: ModelSpec, num_gpus: int, tp: int | None, pp: int) -> Parallelism:
    """TP x PP of one replica: TP = GPUs / PP unless --tp is given; GPUs alone that TP cannot split (12 for 128 heads)
    take the layout `memory --num-gpus` places (calc.model.parallel.inference_layout: TP 4 x PP 3); name the flag the
    user typed."""
    check_num_gpus(num_gpus)
    if pp < 1:
        raise LLMCalcError("--pp", f"must be >= 1, got {pp}")
    if tp is None:
        if num_gpus % pp:
            raise LLMCalcError("--pp", f"{pp} does not divide --num-gpus {num_gpus}")
        try:
            return check_layout(m, Parallelism(tp=num_gpus // pp, pp=pp))
        except LLMCalcError as exc:
            if exc.field == "--pp":  # the pipeline stages the user typed are what does not fit the layers
                raise
            if pp == 1 and (layout := inference_layout(m, num_gpus)) is not None:
                return layout
            raise LLMCalcError("--num-gpus", f"serving uses TP = GPUs (or a TP of a node x PP 2, 3, 4 or 8), and "
                                             f"{exc.problem}") from None
    if tp < 1:
        raise LLMCalcError("--tp", f"must be >= 1, got {tp}")
    if num_gpus not in (1, tp * pp):
        raise LLMCalcError("--tp", f"--tp x --pp = {tp * pp} is not --num-gpus {num_gpus}; give one or the other")
    return check_layout(m, Parallelism(tp=tp, pp=pp))


def expert_plan(m: ModelSpec, num_gpus: int, tp: int | None, pp: int, ep: int) -> Parallelism:
    """The TP group of an expert-parallel replica, as `serve` lays it out (calc.serving.moe): the experts split over
    EP GPUs, the attention run by EP / TP data-parallel groups of TP ranks (vLLM ``--data-parallel-size EP/TP
    --enable-expert-parallel``, SGLang ``--enable-dp-attention --ep-size EP``), one pipeline stage. TP defaults to 1
    (one attention group per GPU, as DeepSeek-V3's decode deployment runs), GPUs to EP."""
    if m.moe is None:
        raise LLMCalcError("--ep", f"{m.name} has no experts; expert parallelism needs a MoE model")
    if ep < 2:
        raise LLMCalcError("--ep", f"must be >= 2 for an expert-parallel layout (1: none), got {ep}")
    if pp != 1:
        raise LLMCalcError("--pp", "an expert-parallel layout runs one pipeline stage (data-parallel attention + EP, as "
                                   "serve prices it); drop --pp or --ep")
    tp = tp or 1
    if ep % tp:
        raise LLMCalcError("--ep", f"EP {ep} is not a multiple of --tp {tp}: EP = data-parallel attention groups x TP")
    if m.moe.num_experts % ep:
        raise LLMCalcError("--ep", f"EP {ep} does not divide {m.name}'s {m.moe.num_experts} routed experts")
    if num_gpus not in (1, ep):
        raise LLMCalcError("--num-gpus", f"{num_gpus} is not --ep {ep}: an expert-parallel replica spans EP GPUs "
                                         f"({ep // tp} attention groups x TP {tp}); give one or make them agree")
    return check_layout(m, Parallelism(tp=tp, pp=1))


class LatencyResult(BaseModel):
    model: str
    gpu: str
    num_gpus: int
    tp: int
    pp: int
    batch: int
    prompt: int
    output: int
    dtype: str
    weights_dtype: WeightsDtype = ""
    kv_dtype: str = ""  # the KV cache's dtype (concurrency's and serve's key)
    weights_bytes: int = 0  # the whole model's weights as priced (concurrency's and memory's key)
    weights_bytes_per_gpu: int = 0  # the busiest GPU's (calc.memory.weights.weights_per_gpu)
    ep: int = 1  # expert parallelism over ep GPUs, the attention in ep / tp data-parallel groups (expert_plan); 1: none
    efficiency_source: str
    compute_efficiency: float
    memory_efficiency: float
    ridge_point_flops_per_byte: float
    prefill_flops: float
    prefill_bytes: float
    prefill_intensity: float
    prefill_compute_s: float
    prefill_memory_s: float
    prefill_comm_s: float
    ttft_s: float
    prefill_bound: str
    prefill_steps: int = 1  # the engine's chunked-prefill steps the B x P prompt tokens run in (chunk_tokens), every micro-batch's
    decode_flops_per_step: float
    decode_bytes_per_step: float
    decode_intensity: float
    decode_compute_s: float
    decode_memory_s: float
    decode_comm_s: float
    tpot_s: float
    decode_bound: str
    step_overhead_s: float
    decode_step_overhead_s: float | None = None  # a decode step's share under multi-step scheduling; None: step_overhead_s
    step_overhead_per_seq_s: float = 0.0  # added to a step's overhead per sequence it holds (calc.serving.step.step_overhead)
    prefill_overhead_s: float = 0.0  # host overhead inside TTFT: every prefill step's fixed + per-sequence part
    decode_overhead_s: float = 0.0  # host overhead inside one TPOT step
    prefill_routing_s: float = 0.0  # MoE router / top-k / permute kernels inside TTFT (calc.serving.step.moe_routing_s)
    decode_routing_s: float = 0.0  # ... inside one TPOT step
    tokens_per_s: float  # the batch's output tokens over its whole life, prefill included: B x O / e2e (as serve, compare)
    decode_tokens_per_s: float  # while decoding: B / TPOT
    e2e_s: float
    ttft_at_full_peak_s: float
    fits: bool = True  # False: the engine's KV cache cannot hold the batch (the CLI then exits 2)
    max_concurrency: int | None = None  # requests the engine's KV cache admits (set by the CLI's fit check): the fit verdict
    engine: str | None = None  # --engine, as concurrency names it (set with max_concurrency): its family picks the band
    max_model_len: int | None = None  # the engine's --max-model-len as launched (given, else prompt + output; set by the CLI)
    # vLLM's logged "Maximum concurrency for {max_model_len} tokens per request" (concurrency's figure at that length):
    # set only when --max-model-len is given, beside max_concurrency (requests of this prompt + output)
    max_concurrency_at_max_model_len: int | None = None
    target_ttft_s: float | None = None  # --ttft-ms, in seconds; None: no target given
    target_tpot_s: float | None = None  # --tpot-ms, in seconds; None: no target given
    tpot_at_full_peak_s: float  # one decode step at 100% of peak and of HBM bandwidth: max(FLOPs / peak, bytes / bandwidth)
    # TTFT <= its target and TPOT <= its target, for the targets given (serve's key for the same check); None: none given
    meets_targets: bool | None = None
    verdict: str
    assumptions: list[str]  # every assumption the answer rests on, as `serve` and `concurrency` list them
    explain: list[str]


def latency(
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int = 1, batch: int = 1, prompt: int = 1024, output: int = 128,
    dtype: str | None = "bf16", kv_dtype: str | None = None, causal: bool = True, calibration: Calibration | None = None,
    target_ttft_s: float | None = None, tp: int | None = None, pp: int = 1, target_tpot_s: float | None = None,
    assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS, chunk_tokens: int | None = None,
    accounting: str = "vllm-v1", ep: int = 1,
) -> LatencyResult:
    """A static batch of B identical requests (as TensorRT-LLM / vLLM benchmark_latency run it):
    TTFT = the prefill of B x P tokens; TPOT = one decode step of B sequences at the mean
    context P + T/2 (calc.serving.step); e2e = TTFT + (T - 1) x TPOT. TP = GPUs unless --tp/--pp.
    ``chunk_tokens``: the engine's token budget per step when it chunks prefill (EngineMemory.batched_tokens of a
    chunked engine: vLLM V1, SGLang, TensorRT-LLM's max_num_tokens): the B x P tokens then run in ceil(B x P / C)
    steps of C tokens (each re-reading the weights, each with its step overhead, every token still attending its
    mean context), as `serve` prices a prompt's chunks; None: one step.
    ``dtype`` None: weights as the checkpoint ships them (calc.serving.weights). ``accounting``: the engine whose "auto"
    KV dtype applies when ``kv_dtype`` is None (EngineSettings.accounting; calc.serving.engine_memory.resolve_kv_dtype).
    ``ep`` > 1: an expert-parallel replica of ep GPUs (expert_plan): the batch split evenly over its d = ep / tp
    data-parallel attention groups, each prefilling and decoding its ceil(B / d) requests in lockstep with the others
    (the MoE layers' all-to-all joins them every layer, calc.serving.step), so TTFT and TPOT are one group's."""
    for flag, value in (("--batch", batch), ("--prompt", prompt), ("--num-gpus", num_gpus), ("--ep", ep)):
        check_count(value, flag)
    if chunk_tokens is not None:
        check_count(chunk_tokens, "--max-num-batched-tokens")
    for flag, target in (("--ttft-ms", target_ttft_s), ("--tpot-ms", target_tpot_s)):
        if target is not None:
            check_positive(target, flag)
    check_accounting(accounting)
    if isinstance(output, bool) or not isinstance(output, int) or output < 1:  # e2e = TTFT + (T - 1) x TPOT would come out below TTFT
        raise LLMCalcError("--output", "needs >= 1 generated token per request (the prefill makes the first: --output 1 is TTFT alone)")
    m = model_as_run(m, assumptions.attention_windows)  # the windows the engine applies (calc.serving.windows)
    plan = expert_plan(m, num_gpus, tp, pp, ep) if ep > 1 else serving_plan(m, num_gpus, tp, pp)
    ranks = attention_ranks(plan.tp, ep)  # data-parallel attention groups (1 without EP)
    fmt = weight_format(m, gpu, dtype)
    # the KV cache the engine stores (auto: the activation dtype, 16-bit for fp8 / int weights; fp8 only when asked),
    # read at that width: the capacity (engine_memory) and serve's steps use the same (calc.serving.engine_memory)
    kv_dtype = resolve_kv_dtype(kv_dtype, fmt.act_dtype, m.checkpoint_dtype, m, accounting)
    gpu_run, hook, eff = calibrated_gpu(gpu, fmt.compute_dtype, calibration, assumptions)
    a = assumptions
    peak = peak_tflops(gpu, fmt.compute_dtype) * TERA
    bandwidth = gpu.hbm_tb_s * TERA
    # PP: the batch enters as n = min(B, p) micro-batches of whole sequences (one prompt is not split across them);
    # EP: each of the d attention groups runs ceil(B / d) of them
    group = -(-batch // ranks)
    n_micro = min(group, plan.pp)
    # whole sequences per micro-batch (one prompt is not split across them): the first group % n hold one more
    small, extra = divmod(group, n_micro)
    sizes = [(count, seqs) for count, seqs in ((extra, small + 1), (n_micro - extra, small)) if count]

    def prefill(n: int) -> StepTime:
        return step_time(m, gpu_run, a, tp=plan.tp, pp=plan.pp, dtype=dtype, kv_dtype=kv_dtype, calibration=hook,
                         prefill_tokens=n, prefill_prompt=prompt, prefill_causal=causal,
                         prefill_seqs=max(round(n / prompt), 1), ep=ep)

    def chunk_steps(seqs: int) -> list[tuple[int, StepTime]]:
        """A micro-batch of ``seqs`` prompts as the engine steps it: full chunks of its token budget, then the rest."""
        return [(n, prefill(tokens)) for n, tokens in prompt_chunks(seqs * prompt, chunk_tokens)]

    steps = {seqs: chunk_steps(seqs) for _, seqs in sizes}
    biggest = sizes[0][1]
    pre = _steps(steps[biggest])  # the largest micro-batch through every layer: the explain's step
    n_steps = sum(n for n, _ in steps[biggest])
    items = [(count * n, st) for count, seqs in sizes for n, st in steps[seqs]]  # every chunk step of every micro-batch
    mid = decode_context(prompt, output)
    micro = -(-group // plan.pp)  # the largest decode micro-batch: a token of each of its sequences crosses every stage
    dec = step_time(m, gpu_run, a, tp=plan.tp, pp=plan.pp, dtype=dtype, kv_dtype=kv_dtype, calibration=hook,
                    decode_seqs=micro, decode_context=mid, decode_contexts=decode_range(prompt, output), ep=ep)
    # PP: chunk steps flow through p stages, each stage taking a step's traversal / p; the last leaves after every
    # step has crossed the first stage and the longest has crossed the other p - 1 (a flow shop of identical stages):
    # TTFT = (sum of steps + (p - 1) x the longest step) / p; n equal micro-batches of k equal steps: pre x (p + nk - 1)/(pk)
    ttft, tpot = pipelined([st.total_s for _, st in items], [n for n, _ in items], plan.pp), dec.total_s
    e2e = request_seconds(ttft, tpot, output)
    ridge = ridge_point(gpu, fmt.compute_dtype)
    # the prefill at 100% of peak, pipelined as the TTFT is: its GEMMs at the weights' compute dtype, its attention
    # at the dtype attention runs in (16-bit unless the KV cache is fp8: an fp8 or fp4 checkpoint does not make the
    # attention faster); FLOPs per GPU of a TP group
    attn_peak = peak_tflops(gpu, attention_dtype(fmt.act_dtype, kv_dtype, gpu)) * TERA
    at_peak = pipelined([(st.flops - st.attention_flops) / peak + st.attention_flops / attn_peak for _, st in items],
                         [n for n, _ in items], plan.pp)
    # one decode step at 100% of peak and of HBM bandwidth (no overhead, no communication): the floor of any TPOT
    tpot_peak = max((dec.flops - dec.attention_flops) / peak + dec.attention_flops / attn_peak, dec.bytes_read / bandwidth)
    verdict = f"TTFT {ttft * 1e3:,.0f} ms ({pre.bound}-bound), TPOT {tpot * 1e3:,.1f} ms ({dec.bound}-bound), " \
              f"{batch / tpot:,.0f} tokens/s decode"
    reached = [_reach("prefill", at_peak, ttft, target_ttft_s), _reach("a decode step", tpot_peak, tpot, target_tpot_s)]
    if any(reached):
        verdict = "; ".join(r for r in reached if r)
    meets = None if target_ttft_s is None and target_tpot_s is None else \
        (target_ttft_s is None or ttft <= target_ttft_s) and (target_tpot_s is None or tpot <= target_tpot_s)
    gpus = plan.tp * plan.pp * ranks
    assumption_lines = [fmt.line, eff.source, *a.lines(moe=m.moe is not None, split=gpus > 1,
                                                       chunked="chunked" in (m.layer_types or ()))]
    if ep > 1:
        assumption_lines.append(
            f"expert parallelism EP {ep}: experts / {ep} a GPU, attention in {ranks} data-parallel groups of TP "
            f"{plan.tp}; the {batch:,} requests spread over them, the busiest group runs {group:,}, and the groups step "
            f"in lockstep (the MoE all-to-all joins them every layer), so each step is timed as {ranks} groups of "
            f"{group:,} (the experts' tokens {ranks} x {group:,})"
            + (f"; {ranks * group - batch:,} request slots idle, priced as busy (vLLM's idle DP ranks run dummy steps)"
               if ranks * group > batch else ""))
    # a library call without the engine's capacity check (the CLI's `latency` sets fits from it): the weights alone
    # over the GPU's memory is a deployment that does not fit, never one with a time
    weights = weights_per_gpu(m, dtype, plan.tp, plan.pp, ranks)
    unfit = {"fits": False, "verdict": f"does not fit: {weights / 2**30:,.2f} GiB of weights a GPU on {gpus} "
                                       f"x {gpu.name} ({gpu.cuda_total_bytes / 2**30:,.2f} GiB each)"} \
        if weights > gpu.cuda_total_bytes else {}
    return LatencyResult(
        model=m.name, gpu=gpu.name, num_gpus=gpus if ep > 1 else num_gpus, tp=plan.tp, pp=plan.pp, ep=ep, batch=batch,
        prompt=prompt, output=output,
        dtype=fmt.label, kv_dtype=kv_dtype, weights_bytes=weights_per_gpu(m, dtype), weights_bytes_per_gpu=weights,
        weights_dtype=weights_class(m, dtype), efficiency_source=eff.source, compute_efficiency=eff.compute, memory_efficiency=eff.memory,
        ridge_point_flops_per_byte=ridge,
        prefill_flops=pre.flops, prefill_bytes=pre.bytes_read, prefill_intensity=pre.flops / pre.bytes_read,
        prefill_compute_s=pre.compute_s, prefill_memory_s=pre.memory_s, prefill_comm_s=pre.comm_s, ttft_s=ttft,
        prefill_bound=pre.bound, prefill_steps=sum(n for n, _ in items),
        decode_flops_per_step=dec.flops, decode_bytes_per_step=dec.bytes_read, decode_intensity=dec.flops / dec.bytes_read,
        decode_compute_s=dec.compute_s, decode_memory_s=dec.memory_s, decode_comm_s=dec.comm_s, tpot_s=tpot,
        decode_bound=dec.bound, step_overhead_s=a.step_overhead_s,
        decode_step_overhead_s=a.step_overhead_s / a.scheduler_steps if a.scheduler_steps > 1 else None,
        step_overhead_per_seq_s=a.step_overhead_per_seq_s, prefill_overhead_s=pre.overhead_s, decode_overhead_s=dec.overhead_s,
        prefill_routing_s=pre.routing_s, decode_routing_s=dec.routing_s,
        tokens_per_s=batch * output / e2e, decode_tokens_per_s=batch / tpot, e2e_s=e2e, ttft_at_full_peak_s=at_peak,
        target_ttft_s=target_ttft_s, target_tpot_s=target_tpot_s, tpot_at_full_peak_s=tpot_peak, meets_targets=meets,
        assumptions=assumption_lines, **({"verdict": verdict} | unfit),
        explain=[
            f"ridge point = peak/bandwidth = {human(peak, 'FLOP/s', 4)} / {human(bandwidth, 'B/s', 4)} = {ridge:.0f} FLOPs/byte",
            _step_line(f"prefill {biggest} x {prompt} tokens" + (f" on each of {ranks} attention groups" if ranks > 1 else "")
                       + (f" (the largest of {n_micro} micro-batches of whole sequences: "
                          + ", ".join(f"{c} x {q}" for c, q in sizes) + ")" if n_micro > 1 else "") + (
                f" in {n_steps} chunked steps of <= {max(st.tokens for _, st in steps[biggest]):,} tokens (the engine's "
                "tokens per step), summed" if n_steps > 1 else ""), pre, plan.pp),
            _step_line(f"decode {micro} sequences at context {mid}" + (" a group" if ranks > 1 else ""), dec, plan.pp),
            (f"TTFT = (sum of the {sum(n for n, _ in items)} prefill steps of every micro-batch + (p - 1) x the longest) / p = "
             f"{ttft * 1e3:.2f} ms (p = {plan.pp} stages: the last step leaves once every step has crossed the first "
             "stage and the longest the rest); " if plan.pp > 1 or len(items) > 1 or items[0][0] > 1 else
             f"TTFT = prefill step = {ttft * 1e3:.2f} ms; ")
            + f"TPOT = {tpot * 1e3:.3f} ms; e2e = TTFT + ({output} - 1) x TPOT = {e2e:.4f} s",
            f"at 100% of peak the prefill alone takes {at_peak:.4f} s",
        ] + [f"assumption: {line}" for line in assumption_lines],
    )


def _steps(steps: list[tuple[int, StepTime]]) -> StepTime:
    """Several prefill steps (count, step) as one: their times, FLOPs and bytes summed; the bound of the longest."""
    steps = [(n, st) for n, st in steps if n]
    total = {key: sum(n * getattr(st, key) for n, st in steps)
             for key in ("tokens", "flops", "bytes_read", "gemm_s", "compute_s", "memory_s", "comm_s", "overhead_s",
                         "total_s", "launch_s", "attention_s", "attention_flops", "routing_s")}
    longest = max(steps, key=lambda item: item[0] * item[1].total_s)[1]
    return longest.model_copy(update=total)


def _ms(seconds: float) -> str:
    """Milliseconds to three decimals, one from 100 ms on (never more digits than the model is sure of)."""
    return figure(seconds * 1e3, 3 if seconds < 0.1 else 1)


def _step_line(label: str, st: StepTime, pp: int) -> str:
    """One step's derivation whose terms add up: forward = weight GEMMs + attention + routing + communication, step =
    forward (or, eager, the host's launches when longer) + overhead; the compute / memory split that names the bound
    (GEMM time beyond streaming the weights plus attention compute, against weight and KV reads) beside it. Under
    PP the step crosses every stage, so its FLOPs and bytes are one TP rank's summed over the ``pp`` stages (each GPU
    holds one stage's share)."""
    forward = st.gemm_s + st.attention_s + st.routing_s + st.comm_s
    routing = f" + MoE routing {_ms(st.routing_s)} ms" if st.routing_s else ""
    per = "/GPU" if pp == 1 else f" per TP rank over the {pp} stages"
    return (f"{label}: FLOPs{per} {abbrev(st.flops, digits=4)}, bytes{per} {human(st.bytes_read, 'B', 4)}; weight GEMMs "
            f"(shape by shape) {_ms(st.gemm_s)} ms + attention {_ms(st.attention_s)} ms (the longer of its compute and "
            f"its KV read){routing} + TP / PP communication {_ms(st.comm_s)} ms = forward {_ms(forward)} ms; "
            + (f"eager: host kernel launches {_ms(st.launch_s)} ms, step = overhead + max(forward, launches) = "
               if st.launch_s else f"step = forward + overhead {st.overhead_s * 1e3:.2f} ms = ")
            + f"{_ms(st.total_s)} ms; {st.bound}-bound (compute beyond weight streaming + attention compute "
            f"{_ms(st.compute_s)} ms, weight + KV reads {_ms(st.memory_s)} ms)")
