"""The `latency` and `concurrency` answers as views of the serving model.

latency: a static batch of identical requests, each phase one engine step (calc.serving.step).
concurrency: the KV cache the engine allocates (calc.serving.engine_memory) divided by the whole
blocks one request of max_tokens occupies.
"""

from __future__ import annotations

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.hardware.calibration import Calibration
from calc.hardware.peaks import peak_tflops, ridge_point
from calc.model.parallel import check_layout, check_num_gpus
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions
from calc.serving.engine_memory import engine_memory, request_kv_bytes
from calc.serving.step import StepTime, calibrated_gpu, decode_context, prefill_span, step_time
from calc.serving.weights import weight_format
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.specs.serving import EngineSettings
from calc.units import GIB, TERA


def serving_plan(m: ModelSpec, num_gpus: int, tp: int | None, pp: int) -> Parallelism:
    """TP x PP of one replica: TP = GPUs / PP unless --tp is given; name the flag the user typed."""
    check_num_gpus(num_gpus)
    if pp < 1:
        raise LLMCalcError("--pp", f"must be >= 1, got {pp}")
    if tp is None:
        if num_gpus % pp:
            raise LLMCalcError("--pp", f"{pp} does not divide --num-gpus {num_gpus}")
        try:
            return check_layout(m, Parallelism(tp=num_gpus // pp, pp=pp))
        except LLMCalcError as exc:
            raise LLMCalcError("--num-gpus", f"serving uses TP = GPUs, and {exc.problem}") from None
    if tp < 1:
        raise LLMCalcError("--tp", f"must be >= 1, got {tp}")
    if num_gpus not in (1, tp * pp):
        raise LLMCalcError("--tp", f"--tp x --pp = {tp * pp} is not --num-gpus {num_gpus}; give one or the other")
    return check_layout(m, Parallelism(tp=tp, pp=pp))


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
    decode_flops_per_step: float
    decode_bytes_per_step: float
    decode_intensity: float
    decode_compute_s: float
    decode_memory_s: float
    decode_comm_s: float
    tpot_s: float
    decode_bound: str
    step_overhead_s: float
    tokens_per_s: float
    e2e_s: float
    ttft_at_full_peak_s: float
    fits: bool = True  # False: the engine's KV cache cannot hold the batch (the CLI then exits 2)
    verdict: str
    explain: list[str]


def latency(
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int = 1, batch: int = 1, prompt: int = 1024, output: int = 128,
    dtype: str | None = "bf16", kv_dtype: str | None = None, causal: bool = True, calibration: Calibration | None = None,
    target_ttft_s: float | None = None, tp: int | None = None, pp: int = 1,
    assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS,
) -> LatencyResult:
    """A static batch of B identical requests (as TensorRT-LLM / vLLM benchmark_latency run it):
    TTFT = one step prefilling B x P tokens; TPOT = one decode step of B sequences at the mean
    context P + T/2 (calc.serving.step); e2e = TTFT + (T - 1) x TPOT. TP = GPUs unless --tp/--pp.
    ``dtype`` None: weights as the checkpoint ships them (calc.serving.weights)."""
    if output < 1:  # e2e = TTFT + (T - 1) x TPOT would come out below TTFT
        raise LLMCalcError("--output", "needs >= 1 generated token per request (the prefill makes the first: --output 1 is TTFT alone)")
    plan = serving_plan(m, num_gpus, tp, pp)
    fmt = weight_format(m, gpu, dtype)
    gpu_run, hook, eff = calibrated_gpu(gpu, fmt.compute_dtype, calibration)
    a = assumptions
    peak = peak_tflops(gpu, fmt.compute_dtype) * TERA
    bandwidth = gpu.hbm_tb_s * TERA
    span = prefill_span(prompt, causal)
    # PP: the batch enters as n = min(B, p) micro-batches of whole sequences (one prompt is not split across them)
    n_micro = min(batch, plan.pp)
    pre = step_time(m, gpu_run, a, tp=plan.tp, pp=plan.pp, dtype=dtype, kv_dtype=kv_dtype, calibration=hook,
                    prefill_tokens=batch * prompt // n_micro or 1, prefill_context=span, prefill_seqs=max(batch // n_micro, 1))
    mid = decode_context(prompt, output)
    micro = max(batch // plan.pp, 1)
    dec = step_time(m, gpu_run, a, tp=plan.tp, pp=plan.pp, dtype=dtype, kv_dtype=kv_dtype, calibration=hook,
                    decode_seqs=micro, decode_context=mid)
    # PP: the last of n micro-batches leaves (p + n - 1) stage times (traversal / p) after the first enters
    ttft, tpot = pre.total_s * (plan.pp + n_micro - 1) / plan.pp, dec.total_s
    ridge = ridge_point(gpu, fmt.compute_dtype)
    # pre.flops: one micro-batch through every layer, per GPU of a TP group; pipelined as the TTFT is
    at_peak = pre.flops / peak * (plan.pp + n_micro - 1) / plan.pp
    verdict = f"TTFT {ttft * 1e3:,.0f} ms ({pre.bound}-bound), TPOT {tpot * 1e3:,.1f} ms ({dec.bound}-bound), " \
              f"{batch / tpot:,.0f} tokens/s decode"
    if target_ttft_s is not None:
        if at_peak > target_ttft_s:
            reach = "not reachable on these GPUs even at 100% of peak"
        elif ttft > target_ttft_s:
            reach = (f"reachable only at >= {at_peak / target_ttft_s:.0%} of peak over the prefill; the model reaches "
                     f"{at_peak / ttft:.0%} (GEMM efficiency, attention, communication and step overhead)")
        else:
            reach = "reachable"
        verdict = (f"prefill needs >= {at_peak:.2f} s at 100% of peak ({ttft:.2f} s modelled): "
                   f"{target_ttft_s * 1e3:.0f} ms is {reach}")
    return LatencyResult(
        model=m.name, gpu=gpu.name, num_gpus=num_gpus, tp=plan.tp, pp=plan.pp, batch=batch, prompt=prompt, output=output,
        dtype=fmt.label, efficiency_source=eff.source, compute_efficiency=eff.compute, memory_efficiency=eff.memory,
        ridge_point_flops_per_byte=ridge,
        prefill_flops=pre.flops, prefill_bytes=pre.bytes_read, prefill_intensity=pre.flops / pre.bytes_read,
        prefill_compute_s=pre.compute_s, prefill_memory_s=pre.memory_s, prefill_comm_s=pre.comm_s, ttft_s=ttft,
        prefill_bound=pre.bound,
        decode_flops_per_step=dec.flops, decode_bytes_per_step=dec.bytes_read, decode_intensity=dec.flops / dec.bytes_read,
        decode_compute_s=dec.compute_s, decode_memory_s=dec.memory_s, decode_comm_s=dec.comm_s, tpot_s=tpot,
        decode_bound=dec.bound, step_overhead_s=a.step_overhead_s,
        tokens_per_s=batch / tpot, e2e_s=ttft + (output - 1) * tpot, ttft_at_full_peak_s=at_peak,
        verdict=verdict,
        explain=[
            f"ridge point = peak/bandwidth = {peak:.4g}/{bandwidth:.4g} = {ridge:.0f} FLOPs/byte",
            _step_line(f"prefill {batch} x {prompt} tokens", pre, plan.tp),
            _step_line(f"decode {micro} sequences at context {mid}", dec, plan.tp),
            f"TTFT = prefill step x (p + n - 1)/p = {ttft * 1e3:.2f} ms (p = {plan.pp} stages, n = {n_micro} micro-batches); "
            f"TPOT = {tpot * 1e3:.3f} ms; e2e = TTFT + ({output} - 1) x TPOT = "
            f"{(ttft + (output - 1) * tpot):.4f} s",
            f"at 100% of peak the prefill alone takes {at_peak:.4f} s",
        ] + [f"assumption: {line}" for line in [fmt.line, eff.source, *a.lines()]],
    )


def _step_line(label: str, st: StepTime, tp: int) -> str:
    return (f"{label}: FLOPs/GPU {st.flops:.4g}, bytes/GPU {st.bytes_read:.4g}; weight GEMMs (shape by shape) "
            f"{st.gemm_s * 1e3:.3f} ms of which compute beyond weight streaming {st.compute_s * 1e3:.3f} ms, memory "
            f"{st.memory_s * 1e3:.3f} ms; TP all-reduces {st.comm_s * 1e3:.3f} ms; overhead {st.overhead_s * 1e3:.2f} ms; "
            f"step = {st.total_s * 1e3:.3f} ms ({st.bound}-bound)")


class ConcurrencyRow(BaseModel):
    max_tokens: int
    kv_cache_bytes_per_request: int
    max_concurrency: int


class ConcurrencyResult(BaseModel):
    model: str
    gpu: str
    num_gpus: int
    tp: int
    pp: int
    engine: str
    dtype: str
    kv_dtype: str
    max_tokens: int
    capacity_bytes: int
    weights_bytes: int
    reserve_bytes: int
    activation_bytes: int
    free_bytes: int
    kv_cache_bytes_per_request: int
    kv_cache_tokens: int
    num_gpu_blocks: int
    block_size: int
    kv_block_bytes: int
    max_concurrency: int
    shortfall_bytes: int
    engine_log: list[str]
    table: list[ConcurrencyRow]
    assumptions: list[str]
    verdict: str
    explain: list[str]


CONTEXT_TABLE = (1024, 2048, 4096, 8192, 16384, 32768)


def concurrency(
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int = 1, max_tokens: int = 4096, dtype: str | None = "bf16",
    kv_dtype: str | None = None, settings: EngineSettings | None = None, tp: int | None = None, pp: int = 1,
    shared_prefix: int = 0, assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS,
) -> ConcurrencyResult:
    """Requests of ``max_tokens`` (input + output) the engine's KV cache admits at once: the engine's
    own accounting (calc.serving.engine_memory), totals over the replica's TP x PP GPUs. ``dtype`` None:
    weights as the checkpoint ships them."""
    plan = serving_plan(m, num_gpus, tp, pp)
    s = settings or EngineSettings()
    if s.max_model_len is None:  # the question is "requests of max_tokens": the engine's limit is that
        s = s.model_copy(update={"max_model_len": max_tokens})
    mem = engine_memory(m, gpu, settings=s, tp=plan.tp, pp=plan.pp, dtype=dtype, kv_dtype=kv_dtype,
                        tokens_per_request=max_tokens, shared_prefix=shared_prefix, assumptions=assumptions)
    n = plan.tp * plan.pp
    blocks = mem.num_gpu_blocks

    def row(tokens: int) -> ConcurrencyRow:
        per = request_kv_bytes(m, tokens, mem)
        return ConcurrencyRow(max_tokens=tokens, kv_cache_bytes_per_request=per * n,
                              max_concurrency=blocks * mem.block_bytes // per if per else 0)

    kv_request = mem.kv_bytes_per_request * n
    count = mem.max_concurrency
    if count > 0:
        verdict = f"{count} concurrent requests of {max_tokens:,} tokens fit on {n} x {gpu.name} ({mem.kv_cache_tokens:,} KV tokens)"
    elif mem.kv_budget_bytes < 0:
        more = smallest_fitting_gpus(m, gpu, s, dtype, kv_dtype, max_tokens, assumptions)
        verdict = (f"0 requests: weights and engine reserves exceed {n} x {gpu.name} by {-mem.kv_budget_bytes / GIB:.2f} GiB "
                   f"per GPU; needs >= {more or 'more than 64'} GPUs")
    else:
        verdict = (f"0 requests: the KV cache holds {mem.kv_cache_tokens:,} tokens, less than one request of {max_tokens:,}")
    return ConcurrencyResult(
        model=m.name, gpu=gpu.name, num_gpus=n, tp=plan.tp, pp=plan.pp, engine=mem.engine, dtype=mem.dtype,
        kv_dtype=mem.kv_dtype, max_tokens=max_tokens, capacity_bytes=mem.capacity_bytes * n,
        weights_bytes=mem.weights_bytes * n, reserve_bytes=(mem.capacity_bytes - mem.usable_bytes + mem.non_torch_bytes) * n,
        activation_bytes=mem.activation_peak_bytes * n, free_bytes=mem.kv_budget_bytes * n,
        kv_cache_bytes_per_request=kv_request, kv_cache_tokens=mem.kv_cache_tokens, num_gpu_blocks=blocks,
        block_size=mem.block_size, kv_block_bytes=mem.block_bytes * n,
        max_concurrency=count, shortfall_bytes=max(-mem.kv_budget_bytes, 0) * n, engine_log=mem.log,
        table=[row(t) for t in CONTEXT_TABLE if t <= mem.max_model_len], assumptions=mem.assumptions,
        verdict=verdict, explain=mem.explain,
    )


def batch_fit_problem(
    m: ModelSpec, gpu: GPUSpec, plan: Parallelism, s: EngineSettings, dtype: str | None, kv_dtype: str | None, batch: int,
    tokens: int, assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS,
) -> str | None:
    """Fit first: why the engine's KV cache cannot hold ``batch`` requests of ``tokens`` (with the GPUs that
    would), or None when it can."""
    if s.max_model_len is None:
        s = s.model_copy(update={"max_model_len": max(tokens, m.max_position_embeddings)})
    mem = engine_memory(m, gpu, settings=s, tp=plan.tp, pp=plan.pp, dtype=dtype, kv_dtype=kv_dtype,
                        tokens_per_request=tokens, assumptions=assumptions)
    if mem.max_concurrency >= batch:
        return None
    need = smallest_fitting_gpus(m, gpu, s, dtype, kv_dtype, tokens, assumptions, batch)
    return (f"does not fit: the {mem.engine} KV cache on {plan.tp * plan.pp} x {gpu.name} holds "
            f"{mem.kv_cache_tokens:,} tokens = {mem.max_concurrency} requests of {tokens:,}, batch {batch} needs "
            f"more; {f'needs {need} GPUs' if need else 'no layout up to 64 GPUs fits'}")


def smallest_fitting_gpus(
    m: ModelSpec, gpu: GPUSpec, s: EngineSettings, dtype: str | None, kv_dtype: str | None, tokens: int,
    assumptions: ServingAssumptions, batch: int = 1,
) -> int | None:
    """Fewest GPUs (TP inside a node, then PP across nodes) whose KV cache holds ``batch`` requests."""
    for n in (1, 2, 4, 8, 16, 32, 64):
        tp, pp = min(n, assumptions.gpus_per_node), max(n // assumptions.gpus_per_node, 1)
        try:
            check_layout(m, Parallelism(tp=tp, pp=pp))
        except LLMCalcError:
            continue
        mem = engine_memory(m, gpu, settings=s, tp=tp, pp=pp, dtype=dtype, kv_dtype=kv_dtype, tokens_per_request=tokens,
                            assumptions=assumptions)
        if mem.max_concurrency >= batch:
            return n
    return None
