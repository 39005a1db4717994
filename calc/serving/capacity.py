"""How many requests a deployment admits: the one capacity rule of `concurrency`, `latency` (its fit
check), `serve`, `report` and `compare`.

The engine's KV cache (calc.serving.engine_memory: vLLM's or SGLang's own accounting) holds
    max concurrency = floor(KV blocks x block bytes / KV bytes of one request)
with a request of T = prompt + output tokens holding T - 1 slots in whole blocks at its longest
(engine_memory.kv_slots) and the engine launched with --max-model-len T unless one is given
(engine_memory.request_settings). A batch of B such requests fits iff B <= max concurrency.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel, Field

from calc.errors import LLMCalcError
from calc.memory.kv import kv_cache_bytes_per_token
from calc.memory.weights import WeightsDtype, weights_per_gpu
from calc.model.parallel import serving_layouts
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions
from calc.serving.engine_memory import EngineMemory, engine_memory, request_kv_bytes, request_settings
from calc.serving.hybrid_alloc import HybridPool, local_layers_cached_whole
from calc.serving.latency import expert_plan, serving_plan
from calc.serving.moe import attention_ranks
from calc.serving.shards import shard_problem
from calc.serving.windows import model_as_run
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.specs.serving import EngineSettings
from calc.units import GIB, check_count


class ConcurrencyRow(BaseModel):
    max_tokens: int
    kv_cache_bytes_per_request: int
    max_concurrency: int  # requests the KV cache holds at this length (the engine log's figure)
    max_running: int  # of those, what the scheduler runs at once: min(max_concurrency, max_num_seqs)


class ConcurrencyResult(BaseModel):
    model: str
    gpu: str
    num_gpus: int
    tp: int
    pp: int
    engine: str
    dtype: str
    weights_dtype: WeightsDtype = ""
    kv_dtype: str
    max_tokens: int
    ep: int = 1  # expert parallelism: ep GPUs, ep / tp attention groups each with its own KV cache (totals are theirs)
    capacity_bytes: int
    weights_bytes: int  # the model's weights, one copy (as `memory` and `latency` give them)
    weights_stored_bytes: int  # the weights on all the GPUs: what a TP rank or attention group keeps whole, on each
    reserve_bytes: int
    activation_bytes: int
    free_bytes: int
    kv_cache_bytes_per_request: int
    kv_cache_tokens: int
    num_gpu_blocks: int
    block_size: int
    kv_block_bytes: int
    max_concurrency: int
    window_capped: bool  # sliding-window / chunked layers hold at most their window of a request
    prefill_chunk_tokens: int | None = None  # the engine's prompt tokens per step when it chunks (EngineMemory.prefill_chunk)
    max_num_seqs: int | None = None  # the scheduler's cap on running requests (vLLM max_num_seqs, SGLang max_running_requests)
    max_running: int | None = None  # requests running at once: min(max_concurrency, max_num_seqs)
    hybrid: HybridPool | None = Field(None, exclude=True)  # vLLM V1's hybrid allocator, for the per-request rule
    shortfall_bytes: int
    engine_log: list[str]
    table: list[ConcurrencyRow]
    assumptions: list[str]
    verdict: str
    fix_flag: str | None = None  # 0 requests: the flag whose change makes it fit (concurrency_fix_flag); None when it fits
    explain: list[str]


CONTEXT_TABLE = (1024, 2048, 4096, 8192, 16384, 32768)


def concurrency(
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int = 1, max_tokens: int = 4096, dtype: str | None = "bf16",
    kv_dtype: str | None = None, settings: EngineSettings | None = None, tp: int | None = None, pp: int = 1,
    shared_prefix: int = 0, assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS, ep: int = 1,
) -> ConcurrencyResult:
    """Requests of ``max_tokens`` (input + output) the engine's KV cache admits at once: the engine's
    own accounting (calc.serving.engine_memory), totals over the replica's TP x PP GPUs. ``dtype`` None:
    weights as the checkpoint ships them. ``ep`` > 1: an expert-parallel replica of ep GPUs (calc.serving.latency.
    expert_plan), whose d = ep / tp data-parallel attention groups each keep their own KV cache and scheduler (each
    logs its own figures): the replica's tokens, requests and running cap are d x one group's."""
    check_count(max_tokens, "--max-model-len")  # tokens per request
    check_count(ep, "--ep")
    m = model_as_run(m, assumptions.attention_windows)  # the windows the engine applies (calc.serving.windows)
    plan = expert_plan(m, num_gpus, tp, pp, ep) if ep > 1 else serving_plan(m, num_gpus, tp, pp)
    s = settings or EngineSettings()
    mem = deployment_memory(m, gpu, plan, s, dtype, kv_dtype, max_tokens, assumptions, shared_prefix, ep)
    d = attention_ranks(plan.tp, ep)  # attention groups, each of one request's n GPUs
    n = plan.tp * plan.pp
    blocks = mem.num_gpu_blocks

    def row(tokens: int) -> ConcurrencyRow:  # what the engine launched with --max-model-len ``tokens`` admits: its
        # own pool, which can depend on the length (vLLM V0's profile run is max_model_len long); requests of T tokens
        # with no prefix shared (a shared prefix changes admission, not the pool)
        at = mem if tokens == max_tokens else deployment_memory(
            m, gpu, plan, s.model_copy(update={"max_model_len": tokens}), dtype, kv_dtype, tokens, assumptions, 0, ep)
        per = request_kv_bytes(m, tokens, at.kv_dtype, at.tp, at.pp, at.block_size, at.hybrid)
        held = at.num_gpu_blocks * at.block_bytes // per if per else 0
        return ConcurrencyRow(max_tokens=tokens, kv_cache_bytes_per_request=replica_kv(tokens, at, per * n),
                              max_concurrency=held * d, max_running=min(held, at.max_num_seqs) * d)

    # PP: the figures of the fullest stage admit the requests (vLLM takes the fewest blocks of any rank), but the
    # replica's totals hold each layer once: its weights, a request's KV and the pool's bytes over every layer
    # (a stage of 11 of 32 layers times 3 stages would count 33); what the lighter stages leave unused is kept back
    even = plan.pp == 1 or mem.hybrid is not None

    def replica_kv(tokens: int, at: EngineMemory, as_ranks: int) -> int:
        return as_ranks if even else request_kv_bytes(m, tokens, at.kv_dtype, at.tp, 1, at.block_size, None) * at.tp

    kv_request = replica_kv(max_tokens, mem, mem.kv_bytes_per_request * n)
    count = mem.max_concurrency * d
    gpus = n * d
    weights_total = mem.weights_bytes * gpus if even else weights_per_gpu(m, dtype, plan.tp, 1, d) * plan.tp * d
    kv_total = (mem.kv_budget_bytes * gpus if even or mem.kv_budget_bytes < 0
                else mem.kv_cache_tokens * d * kv_cache_bytes_per_token(m, mem.kv_dtype, plan.tp, 1) * plan.tp)
    assumptions_lines = mem.assumptions + ([
        f"expert parallelism EP {ep}: {d} data-parallel attention groups of TP {plan.tp}, each with its own KV cache "
        f"and scheduler (the engine log's figures are one group's); requests and KV tokens here are {d} x one group's"]
        if d > 1 else [])
    fix = None if count > 0 else concurrency_fix_flag(m, gpu, plan, s, dtype, kv_dtype, max_tokens, assumptions,
                                                      shared_prefix, mem)
    if count > 0:
        verdict = (f"{count} concurrent requests of {max_tokens:,} tokens fit on {gpus} x {gpu.name} "
                   f"({mem.kv_cache_tokens * d:,} KV tokens)")
    elif mem.kv_budget_bytes < 0:
        # EP: every group holds all of its attention and a 1/ep share of the experts; more GPUs of another TP x PP
        # layout is not the remedy there, a wider EP (or TP inside each group) is
        more = None if d > 1 else smallest_fitting_gpus(m, gpu, s, dtype, kv_dtype, max_tokens, assumptions)
        big_act = mem.activation_peak_bytes > mem.weights_bytes  # the profile run, not the weights, takes the memory
        verdict = (f"0 requests: weights and engine reserves exceed {gpus} x {gpu.name} by {-mem.kv_budget_bytes / GIB:.2f} "
                   f"GiB per GPU (activation peak of the profile run {mem.activation_peak_bytes / GIB:.2f} GiB, weights "
                   f"{mem.weights_bytes / GIB:.2f} GiB); "
                   + ("a larger --ep spreads the experts over more GPUs, a larger --tp each group's attention" if d > 1
                      else f"needs >= {more} GPUs" if more else "no count up to 64 GPUs fits")
                   + ("; a smaller --max-num-batched-tokens shrinks the profile run" if big_act else ""))
    else:  # room for some KV, not for one request this long: what a shorter context or more GPUs hold
        shorter = [r for r in (row(t) for t in CONTEXT_TABLE if t < max_tokens) if r.max_concurrency > 0]
        more = None if d > 1 else smallest_fitting_gpus(m, gpu, s, dtype, kv_dtype, max_tokens, assumptions)
        held = (f"{mem.kv_cache_tokens:,} tokens" if d == 1 else
                f"{mem.kv_cache_tokens:,} tokens in each of {d} attention groups (a request lives in one)")
        verdict = (f"0 requests: the KV cache holds {held}, less than one request of {max_tokens:,}"
                   + (f"; --max-model-len {shorter[-1].max_tokens:,} holds {shorter[-1].max_concurrency:,}" if shorter else "")
                   + (f"; {max_tokens:,} tokens fit on >= {more} GPUs" if more else "")
                   + ("; a larger --tp gives each group's cache more GPUs" if d > 1 else ""))
    return ConcurrencyResult(
        model=m.name, gpu=gpu.name, num_gpus=gpus, tp=plan.tp, pp=plan.pp, ep=ep, engine=mem.engine, dtype=mem.dtype,
        weights_dtype=mem.weights_dtype, kv_dtype=mem.kv_dtype, max_tokens=max_tokens, capacity_bytes=mem.capacity_bytes * gpus,
        weights_bytes=weights_per_gpu(m, dtype), weights_stored_bytes=weights_total,
        reserve_bytes=(mem.capacity_bytes - mem.activation_peak_bytes) * gpus - weights_total - kv_total,
        activation_bytes=mem.activation_peak_bytes * gpus, free_bytes=kv_total,
        kv_cache_bytes_per_request=kv_request, kv_cache_tokens=mem.kv_cache_tokens * d, num_gpu_blocks=blocks * d,
        block_size=mem.block_size, kv_block_bytes=mem.block_bytes * n,
        max_concurrency=count, window_capped=mem.window_capped, hybrid=mem.hybrid, prefill_chunk_tokens=mem.prefill_chunk,
        max_num_seqs=mem.max_num_seqs * d, max_running=min(mem.max_concurrency, mem.max_num_seqs) * d,
        shortfall_bytes=max(-mem.kv_budget_bytes, 0) * gpus, engine_log=mem.log,
        table=[row(t) for t in CONTEXT_TABLE if t <= mem.max_model_len], assumptions=assumptions_lines,
        verdict=verdict, fix_flag=fix, explain=mem.explain,
    )


def concurrency_fix_flag(m: ModelSpec, gpu: GPUSpec, plan: Parallelism, s: EngineSettings, dtype: str | None,
                         kv_dtype: str | None, tokens: int, assumptions: ServingAssumptions, shared_prefix: int,
                         mem: EngineMemory) -> str:
    """The flag whose change makes a deployment that admits no request of ``tokens`` admit one (``mem``: its
    deployment_memory): --max-model-len where the KV cache holds some tokens (a shorter context fits); where it holds
    none, the tokens-per-step flag the user raised (step_tokens_flag) when the engine's default tokens per step leave
    room for a request (the profile run sized by it took the memory), else --ep on an expert-parallel layout (its
    width spreads the experts), else --num-gpus."""
    if mem.kv_cache_tokens > 0:
        return "--max-model-len"
    step = step_tokens_flag(s)
    if step is not None and deployment_memory(m, gpu, plan, default_step_settings(s), dtype, kv_dtype, tokens,
                                              assumptions, shared_prefix, mem.ep).max_concurrency >= 1:
        return step
    return "--ep" if mem.ep > 1 else "--num-gpus"


def deployment_memory(
    m: ModelSpec, gpu: GPUSpec, plan: Parallelism, s: EngineSettings, dtype: str | None, kv_dtype: str | None,
    tokens: int, assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS, shared_prefix: int = 0, ep: int = 1,
) -> EngineMemory:
    """The engine's memory and admission for requests of ``tokens`` = prompt + output on one TP x PP replica (``ep``
    > 1: one data-parallel attention group of an expert-parallel replica, experts / ep a GPU): the one capacity call
    behind `concurrency`, `latency`'s fit check, `report` and `compare`."""
    return engine_memory(m, gpu, settings=request_settings(s, tokens), tp=plan.tp, pp=plan.pp, ep=ep, dtype=dtype,
                         kv_dtype=kv_dtype, tokens_per_request=tokens, shared_prefix=shared_prefix, assumptions=assumptions)


def engine_latency(m: ModelSpec, gpu: GPUSpec, plan: Parallelism, s: EngineSettings, assumptions: ServingAssumptions,
                   *, batch: int, prompt: int, output: int, dtype: str | None, kv_dtype: str | None = None,
                   mem: EngineMemory | None = None, ep: int = 1, **options: Any) -> Any:
    """A static batch timed as the engine runs it (calc.serving.latency.latency): its prompt tokens in steps of the
    engine's prefill chunk (``deployment_memory(...).prefill_chunk``, the capacity call's own; ``mem`` when the
    caller made it already; ``ep``: an expert-parallel replica's, calc.serving.latency.expert_plan) and its KV cache at
    the engine's "auto" dtype (``s.accounting()``). What `latency`
    prints and what `calibrate --from-runs` prices each run at (calc.serving.phases.phase_terms); ``options``:
    latency's others (calibration, causal, target_ttft_s)."""
    from calc.serving.latency import latency

    mem = mem or deployment_memory(m, gpu, plan, s, dtype, kv_dtype, prompt + output, assumptions, ep=ep)
    return latency(m, gpu, num_gpus=plan.tp * plan.pp * attention_ranks(plan.tp, mem.ep), tp=plan.tp, pp=plan.pp,
                   batch=batch, prompt=prompt, output=output, dtype=dtype, kv_dtype=kv_dtype, assumptions=assumptions,
                   chunk_tokens=mem.prefill_chunk, accounting=s.accounting(), ep=mem.ep, **options)


MAX_NUM_SEQS_FIX = "--max-num-seqs"


def default_step_settings(s: EngineSettings) -> EngineSettings:
    """``s`` with the engine's own tokens per step (no --max-num-batched-tokens / --chunked-prefill-size given)."""
    return s.model_copy(update={"max_num_batched_tokens": None, "chunked_prefill_size": None})


def step_tokens_flag(s: EngineSettings) -> str | None:
    """The flag that set the engine's tokens per step (its profile run's size), when the user gave one."""
    return ("--max-num-batched-tokens" if s.max_num_batched_tokens is not None
            else "--chunked-prefill-size" if s.chunked_prefill_size is not None else None)


class FitProblem(NamedTuple):
    """Why a deployment cannot admit a batch (batch_fit_problem): the refusal's ``message`` and the ``flag`` whose
    change makes it fit: MAX_NUM_SEQS_FIX where launching the engine for the batch alone fits on these GPUs, the
    tokens-per-step flag the user raised (--max-num-batched-tokens / --chunked-prefill-size) where the engine's default
    profile run fits, --ep on an expert-parallel layout, else --num-gpus."""

    message: str
    flag: str


def batch_fit_problem(
    m: ModelSpec, gpu: GPUSpec, plan: Parallelism, s: EngineSettings, dtype: str | None, kv_dtype: str | None, batch: int,
    tokens: int, assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS, mem: EngineMemory | None = None, ep: int = 1,
) -> FitProblem | None:
    """Fit first: why the engine's KV cache cannot admit ``batch`` requests of ``tokens`` (prompt + output), with
    the GPUs that would and the flag to change, or None when it can: batch <= the max concurrency `concurrency` prints
    for the same deployment. ``mem``: that deployment's deployment_memory when the caller already has it. ``ep`` > 1
    (or ``mem.ep``): an expert-parallel replica, whose d = ep / tp attention groups each admit ceil(batch / d)."""
    mem = mem or deployment_memory(m, gpu, plan, s, dtype, kv_dtype, tokens, assumptions, ep=ep)
    d = attention_ranks(plan.tp, mem.ep)
    if mem.max_concurrency * d >= batch:
        return None
    # the engine sizes its profile run (sampler logits, CUDA-graph batch sizes) for max_num_seqs sequences: launched for
    # this batch alone (`serve` launches so, --max-num-seqs in its emitted line) its KV cache may hold it here
    share, capped = -(-batch // d), None  # what one attention group runs (its own --max-num-seqs under DP)
    if s.max_num_seqs is None or s.max_num_seqs > share:
        capped = deployment_memory(m, gpu, plan, s.model_copy(update={"max_num_seqs": share}), dtype, kv_dtype, tokens,
                                   assumptions, ep=mem.ep)
    step_flag, at_default = step_tokens_flag(s), None  # a tokens-per-step the user raised sizes the profile run too
    if step_flag is not None:
        at_default = deployment_memory(m, gpu, plan, default_step_settings(s), dtype, kv_dtype, tokens, assumptions,
                                       ep=mem.ep)
    if capped is not None and capped.max_concurrency >= share:
        flag, fix = MAX_NUM_SEQS_FIX, (f"with {MAX_NUM_SEQS_FIX} {share} (the engine's profile run sized for {share} "
                                       f"sequences: {capped.kv_cache_tokens:,} KV tokens"
                                       + (" a group" if d > 1 else "") + ") it fits on these GPUs")
    elif step_flag is not None and at_default is not None and at_default.max_concurrency * d >= batch:
        flag, fix = step_flag, (f"at the engine's default tokens per step its profile run leaves "
                                f"{at_default.kv_cache_tokens:,} KV tokens" + (" a group" if d > 1 else "")
                                + f" and it fits on these GPUs: give a smaller {step_flag} or drop it")
    elif d > 1:
        flag, fix = "--ep", "a larger --ep spreads the experts over more GPUs and adds attention groups"
    else:
        other = smallest_fitting_layout(m, gpu, s, dtype, kv_dtype, tokens, assumptions, batch)
        need = None if other is None else other.tp * other.pp
        if need is not None and need <= plan.tp * plan.pp:  # another layout of these GPUs holds it
            flag, fix = "--tp", f"it fits on {need} GPUs as --tp {other.tp} --pp {other.pp}"
        else:
            flag, fix = "--num-gpus", f"needs {need} GPUs" if need else "no layout up to 64 GPUs fits"
    held = (f"{mem.kv_cache_tokens:,} tokens = {mem.max_concurrency} requests of {tokens:,}" if d == 1 else
            f"{mem.kv_cache_tokens:,} tokens = {mem.max_concurrency} requests of {tokens:,} in each of {d} attention "
            f"groups ({mem.max_concurrency * d} in all)")
    return FitProblem(f"does not fit: the {mem.engine} KV cache on {plan.tp * plan.pp * d} x {gpu.name} holds {held}, "
                      f"batch {batch} needs more; {fix}", flag)


class EngineFit(BaseModel):
    """Whether the default serving engine, launched as `latency` / `concurrency` / `serve` launch it, admits ``batch``
    requests of ``tokens`` on a layout, and the fewest GPUs on which it would (engine_fit): what `memory --mode infer`
    and `report` print beside their engine-free tensor count."""

    engine: str
    version: str
    fits: bool
    max_concurrency: int
    min_gpus: int | None
    line: str


def engine_fit(m: ModelSpec, gpu: GPUSpec, plan: Parallelism, dtype: str | None, kv_dtype: str | None, tokens: int,
               batch: int, settings: EngineSettings | None = None,
               assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS) -> EngineFit:
    """The serving engine's verdict on ``batch`` requests of ``tokens`` on ``plan`` (deployment_memory's max concurrency,
    the one capacity call of the serving commands) and its smallest fitting GPU count (smallest_fitting_gpus). The
    engine keeps back what the tensor count does not: gpu_memory_utilization's margin, its profile-run activation
    peak, non-torch memory and CUDA graphs (calc.serving.engine_memory)."""
    s = settings or EngineSettings()
    mem = deployment_memory(m, gpu, plan, s, dtype, kv_dtype, tokens, assumptions)
    # the engine refuses the checkpoint on this layout
    unloadable = shard_problem(m, dtype, plan.tp, 1, s.engine, assumptions.fp8_moe_scales)
    fits = mem.max_concurrency >= batch and unloadable is None
    need = smallest_fitting_gpus(m, gpu, s, dtype, kv_dtype, tokens, assumptions, batch)
    version = ".".join(map(str, s.version()))
    where = f"{plan.tp * plan.pp} x {gpu.name}"
    line = ((f"{mem.engine} {version} would not load it on {where}: {unloadable}" if unloadable else
             f"{mem.engine} {version} at its defaults holds {mem.max_concurrency:,} requests of {tokens:,} tokens on {where}"
             + (f": the batch of {batch:,} fits" if fits else f", not {batch:,}")) + "; "
            + (f"the fewest GPUs that hold it: {need}" if need else "no count up to 64 GPUs holds it")
            + " (latency / concurrency / serve)"
            + ("; this release caches the whole context on the local-attention layers too (no hybrid allocator for "
               "them), where the tensor count above caps them at their window"
               if local_layers_cached_whole(m, s.accounting(), s.version()) else ""))
    return EngineFit(engine=mem.engine, version=version, fits=fits, max_concurrency=mem.max_concurrency, min_gpus=need,
                     line=line)


def with_engine_fit(result: Any, m: ModelSpec, gpu: GPUSpec, plan: Parallelism, dtype: str | None, kv_dtype: str | None,
                    tokens: int, batch: int, settings: EngineSettings | None = None,
                    assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS) -> Any:
    """An engine-free inference MemoryResult with the default engine's verdict on the same batch (engine_fit) in its
    ``engine_fit``, and a warning where the two disagree; unchanged when the engine refuses the request itself (a
    request beyond the model's context, say: `latency` names that)."""
    from calc.sanity import warn
    from calc.serving.weights import load_problem

    problem = load_problem(m, gpu, dtype, (settings or EngineSettings()).engine)
    if problem is not None:  # the engine would not run it as priced: no verdict, and say why
        warn(problem[0], f"no serving engine verdict: {problem[1]}")
        return result
    try:
        fit = engine_fit(m, gpu, plan, dtype, kv_dtype, tokens, batch, settings, assumptions)
    except LLMCalcError as refusal:  # the engine refuses the request itself: no verdict, and say why
        warn(refusal.field, f"no serving engine verdict: {refusal.problem}")
        return result
    if result.fits and not fit.fits:
        warn("--num-gpus", f"the tensors fit, but {fit.line}")
    return result.model_copy(update={"engine_fit": fit.model_dump()})


def smallest_fitting_gpus(
    m: ModelSpec, gpu: GPUSpec, s: EngineSettings, dtype: str | None, kv_dtype: str | None, tokens: int,
    assumptions: ServingAssumptions, batch: int = 1,
) -> int | None:
    """Fewest GPUs whose KV cache holds ``batch`` requests, over the layouts serve searches (serving_layouts) with TP
    inside a node (TP1 x PP3 holds Llama 3 70B on 3 GPUs) that the engine loads (calc.serving.shards), up to 64 GPUs;
    None past that. At one count the widest TP
    is tried first."""
    plan = smallest_fitting_layout(m, gpu, s, dtype, kv_dtype, tokens, assumptions, batch)
    return None if plan is None else plan.tp * plan.pp


def smallest_fitting_layout(
    m: ModelSpec, gpu: GPUSpec, s: EngineSettings, dtype: str | None, kv_dtype: str | None, tokens: int,
    assumptions: ServingAssumptions, batch: int = 1,
) -> Parallelism | None:
    """The layout smallest_fitting_gpus finds (the fewest GPUs, at one count the widest TP first), or None."""
    plans = sorted(serving_layouts(m, 64, assumptions.gpus_per_node), key=lambda p: (p.tp * p.pp, -p.tp))
    for plan in plans:
        if shard_problem(m, dtype, plan.tp, 1, s.engine, assumptions.fp8_moe_scales) is None and \
                deployment_memory(m, gpu, plan, s, dtype, kv_dtype, tokens, assumptions).max_concurrency >= batch:
            return plan
    return None
