"""`serve`: rank replica x TP x PP layouts by output tokens/s per GPU that meet TTFT/TPOT targets,
and size the deployment for an arrival rate or a number of concurrent users.

Steady-state continuous batching (Orca, Yu et al. OSDI 2022; vLLM/SGLang chunked prefill,
Agrawal et al. "Sarathi-Serve", OSDI 2024): with B requests running on a replica, every step decodes
one token for each and prefills B x P/O prompt tokens on average (a request's P prompt tokens are
spread over the O steps it lives), so
    TPOT(B)  = step(B decode tokens at context P + O/2, B x P/O prefill tokens)
    TTFT(B)  = ceil(P / C) steps with a prompt chunk of C = max_num_batched_tokens - B tokens
    replica  : B / TPOT output tokens/s, mu = B / (TTFT + O x TPOT) requests/s (Little's law)
B is the largest power of two (or the KV/engine cap) meeting both targets. For a rate R the
replicas are the fewest whose queueing delay keeps TTFT within target: B slots in parallel, each
busy S = TTFT + O x TPOT, so M/D/c with c = B; the wait is Sakasegawa's M/M/c approximation
rho^(sqrt(2(c+1))-1) / (c (1 - rho)) x S, halved for deterministic service.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.hardware.calibration import Calibration, efficiency_for
from calc.model.parallel import check_layout
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions
from calc.serving.engine_memory import EngineMemory, engine_memory
from calc.serving.step import StepTime, step_time
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.specs.serving import EngineSettings


class FrontierPoint(BaseModel):
    batch: int
    ttft_ms: float
    tpot_ms: float
    tokens_per_s_per_gpu: float


class Layout(BaseModel):
    tp: int
    pp: int
    gpus_per_replica: int
    replicas: int
    batch: int
    ttft_ms: float
    tpot_ms: float
    queue_ms: float
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    requests_per_s_per_replica: float
    kv_cache_tokens: int
    max_concurrency: int
    gpus_needed: int
    meets_targets: bool
    binding: str
    tp_spans_nodes: bool
    energy_j_per_token: float | None
    frontier: list[FrontierPoint]


class ServePlan(BaseModel):
    model: str
    gpu: str
    engine: str
    prompt: int
    output: int
    target_ttft_ms: float | None
    target_tpot_ms: float | None
    rate: float | None
    users: int | None
    num_gpus: int | None
    dtype: str
    kv_dtype: str
    layouts: list[Layout]
    gpus_needed: int | None
    best: Layout | None
    launch: str | None
    verdict: str
    assumptions: list[str]
    explain: list[str]


def _queue_s(rate: float, slots: int, service_s: float) -> float:
    """M/D/c wait (Sakasegawa 1977 M/M/c approximation, halved for deterministic service); inf at rho >= 1."""
    rho = rate * service_s / slots
    if rho >= 1:
        return math.inf
    return rho ** (math.sqrt(2 * (slots + 1)) - 1) / (slots * (1 - rho)) * service_s / 2


def _candidates(m: ModelSpec, limit: int, a: ServingAssumptions) -> list[tuple[int, int]]:
    out = []
    for tp in (1, 2, 4, 8, 16, 32):
        for pp in (1, 2, 4, 8):
            if tp * pp > limit or tp > 2 * a.gpus_per_node:
                continue
            try:
                check_layout(m, Parallelism(tp=tp, pp=pp))
            except LLMCalcError:
                continue
            out.append((tp, pp))
    return out


def _powers(top: int) -> list[int]:
    values, b = [], 1
    while b < top:
        values.append(b)
        b *= 2
    return values + [top]


class _Replica:
    """One layout's step model for a workload: TTFT and TPOT at B requests running."""

    def __init__(self, m: ModelSpec, gpu: GPUSpec, mem: EngineMemory, prompt: int, output: int, eff, a, dtype, kv_dtype):  # noqa: ANN001
        self.m, self.gpu, self.mem, self.p, self.o, self.eff, self.a = m, gpu, mem, prompt, output, eff, a
        self.dtype, self.kv_dtype, self.tp, self.pp = dtype, kv_dtype, mem.tp, mem.pp

    def _step(self, seqs: float, prefill: int, span: float) -> StepTime:
        micro = max(round(seqs / self.pp), 1 if seqs else 0)
        return step_time(self.m, self.gpu, self.eff, self.a, tp=self.tp, pp=self.pp, dtype=self.dtype,
                         kv_dtype=self.kv_dtype, decode_seqs=micro, decode_context=self.p + self.o / 2,
                         prefill_tokens=max(round(prefill / self.pp), 0), prefill_context=span)

    def tpot(self, batch: int) -> StepTime:
        return self._step(batch, round(batch * self.p / self.o), self.p / 2)

    def ttft_s(self, batch: int) -> float:
        chunk = max(self.mem.batched_tokens - batch, 1) if self.mem.chunked_prefill else self.p
        chunk = min(chunk, self.p)
        return math.ceil(self.p / chunk) * self._step(batch - 1, chunk, self.p / 2).total_s


def _binding(batch: int, cap: int, max_seqs: int, st: StepTime, next_point: FrontierPoint | None,
             ttft_ms: float | None) -> str:
    """What stops the batch growing: KV capacity, the engine's max_num_seqs, the TTFT target (prefill
    compute), or the TPOT target (then the largest part of the step)."""
    if next_point is None:
        return "memory (KV)" if cap < max_seqs else "max_num_seqs"
    if ttft_ms is not None and next_point.ttft_ms > ttft_ms:
        return "compute (TTFT)"
    part = {"compute": st.compute_s, "bandwidth": st.memory_s, "communication": st.comm_s, "overhead": st.overhead_s}
    return max(part, key=part.__getitem__) + " (TPOT)"


def serve_plan(
    m: ModelSpec, gpu: GPUSpec, *, prompt: int, output: int, ttft_ms: float | None = None, tpot_ms: float | None = None,
    rate: float | None = None, users: int | None = None, num_gpus: int | None = None, dtype: str = "bf16",
    kv_dtype: str | None = None, settings: EngineSettings | None = None, calibration: Calibration | None = None,
    assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS, max_gpus: int = 64, emit: str | None = None,
) -> ServePlan:
    """Every layout's memory, batch, latency and GPUs for the traffic, best first."""
    s = settings or EngineSettings()
    a = assumptions
    for flag, value in (("--prompt", prompt), ("--output", output)):
        if value < 1:
            raise LLMCalcError(flag, f"must be >= 1, got {value}")
    if rate is not None and users is not None:
        raise LLMCalcError("--rate", "give --rate (requests/s) or --users (concurrent users), not both")
    if s.max_model_len is None:
        s = s.model_copy(update={"max_model_len": max(prompt + output, m.max_position_embeddings)})
    kv_dtype = kv_dtype or dtype
    eff = efficiency_for(gpu, dtype, calibration)
    layouts = []
    for tp, pp in _candidates(m, num_gpus or max_gpus, a):
        mem = engine_memory(m, gpu, settings=s, tp=tp, pp=pp, dtype=dtype, kv_dtype=kv_dtype,
                            tokens_per_request=prompt + output, assumptions=a)
        if mem.max_concurrency < 1:
            continue
        layouts.append(_layout(_Replica(m, gpu, mem, prompt, output, eff, a, dtype, kv_dtype), s, ttft_ms, tpot_ms,
                               rate, users, num_gpus, a))
    layouts.sort(key=lambda x: (not x.meets_targets, -x.tokens_per_s_per_gpu))
    best = layouts[0] if layouts and layouts[0].meets_targets else None
    return ServePlan(
        model=m.name, gpu=gpu.name, engine=s.engine, prompt=prompt, output=output, target_ttft_ms=ttft_ms,
        target_tpot_ms=tpot_ms, rate=rate, users=users, num_gpus=num_gpus, dtype=dtype, kv_dtype=kv_dtype,
        layouts=layouts, gpus_needed=best.gpus_needed if best else None, best=best,
        launch=launch_command(m.name, s, best, prompt + output, emit) if best and emit else None,
        verdict=_verdict(m, gpu, layouts, best, rate, users, num_gpus),
        assumptions=[eff.source, *a.lines(), f"engine {s.engine}: max_model_len {s.max_model_len:,}, "
                     f"max_num_seqs {s.max_num_seqs}, prefill chunk {s.batched_tokens(m.max_position_embeddings, gpu.memory_bytes):,}"
                     f" tokens", "energy = GPUs x board power (TDP) x (0.3 + 0.7 x busiest-unit utilisation) x TPOT / batch"],
        explain=_explain(layouts[:3]),
    )


def _layout(r: _Replica, s: EngineSettings, ttft_ms, tpot_ms, rate, users, num_gpus, a) -> Layout:  # noqa: ANN001
    cap = min(r.mem.max_concurrency, s.max_num_seqs)
    frontier: list[FrontierPoint] = []
    chosen = None
    gpr = r.tp * r.pp
    for b in _powers(cap):
        st = r.tpot(b)
        ttft = r.ttft_s(b)
        frontier.append(FrontierPoint(batch=b, ttft_ms=ttft * 1e3, tpot_ms=st.total_s * 1e3,
                                      tokens_per_s_per_gpu=b / st.total_s / gpr))
        if (tpot_ms is None or st.total_s * 1e3 <= tpot_ms) and (ttft_ms is None or ttft * 1e3 <= ttft_ms):
            chosen = (b, st, ttft)
    meets = chosen is not None
    b, st, ttft = chosen or (1, r.tpot(1), r.ttft_s(1))
    after = [p for p in frontier if p.batch > b]
    service = ttft + r.o * st.total_s
    mu = b / service
    replicas, queue = _replicas(rate, users, num_gpus, gpr, b, mu, service, ttft, ttft_ms)
    meets = meets and (rate is None or queue < math.inf) and (ttft_ms is None or (ttft + queue) * 1e3 <= ttft_ms)
    util = max(st.compute_s, st.memory_s) / st.total_s
    power = gpr * r.gpu.tdp_w * (0.3 + 0.7 * util) if r.gpu.tdp_w else None
    return Layout(
        tp=r.tp, pp=r.pp, gpus_per_replica=gpr, replicas=replicas, batch=b, ttft_ms=(ttft + queue) * 1e3 if queue < math.inf
        else math.inf, tpot_ms=st.total_s * 1e3, queue_ms=queue * 1e3, tokens_per_s=b / st.total_s,
        tokens_per_s_per_gpu=b / st.total_s / gpr, requests_per_s_per_replica=mu, kv_cache_tokens=r.mem.kv_cache_tokens,
        max_concurrency=r.mem.max_concurrency, gpus_needed=replicas * gpr, meets_targets=meets,
        binding=_binding(b, cap, s.max_num_seqs, st, after[0] if after else None, ttft_ms), tp_spans_nodes=r.tp > a.gpus_per_node,
        energy_j_per_token=power * st.total_s / b if power else None, frontier=frontier,
    )


def _replicas(rate, users, num_gpus, gpr, batch, mu, service, ttft, ttft_ms) -> tuple[int, float]:  # noqa: ANN001
    """Replicas for the traffic and the queueing delay each then sees."""
    if num_gpus:
        n = num_gpus // gpr
        return n, _queue_s(rate / n, batch, service) if rate else 0.0
    if users:
        return math.ceil(users / batch), 0.0
    if not rate:
        return 1, 0.0
    n = max(math.ceil(rate / mu), 1)
    while n < 100_000:
        wait = _queue_s(rate / n, batch, service)
        if wait < math.inf and (ttft_ms is None or (ttft + wait) * 1e3 <= ttft_ms or wait * 1e3 < 1):
            return n, wait
        n += max(n // 20, 1)
    return n, math.inf


def _verdict(m, gpu, layouts, best, rate, users, num_gpus) -> str:  # noqa: ANN001
    if not layouts:
        return f"no layout of up to {num_gpus or 64} x {gpu.name} holds one request of {m.name}: it does not fit"
    if best is None:
        return (f"no layout meets the targets; closest: TP {layouts[0].tp} x PP {layouts[0].pp} at TTFT "
                f"{layouts[0].ttft_ms:,.0f} ms, TPOT {layouts[0].tpot_ms:,.1f} ms")
    traffic = f"{rate:g} requests/s" if rate else f"{users} users" if users else "one replica"
    return (f"best: {best.replicas} replica(s) x TP {best.tp} x PP {best.pp} = {best.gpus_needed} x {gpu.name} for "
            f"{traffic}; batch {best.batch}, TTFT {best.ttft_ms:,.0f} ms, TPOT {best.tpot_ms:,.1f} ms, "
            f"{best.tokens_per_s_per_gpu:,.0f} tokens/s/GPU; binds: {best.binding}")


def _explain(layouts: list[Layout]) -> list[str]:
    return [
        f"TP {x.tp} x PP {x.pp}: KV {x.kv_cache_tokens:,} tokens -> up to {x.max_concurrency} requests; at batch {x.batch} "
        f"TPOT {x.tpot_ms:.2f} ms, TTFT {x.ttft_ms:.1f} ms (queue {x.queue_ms:.1f}); mu = B/(TTFT + O x TPOT) = "
        f"{x.requests_per_s_per_replica:.3f} req/s per replica; {x.replicas} replicas -> {x.gpus_needed} GPUs"
        for x in layouts
    ]


def launch_command(model: str, s: EngineSettings, best: Layout, tokens: int, emit: str) -> str:
    """The engine command line for the chosen layout (flags as vLLM / SGLang name them)."""
    if emit == "vllm":
        return (f"vllm serve {model} --tensor-parallel-size {best.tp} --pipeline-parallel-size {best.pp} "
                f"--gpu-memory-utilization {s.gpu_memory_utilization:g} --max-model-len {s.max_model_len} "
                f"--max-num-seqs {best.batch} --block-size {s.block_size}"
                + (f" --max-num-batched-tokens {s.max_num_batched_tokens}" if s.max_num_batched_tokens else ""))
    if emit == "sglang":
        return (f"python -m sglang.launch_server --model-path {model} --tp {best.tp} --pp-size {best.pp} "
                f"--mem-fraction-static {s.mem_fraction(best.tp):g} --context-length {s.max_model_len} "
                f"--max-running-requests {best.batch}"
                + (f" --chunked-prefill-size {s.chunked_prefill_size}" if s.chunked_prefill_size else ""))
    raise LLMCalcError("--emit", f"unknown engine {emit!r}; use vllm or sglang")
