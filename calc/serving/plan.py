"""`serve`: rank replica x TP x PP layouts by output tokens/s per GPU that meet TTFT/TPOT targets,
and size the deployment for an arrival rate or a number of concurrent users.

Steady-state continuous batching (Orca, Yu et al. OSDI 2022; vLLM/SGLang chunked prefill,
Agrawal et al. "Sarathi-Serve", OSDI 2024): with B requests running on a replica, every step decodes
one token for each and, while a request decodes, the other B - 1 slots each take in a new prompt of P
tokens: a request's own prompt is its TTFT steps, before it decodes, so the B - 1 others' prompts (B - 1) x P tokens
ride on its O - 1 decode steps and every request's prompt is computed once per service (B prompts per B requests)
    TPOT(B)  = step(B decode tokens at the mean context P + O/2, (B - 1) x P/(O - 1) prefill tokens, causal)
(at B = 1 no other prompt shares a decode step: TPOT(1) and TTFT(1) are `latency`'s batch-1 steps)
    TTFT(B)  = floor(P / C) steps with a prompt chunk of C = max_num_batched_tokens - B tokens, and one of the
               P mod C left (calc.serving.step.prompt_chunks, as `latency` bills them)
(O = 1, prefill only: no decode step to carry the others' prompts, so the B prompts share the prompt steps,
    TTFT(B) = the B x P prompt tokens in steps of C = min(max_num_batched_tokens, B x P) and the rest (one prompt per step
    without chunked prefill): B slots then serve no faster than one, the prefill's compute rate)
    replica  : B / TPOT output tokens/s while decoding, mu = B / (TTFT + (O - 1) x TPOT) requests/s (Little's law;
               the prefill makes the first token: calc.serving.step.request_seconds, `latency`'s e2e)
    ranking  : tokens/s per GPU = replicas x mu x O / GPUs = replicas x B x O / (TTFT + (O - 1) x TPOT) / GPUs, every
               output token over each slot's whole busy time, its own prefill included. One definition at every
               batch: B / TPOT would leave out the request's own prefill (TPOT(B) carries only the other B - 1
               prompts), which at B = 1 is all of the prefill, so long prompts made batch 1 look fastest.
               (Disaggregated: B / TPOT per decode replica, the prompts priced in the prefill pool's GPUs.)
B is the largest batch (powers of two, then bisection; at most the KV/engine cap) meeting both targets. For a rate R the
replicas are the fewest whose queueing delay keeps TTFT within target: B slots in parallel, each
busy S = TTFT + (O - 1) x TPOT, so M/D/c with c = B (calc.serving.queueing). Sizing for a rate or users, each
layout runs the batch (of those meeting the targets) that needs the fewest GPUs, and the headline is the
layout with the fewest GPUs, ties broken by tokens/s per GPU: a looser target only adds batches, so it
never needs more GPUs, and a higher rate never fewer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.hardware.calibration import Calibration
from calc.memory.kv import auto_kv_dtype
from calc.memory.weights import WeightsDtype, weights_class
from calc.model.parallel import check_layout, serving_layouts
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, DEFAULT_MAX_UTILIZATION, ServingAssumptions
from calc.serving.disagg import decode_step, kv_transfer_seconds, prefill_instances, prefill_seconds
from calc.serving.engine_memory import EngineMemory, engine_memory, request_settings, resolve_kv_dtype
from calc.serving.launch import launch_command, request_cap
from calc.serving.moe import attention_ranks
from calc.serving.queueing import fewest, pool_queue_s
from calc.serving.shards import shard_problem
from calc.serving.speculative import Speculation
from calc.serving.step import (
    StepTime,
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
from calc.specs.serving import EngineSettings
from calc.units import check_count, check_positive, count, plural


class FrontierPoint(BaseModel):
    batch: int
    ttft_ms: float
    tpot_ms: float
    tokens_per_s_per_gpu: float


class Layout(BaseModel):
    name: str
    tp: int
    pp: int
    ep: int
    gpus_per_replica: int
    replicas: int
    batch: int
    ttft_ms: float
    tpot_ms: float
    queue_ms: float
    tokens_per_s: float  # one replica's output tokens/s in steady state, prefill included (slot_tokens_per_s)
    decode_tokens_per_s: float  # one replica's B / TPOT while decoding
    tokens_per_s_per_gpu: float  # steady state, prefill included: slot_tokens_per_s x replicas / GPUs (ranked)
    requests_per_s_per_replica: float
    kv_cache_tokens: int
    max_concurrency: int
    gpus_needed: int
    meets_targets: bool
    binding: str
    tp_spans_nodes: bool
    energy_j_per_token: float | None
    prefill_gpus: int = 0  # disaggregated: GPUs of the prefill pool (included in gpus_needed)
    # a fixed --num-gpus with --rate / --users: gpus_needed is then the GPUs given (this layout's replicas on them) and
    # traffic_gpus the fewest of this layout that carry the traffic (``_replicas`` without the budget); else None
    traffic_gpus: int | None = None
    # replicas sized for --rate / --users (no --num-gpus): gpus_needed is then a prediction (banded); else it is the
    # GPUs given or one replica's
    sized: bool = False
    frontier: list[FrontierPoint]


class LightLoad(BaseModel):
    """What a request sees when a --rate keeps the best layout's slots lightly busy (light_load): the share of its
    request slots busy, the requests a replica holds (Little's law) and the frontier point at that batch."""

    busy: float
    requests_held: float
    batch: int
    ttft_ms: float
    tpot_ms: float


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
    weights_dtype: WeightsDtype = ""
    kv_dtype: str
    layouts: list[Layout]
    fits: bool  # some layout's KV cache holds one request (else the CLI exits 2, JSON or not)
    gpus_needed: int | None
    best: Layout | None
    launch: str | None
    launch_kv_cache_tokens: int | None = None  # what the engine the --emit line starts logs: KV at its --max-num-seqs
    launch_max_concurrency: int | None = None
    # under a --rate that keeps the best layout's slots less than LIGHT_LOAD busy: what users see (light_load); the
    # layout's own TTFT / TPOT stay the planning figures at its full batch
    at_rate: LightLoad | None = None
    verdict: str
    assumptions: list[str]
    explain: list[str]


def _candidates(m: ModelSpec, limit: int, a: ServingAssumptions, engine: str = "vllm") -> list[tuple[int, int, int]]:
    """(tp, pp, ep): TP x PP layouts, and for MoE models data-parallel attention with the experts spread
    over EP ranks (vLLM --data-parallel-size D --enable-expert-parallel; SGLang --enable-dp-attention). TensorRT-LLM's
    attention data parallelism (enable_attention_dp) gives every rank its own whole attention, so its EP layouts are
    attention TP 1 only (DP = EP: TensorRT-LLM's attention DP size is its tensor_parallel_size, and its KV-cache
    sizing reads the attention's tp_size as 1 under mapping.enable_attention_dp; docs "Parallelism in TensorRT-LLM",
    Attention Module: TP or DP)."""
    out = [(p.tp, p.pp, 1) for p in serving_layouts(m, limit, 2 * a.gpus_per_node)]
    if m.moe:  # EP = d x t: d attention groups of t TP ranks (calc.serving.moe), TP inside a node
        out += [(tp, 1, ep) for tp in ((1,) if engine == "trtllm" else (1, 2, 4, 8)) for ep in (2, 4, 8, 16, 32, 64)
                if ep <= limit and ep % tp == 0 and tp <= a.gpus_per_node and m.moe.num_experts % ep == 0
                and (tp, 1) in {(t, p) for t, p, _ in out}]
    return out


# Throughput differences below this share of the best are inside every serving band (the held-out residuals of
# tokens/s span tens of percent): ranked by tokens/s per GPU alone they would crown a 4x larger replica for +0.4%.
NEAR_TIE = 0.05


def near_ties_first(layouts: list[Layout]) -> list[Layout]:
    """``layouts`` (ranked by tokens/s per GPU, those meeting the targets first) with the layout of the fewest GPUs per
    replica, then the lowest TPOT, among those within NEAR_TIE of the best's tokens/s per GPU moved to the front: a
    ranking by the point estimate alone picks on noise (Qwen3-30B-A3B under SGLang: TP 2 x PP 8 on 16 GPUs at 4,531
    tokens/s/GPU over 4 GPUs at 4,512).

    >>> mk = lambda n, g, t, tpot: Layout.model_construct(name=n, gpus_per_replica=g, tokens_per_s_per_gpu=t,
    ...                                                     tpot_ms=tpot, meets_targets=True)
    >>> [x.name for x in near_ties_first([mk("16", 16, 4531, 56.5), mk("4", 4, 4512, 46.3), mk("1", 1, 3000, 20)])]
    ['4', '16', '1']
    """
    if not layouts or not layouts[0].meets_targets:
        return layouts
    floor = (1 - NEAR_TIE) * layouts[0].tokens_per_s_per_gpu
    ties = [x for x in layouts if x.meets_targets and x.tokens_per_s_per_gpu >= floor]
    pick = min(ties, key=lambda x: (x.gpus_per_replica, x.tpot_ms))
    return [pick, *(x for x in layouts if x is not pick)]


def _powers(top: int) -> list[int]:
    values, b = [], 1
    while b < top:
        values.append(b)
        b *= 2
    return values + [top]


class _Replica:
    """One layout's step model for a workload: TTFT and TPOT at B requests running."""

    def __init__(self, m: ModelSpec, gpu: GPUSpec, mem: EngineMemory, prompt: int, output: int, hook, a, dtype, kv_dtype):  # noqa: ANN001
        self.m, self.gpu, self.mem, self.p, self.o, self.hook, self.a = m, gpu, mem, prompt, output, hook, a
        self.dtype, self.kv_dtype, self.tp, self.pp, self.ep = dtype, kv_dtype, mem.tp, mem.pp, mem.ep
        self.dp = attention_ranks(self.tp, self.ep)  # data-parallel attention groups (calc.serving.moe)
        self.split = self.pp * self.dp  # micro-batches (PP) or data-parallel attention groups (EP) share the batch
        self.spec: Speculation | None = None
        self.disagg = False  # a decode-only replica fed by a prefill pool (calc.serving.disagg)
        self.kv_sized_seqs = False  # max_num_seqs set to what the KV cache admits (_Setup.replica planned): KV binds

    def _step(self, seqs: float, prefill: int) -> StepTime:
        micro = max(round(seqs / self.split), 1 if seqs else 0)
        return step_time(self.m, self.gpu, self.a, tp=self.tp, pp=self.pp, ep=self.ep, dtype=self.dtype,
                         calibration=self.hook, kv_dtype=self.kv_dtype, decode_seqs=micro,
                         decode_context=decode_context(self.p, self.o), decode_contexts=decode_range(self.p, self.o),
                         prefill_tokens=prefill, prefill_prompt=self.p)

    def _mixed_prefill(self, batch: int, per_step: float = 1.0) -> int:
        """Prompt tokens sharing one decode step on one micro-batch / attention rank: the other B - 1
        requests' prompts, P each over a request's O - 1 decode steps (``per_step`` tokens per step: speculation)
        (module docstring)."""
        return round((batch - 1) * self.p * per_step / max(self.o - 1, 1) / self.split)

    def tpot(self, batch: int) -> StepTime:
        """Time per output token at B running: one step, or with speculation (verify + draft) / E."""
        spec = self.spec
        if self.disagg:
            return decode_step(self, batch)
        if spec is None:
            return self._step(batch, self._mixed_prefill(batch))
        e = spec.expected_tokens
        seqs = max(round(batch / self.split), 1)
        common = {"tp": self.tp, "pp": self.pp, "ep": self.ep, "calibration": self.hook, "decode_seqs": seqs,
                  "decode_context": decode_context(self.p, self.o), "decode_contexts": decode_range(self.p, self.o)}
        verify = step_time(self.m, self.gpu, self.a, dtype=self.dtype, kv_dtype=self.kv_dtype,
                           queries_per_seq=spec.tokens + 1, prefill_tokens=self._mixed_prefill(batch, e),
                           prefill_prompt=self.p, **common)
        draft = 0.0 if spec.draft is None else spec.tokens * step_time(
            spec.draft, self.gpu, self.a, dtype=self.dtype, kv_dtype=self.kv_dtype, **common).total_s
        total = (verify.total_s + draft) / e
        return verify.model_copy(update={"total_s": total, "compute_s": verify.compute_s / e,
                                         "memory_s": verify.memory_s / e, "comm_s": verify.comm_s / e,
                                         "overhead_s": verify.overhead_s / e})

    def chunk_cap(self) -> int | None:
        """The most requests whose steady state fits the engine's token budget per step (max_num_batched_tokens C, on
        each micro-batch / attention rank of s): one decode token each and the others' prompts,
            B / s + (B - 1) P / ((O - 1) s) <= C   ->   B <= (C s + P / (O - 1)) / (1 + P / (O - 1)),
        past which the scheduler cannot take prompts in as fast as requests finish (vLLM's and SGLang's schedulers
        never put more than C tokens in a step), so B requests no longer all decode. None where nothing caps it: no
        chunked prefill, prefill only (O = 1), a disaggregated decode replica, speculation.
        E.g. P 4,000, O 16, C 8,192, s 1: B <= (8,192 + 266.7) / 267.7 = 31."""
        if self.disagg or self.spec is not None or self.o == 1 or not self.mem.chunked_prefill:
            return None
        ratio = self.p / (self.o - 1)
        return max(math.floor((self.mem.batched_tokens * self.split + ratio) / (1 + ratio)), 1)

    def ttft_s(self, batch: int) -> float:
        """A prompt's chunks go through one micro-batch / one attention rank, a chunk per step."""
        if self.disagg:
            return prefill_seconds(self, self.mem) + kv_transfer_seconds(self, self.mem)
        if self.o == 1 and batch > 1:  # prefill only: the B prompts share the prompt steps (module docstring)
            per_rank = math.ceil(batch / self.split) * self.p
            chunk = min(self.mem.batched_tokens, per_rank) if self.mem.chunked_prefill else self.p
            return sum(n * self._step(0, tokens).total_s for n, tokens in prompt_chunks(per_rank, chunk))
        decoding = max(round((batch - 1) / self.split), 1 if batch > 1 else 0)  # the others' tokens in its steps
        chunk = max(self.mem.batched_tokens - decoding, 1) if self.mem.chunked_prefill else None
        steps = [(n, self._step(batch - 1, tokens).total_s) for n, tokens in prompt_chunks(self.p, chunk)]
        # alone (batch 1) its chunks flow through the PP stages one behind the other, as `latency` prices them; under
        # load every stage's turn is shared with the other micro-batches, a chunk a turn
        own = pipelined([t for _, t in steps], [n for n, _ in steps], self.pp if batch == 1 else 1)
        if batch == 1:
            return own
        # in the steady state every step also carries the other requests' prompts (tpot's mixed step): the first token
        # comes out at the end of such a step, never sooner than one of them takes; with speculation that step is the
        # verify step and its drafts, TPOT x E (tpot divides it by the E tokens it makes)
        step = self.tpot(batch).total_s * (self.spec.expected_tokens if self.spec is not None else 1.0)
        return max(own, step)


def _binding(batch: int, cap: int, max_seqs: int, st: StepTime, next_point: FrontierPoint | None,
             ttft_ms: float | None, chunked: bool = False, kv_sized_seqs: bool = False) -> str:
    """What stops the batch growing: KV capacity (below max_num_seqs, or max_num_seqs itself when it was set to what the
    KV cache admits, ``kv_sized_seqs``), the engine's max_num_seqs, its tokens per step (``chunked``: the cap is
    _Replica.chunk_cap), the TTFT target (prefill compute), or the TPOT target (then the largest part of the step)."""
    if next_point is None:
        if chunked:
            return "tokens per step (max_num_batched_tokens)"
        return "memory (KV)" if cap < max_seqs or kv_sized_seqs else "max_num_seqs"
    if ttft_ms is not None and next_point.ttft_ms > ttft_ms:
        return "compute (TTFT)"
    part = {"compute": st.compute_s, "bandwidth": st.memory_s, "communication": st.comm_s, "overhead": st.overhead_s}
    return max(part, key=part.__getitem__) + " (TPOT)"


def _memory_share_line(s: EngineSettings) -> str:
    """The share of each GPU the engine takes, as its own setting names it (--explain)."""
    if s.accounting() == "sglang":
        return (f"mem_fraction_static {s.mem_fraction_static:g}" if s.mem_fraction_static else
                "mem_fraction_static the release's default by TP (calc.specs.serving)")
    if s.accounting() == "trtllm":
        return "KV cache in 0.9 of the memory free after weights and activations (free_gpu_memory_fraction)"
    return f"gpu_memory_utilization {s.gpu_memory_utilization:g}"


def _check_request(prompt: Any, output: Any, ttft_ms: Any, tpot_ms: Any, rate: Any, users: Any, num_gpus: Any,
                   max_gpus: Any) -> None:
    """serve_plan's inputs, refused in the flags' names as the CLI's parsers refuse them (a Python caller gets the
    same LLMCalcError): counts whole and >= 1, a rate and the targets finite and > 0."""
    for flag, value in (("--prompt", prompt), ("--output", output), ("--users", users), ("--num-gpus", num_gpus),
                        ("max_gpus", max_gpus)):
        if value is not None:
            check_count(value, flag)
    for flag, value in (("--rate", rate), ("--ttft-ms", ttft_ms), ("--tpot-ms", tpot_ms)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise LLMCalcError(flag, f"must be a number, got {value!r}")
            check_positive(value, flag)


def serve_plan(
    m: ModelSpec, gpu: GPUSpec, *, prompt: int, output: int, ttft_ms: float | None = None, tpot_ms: float | None = None,
    rate: float | None = None, users: int | None = None, num_gpus: int | None = None, dtype: str | None = "bf16",
    kv_dtype: str | None = None, settings: EngineSettings | None = None, calibration: Calibration | None = None,
    assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS, max_gpus: int = 64, emit: str | None = None,
    speculation: Speculation | None = None, disaggregated: bool = False,
) -> ServePlan:
    """Every layout's memory, batch, latency and GPUs for the traffic, best first. ``dtype`` None: weights
    as the checkpoint ships them (calc.serving.weights)."""
    s = settings or EngineSettings()
    a = assumptions
    m = model_as_run(m, a.attention_windows)  # the windows the engine applies (calc.serving.windows)
    _check_request(prompt, output, ttft_ms, tpot_ms, rate, users, num_gpus, max_gpus)
    if rate is not None and users is not None:
        raise LLMCalcError("--rate", "give --rate (requests/s) or --users (concurrent users), not both")
    draft = speculation.draft if speculation else None
    if draft is not None and draft.vocab_size != m.vocab_size:  # the target verifies the draft's token ids
        raise LLMCalcError("--draft", f"{draft.name} has a vocabulary of {draft.vocab_size:,} tokens, {m.name} "
                                      f"{m.vocab_size:,}: a draft model proposes token ids in the target's tokenizer; "
                                      "pick one of the same family, or --speculative ngram")
    setup = _Setup.of(m, gpu, s, prompt, output, dtype, kv_dtype, calibration, a, draft)
    s, fmt, kv_dtype, gpu_run, hook, eff = setup.s, setup.fmt, setup.kv_dtype, setup.gpu_run, setup.hook, setup.eff
    layouts, unloadable = [], []
    for tp, pp, ep in _candidates(m, num_gpus or max_gpus, a, s.engine):
        if (why := shard_problem(m, dtype, tp, ep, s.engine, a.fp8_moe_scales)) is not None:  # the engine would not load it
            unloadable.append(why)
            continue
        replica = setup.replica(tp, pp, ep, planned=True)
        if replica is None:
            continue
        replica.spec = speculation
        mem = replica.mem
        layouts.append(_layout(replica, s, ttft_ms, tpot_ms, rate, users, num_gpus, a))
        if disaggregated and pp == 1 and ep == 1 and (num_gpus is None or 2 * tp <= num_gpus):
            split = _Replica(m, gpu_run, mem, prompt, output, hook, a, dtype, kv_dtype)
            split.disagg = True
            pooled = _layout(split, s, ttft_ms, tpot_ms, rate, users, None, a)
            if num_gpus is not None and pooled.gpus_needed > num_gpus:
                pooled = pooled.model_copy(update={"meets_targets": False})
            layouts.append(pooled)
    sizing = (rate or users) and not num_gpus  # the headline is then the fewest GPUs that carry the traffic
    layouts.sort(key=lambda x: (not x.meets_targets, x.gpus_needed if sizing else 0, -x.tokens_per_s_per_gpu))
    layouts = near_ties_first(layouts) if not sizing else layouts
    best = layouts[0] if layouts and layouts[0].meets_targets else None
    seqs_line = (f"max_num_seqs {s.seqs(gpu.memory_bytes, gpu.name)}" if s.accounting() != "sglang" else
                 "max_running_requests from the KV pool (calc.specs.serving.sglang_max_running_requests)")
    run = s.on(m, gpu)  # the settings as the engine runs this model here (the KV block it forces)
    assumption_lines = [fmt.line, eff.source, *a.lines(moe=m.moe is not None, split=num_gpus != 1,
                                                                chunked="chunked" in (m.layer_types or ())),
                        f"engine {s.engine}: max_model_len {s.max_model_len:,}, "
                        f"{seqs_line}"
                        + (" (a layout whose KV cache admits fewer is sized at the max_num_seqs it admits, as its "
                           "--max-num-seqs would start it: vLLM's profile run samples max_num_seqs requests)"
                           if s.accounting() in ("vllm-v1", "vllm-v0") and s.max_num_seqs is None else "")
                        + ", prefill chunk "
                        f"{s.batched_tokens(m.max_position_embeddings, gpu.memory_bytes, gpu.name):,} tokens, "
                        + _memory_share_line(s) + f", KV block {run.page_tokens()} tokens"
                        + (" (vLLM forces it for FlashMLA on Hopper)" if run.block_size != s.block_size else ""),
                        "energy = GPUs x board power (TDP) x (0.3 + 0.7 x busiest-unit utilisation) x TPOT / batch",
                        *([f"layouts within {NEAR_TIE:.0%} of the best tokens/s per GPU are a tie (inside the bands): "
                           "the fewest GPUs per replica, then the lowest TPOT, ranked first (near_ties_first)"]
                          if not sizing else []),
                        "queueing: M/D/c with c = batch slots (Sakasegawa's approximation, halved for deterministic service)"
                        + ("" if not rate else
                           "; the replicas behind a least-loaded router wait as one queue of c = replicas x batch "
                           "(--router random: a queue per replica, the bound for a router blind to load)"
                           if a.router == "least-loaded" else
                           "; --router random: each replica its own queue of rate R / replicas (a router blind to load)")]
    if rate and not num_gpus:
        cap = utilization_cap(a, ttft_ms)
        assumption_lines.append(
            f"replicas for {count(rate)} requests/s: the fewest whose request slots run at most {cap:.0%} busy "
            + ("(--max-utilization)" if a.max_utilization is not None else
               "(no --ttft-ms: the default planning margin; --max-utilization changes it)" if ttft_ms is None else
               "(any stable queue: the --ttft-ms target bounds the wait)")
            + (" and whose queueing keeps TTFT within --ttft-ms" if ttft_ms is not None else ""))
    at_rate = light_load(best, rate, output)
    if at_rate is not None and best is not None and rate:
        assumption_lines.append(light_load_line(best, at_rate, rate))
    if unloadable:
        assumption_lines.append(f"{plural(len(unloadable), 'layout')} skipped, the checkpoint's scales not splitting there "
                                f"(calc.serving.shards), the first: {unloadable[0]}")
    if speculation is not None:
        assumption_lines.append(speculation.line())
    if disaggregated:
        assumption_lines.append("disaggregated: prefill-only instances (chunks of the engine's batched tokens) feed "
                                "decode-only replicas; the prompt's KV crosses each GPU's network link (node spec)")
    launched = _launched_memory(setup, best) if best and emit else None
    return ServePlan(
        launch_kv_cache_tokens=launched.kv_cache_tokens * attention_ranks(best.tp, best.ep) if launched else None,
        launch_max_concurrency=launched.max_concurrency * attention_ranks(best.tp, best.ep) if launched else None,
        model=m.name, gpu=gpu.name, engine=s.engine, prompt=prompt, output=output, target_ttft_ms=ttft_ms,
        target_tpot_ms=tpot_ms, rate=rate, users=users, num_gpus=num_gpus, dtype=fmt.label,
        weights_dtype=weights_class(m, dtype), kv_dtype=kv_dtype,
        layouts=layouts, fits=bool(layouts), best=best,
        # the fewest GPUs for the traffic: with a fixed --num-gpus, what the best layout needs of them (traffic_gpus)
        gpus_needed=(best.gpus_needed if best.traffic_gpus is None else best.traffic_gpus) if best else None,
        launch=launch_command(m, run, best, emit, kv_dtype, s.batched_tokens(m.max_position_embeddings, gpu.memory_bytes, gpu.name,
                                                            best.tp), gpu.memory_bytes, eager=a.eager,
                                    dispatcher=a.dispatcher, dtype=dtype, speculation=speculation,
                                    auto_kv=auto_kv_dtype(fmt.act_dtype, m.checkpoint_dtype),
                                    gpus_per_node=a.gpus_per_node)
        if best and emit else None,
        at_rate=at_rate,
        verdict=_verdict(m, gpu, layouts, best, rate, users, num_gpus, unloadable,
                         s.max_model_len if s.max_model_len > prompt + output else None,
                         (ttft_ms, tpot_ms)) + _light_verdict(at_rate, rate),
        assumptions=assumption_lines,
        explain=plan_explain(layouts[:3]) + [f"assumption: {line}" for line in assumption_lines],
    )


def max_load_layout(
    m: ModelSpec, gpu: GPUSpec, *, prompt: int, output: int, tp: int, pp: int = 1, dtype: str | None = "bf16",
    kv_dtype: str | None = None, settings: EngineSettings | None = None,
    assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS, ep: int = 1, requests: int | None = None,
) -> Layout | None:
    """One TP x PP replica (``ep`` > 1: ep / tp data-parallel attention groups, calc.serving.moe) at maximum load
    (an offline benchmark: every request queued at once, no latency target):
    the steady state of the module docstring at the largest batch the KV cache and max_num_seqs admit,
    B = min(max concurrency, max_num_seqs, requests), tokens_per_s = B x O / (TTFT + (O - 1) x TPOT) (each request's own
    prefill included, slot_tokens_per_s) and decode_tokens_per_s = B / TPOT(B) beside it: an engine never runs more
    requests than it was sent (``requests``, the whole replica's), and that cap leaves the engine as launched (its
    memory profile at max_num_seqs) unchanged. The same replica model `serve` ranks; None when not one request fits."""
    setup, replica = _max_load_replica(m, gpu, prompt, output, tp, pp, dtype, kv_dtype, settings, assumptions, ep)
    if replica is None:
        return None
    return _layout(replica, setup.s, None, None, None, requests, tp * pp * replica.dp, assumptions, max_load=True)


def max_load_decode_step(
    m: ModelSpec, gpu: GPUSpec, *, prompt: int, output: int, tp: int, pp: int = 1, dtype: str | None = "bf16",
    kv_dtype: str | None = None, settings: EngineSettings | None = None,
    assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS, ep: int = 1,
) -> Any:
    """The max_load_layout replica's decode-only step: a function of the requests running (the whole replica's, split
    over its micro-batches / attention ranks as the steady state splits them) to seconds per step, no prompt chunk
    sharing it (calc.serving.step.step_time at decode_context(P, O)). It prices the end of an offline run, when the
    queue is empty and the batch shrinks as requests finish; None when not one request fits."""
    _setup, replica = _max_load_replica(m, gpu, prompt, output, tp, pp, dtype, kv_dtype, settings, assumptions, ep)
    if replica is None:
        return None
    return lambda running: replica._step(running, 0).total_s


def _max_load_replica(m: ModelSpec, gpu: GPUSpec, prompt: int, output: int, tp: int, pp: int, dtype: str | None,
                      kv_dtype: str | None, settings: EngineSettings | None, assumptions: ServingAssumptions,
                      ep: int) -> tuple[_Setup, _Replica | None]:
    """The engine as launched for max_load_layout and max_load_decode_step: its setup and its replica (None when
    not one request fits)."""
    setup = _Setup.of(m, gpu, settings or EngineSettings(), prompt, output, dtype, kv_dtype, None, assumptions)
    check_layout(m, Parallelism(tp=tp, pp=pp))
    return setup, setup.replica(tp, pp, ep)


def _launched_memory(setup: _Setup, best: Layout) -> Any:
    """The engine memory of the best layout as the --emit line starts it: max_num_seqs (vLLM --max-num-seqs, SGLang
    --max-running-requests, TensorRT-LLM --max_batch_size) capped at the plan's batch per attention group, which sizes
    the engine's profile run (vLLM's sampler over max_num_seqs dummy requests) and its CUDA-graph pool, so the KV
    cache the launched engine logs can differ from the table's, sized at the fewer of the engine's default
    max_num_seqs and the requests the layout's cache admits."""
    seqs = math.ceil(best.batch / attention_ranks(best.tp, best.ep))
    launched = replace(setup, s=setup.s.model_copy(update={"max_num_seqs": seqs}))
    return engine_memory(launched.m, launched.gpu, settings=launched.s, tp=best.tp, pp=best.pp, ep=best.ep,
                         dtype=launched.dtype, kv_dtype=launched.kv_dtype, tokens_per_request=launched.prompt + launched.output,
                         assumptions=launched.a, draft=launched.draft)


@dataclass
class _Setup:
    """What every layout of one request shares (serve_plan and max_load_layout alike): the engine settings for the
    request, the weight format, the KV dtype (the engine's auto, calc.serving.engine_memory.resolve_kv_dtype) and
    the GPU as calibrated."""

    m: ModelSpec
    gpu: GPUSpec
    s: EngineSettings
    prompt: int
    output: int
    dtype: str | None
    fmt: Any
    kv_dtype: str
    gpu_run: GPUSpec
    hook: Any
    eff: Any
    a: ServingAssumptions
    draft: ModelSpec | None = None  # a speculative draft model: its weights and KV share the replica's memory

    @classmethod
    def of(cls, m: ModelSpec, gpu: GPUSpec, s: EngineSettings, prompt: int, output: int, dtype: str | None,
           kv_dtype: str | None, calibration: Calibration | None, a: ServingAssumptions,
           draft: ModelSpec | None = None) -> _Setup:
        s = request_settings(s, prompt + output)  # one engine for every command (calc.serving.capacity)
        fmt = weight_format(m, gpu, dtype)
        gpu_run, hook, eff = calibrated_gpu(gpu, fmt.compute_dtype, calibration, a)
        return cls(m, gpu, s, prompt, output, dtype, fmt, resolve_kv_dtype(kv_dtype, fmt.act_dtype, m.checkpoint_dtype, m, s.accounting()),
                   gpu_run, hook, eff, a, draft)

    def memory(self, tp: int, pp: int, ep: int, seqs: int | None = None) -> Any:
        """The replica's engine memory, at max_num_seqs ``seqs`` when given (else the engine's setting)."""
        s = self.s if seqs is None else self.s.model_copy(update={"max_num_seqs": seqs})
        return engine_memory(self.m, self.gpu, settings=s, tp=tp, pp=pp, ep=ep, dtype=self.dtype, kv_dtype=self.kv_dtype,
                             tokens_per_request=self.prompt + self.output, assumptions=self.a, draft=self.draft)

    def starts(self, tp: int, pp: int, ep: int) -> bool:
        """Whether the engine starts with its --max-model-len on this layout (EngineSettings.refuses_short_cache: vLLM
        checks that one request of max_model_len tokens fits its KV cache, as `latency --max-model-len` and
        `concurrency` refuse it). A max_model_len of the request itself is the capacity check already made."""
        if self.s.max_model_len <= self.prompt + self.output or not self.s.refuses_short_cache():
            return True
        at_len = engine_memory(self.m, self.gpu, settings=self.s, tp=tp, pp=pp, ep=ep, dtype=self.dtype,
                               kv_dtype=self.kv_dtype, tokens_per_request=self.s.max_model_len, assumptions=self.a,
                               draft=self.draft)
        return at_len.max_concurrency >= 1

    def replica(self, tp: int, pp: int, ep: int, planned: bool = False) -> _Replica | None:
        """One TP x PP (x EP) replica with its engine memory; None when not one request fits. ``planned`` (serve's
        plans, whose emitted line sets --max-num-seqs): a vLLM replica whose KV cache admits fewer requests than its
        default max_num_seqs is sized at the largest B with max concurrency(max_num_seqs = B) >= B, since vLLM's profile
        run samples max_num_seqs dummy requests (B x vocabulary logits: 7.3 GiB for 1,024 of gpt-oss's 201,088) and a
        smaller cap leaves that memory to the KV cache; as launched at the default (planned False: a corpus row's
        engine, `concurrency`) otherwise."""
        mem = self.memory(tp, pp, ep)
        if mem.max_concurrency < 1 or planned and not self.starts(tp, pp, ep):
            return None
        given = self.s.max_num_seqs is not None
        if planned and not given and self.s.accounting() in ("vllm-v1", "vllm-v0") and mem.max_concurrency < mem.max_num_seqs:
            lo, hi = mem.max_concurrency, mem.max_num_seqs  # mc(lo) >= lo holds at the default; the answer is in [lo, hi)
            at_lo = None
            while hi - lo > 1:
                mid = (lo + hi) // 2
                trial = self.memory(tp, pp, ep, mid)
                if trial.max_concurrency >= mid:
                    lo, at_lo = mid, trial
                else:
                    hi = mid
            mem = at_lo or self.memory(tp, pp, ep, lo)
            r = _Replica(self.m, self.gpu_run, mem, self.prompt, self.output, self.hook, self.a, self.dtype, self.kv_dtype)
            r.kv_sized_seqs = True
            return r
        return _Replica(self.m, self.gpu_run, mem, self.prompt, self.output, self.hook, self.a, self.dtype, self.kv_dtype)


def _layout(r: _Replica, s: EngineSettings, ttft_ms, tpot_ms, rate, users, num_gpus, a,  # noqa: ANN001
            max_load: bool = False) -> Layout:
    """The layout at the batch it runs: the largest meeting both targets (powers of two, then bisection) for
    one replica or a fixed --num-gpus; when sizing for --rate / --users, the one of those batches that needs
    the fewest GPUs (then the most tokens/s per GPU), so a looser target, which only adds batches, never
    needs more GPUs. ``max_load`` (max_load_layout: no target, ``users`` the requests sent, nobody reads the
    frontier): the batch is the cap itself, min(KV cap, max_num_seqs, chunk cap, requests), as max_load_layout
    states, and only that batch is priced (the powers of two below it were nine in ten of a corpus row's steps);
    the frontier holds that one point."""
    cap = min(r.mem.max_concurrency, r.mem.max_num_seqs) * r.dp  # each attention group admits its own requests
    if users:
        cap = min(cap, users)  # a replica never runs more requests than there are users
    if (chunk := r.chunk_cap()) is not None:
        cap = min(cap, chunk)  # the steady state fits the engine's tokens per step
    frontier: list[FrontierPoint] = []
    feasible: list[tuple[int, StepTime, float]] = []
    gpr = r.tp * r.pp * r.dp

    def ok(st: StepTime, ttft: float) -> bool:
        return (tpot_ms is None or st.total_s * 1e3 <= tpot_ms) and (ttft_ms is None or ttft * 1e3 <= ttft_ms)

    assert not max_load or (ttft_ms is None and tpot_ms is None and rate is None), "a max-load layout has no target"
    for b in [cap] if max_load else _powers(cap):
        st = r.tpot(b)
        ttft = r.ttft_s(b)
        frontier.append(FrontierPoint(batch=b, ttft_ms=ttft * 1e3, tpot_ms=st.total_s * 1e3,
                                      tokens_per_s_per_gpu=slot_tokens_per_s(r, b, st, ttft) / gpr))
        if ok(st, ttft):
            feasible.append((b, st, ttft))
    if max_load:  # no target: the cap itself, met, with nothing after it
        return _sized(r, feasible[0], True, None, cap, frontier, s, ttft_ms, rate, users, num_gpus, a, max_load=True)
    if not feasible:
        return _sized(r, (1, r.tpot(1), r.ttft_s(1)), False, "unmet", cap, frontier, s, ttft_ms, rate, users, num_gpus, a)
    after = [p for p in frontier if p.batch > feasible[-1][0]]
    if after:  # bisect between the last power of two that meets the targets and the next one
        lo, hi = feasible[-1][0], after[0].batch
        while hi - lo > 1:
            mid = (lo + hi) // 2
            mst, mttft = r.tpot(mid), r.ttft_s(mid)
            if ok(mst, mttft):
                lo = mid
                feasible.append((mid, mst, mttft))
            else:
                hi = mid
        after = [FrontierPoint(batch=hi, ttft_ms=r.ttft_s(hi) * 1e3, tpot_ms=r.tpot(hi).total_s * 1e3,
                               tokens_per_s_per_gpu=0.0)]
    largest = max(feasible, key=lambda x: x[0])
    nxt = after[0] if after else None
    if num_gpus or not (rate or users):
        return _sized(r, largest, True, nxt, cap, frontier, s, ttft_ms, rate, users, num_gpus, a)
    sized = [_sized(r, x, True, nxt if x is largest else "fewest", cap, frontier, s, ttft_ms, rate, users, num_gpus, a)
             for x in feasible]
    return min(sized, key=lambda x: (not x.meets_targets, x.gpus_needed, -x.tokens_per_s_per_gpu))


def slot_tokens_per_s(r: _Replica, batch: int, st: StepTime, ttft_s: float) -> float:
    """Output tokens/s of one replica running ``batch`` requests in steady state, the figure `serve` ranks and
    prints per GPU (module docstring, "ranking"): B x O / (TTFT + (O - 1) x TPOT), each slot busy for a request's
    whole life (calc.serving.step.request_seconds), its prefill included; a disaggregated decode replica, whose
    prompts run in the prefill pool: B / TPOT.

    E.g. B = 4, O = 256, TTFT 43 s, TPOT 0.5 s: 4 x 256 / (43 + 255 x 0.5) = 6.0 tokens/s, not 4 / 0.5 = 8."""
    if r.disagg:
        return batch / st.total_s
    return batch * r.o / request_seconds(ttft_s, st.total_s, r.o)


def _sized(r: _Replica, point: tuple[int, StepTime, float], meets: bool, nxt, cap: int,  # noqa: ANN001
           frontier: list[FrontierPoint], s: EngineSettings, ttft_ms, rate, users, num_gpus, a,  # noqa: ANN001
           max_load: bool = False) -> Layout:
    """The replicas, queueing, GPUs and energy of a layout running ``point`` = (batch, TPOT step, TTFT);
    ``nxt``: the next frontier point (what stops the batch growing), "unmet" when not even batch 1 meets the targets,
    or "fewest" when a larger batch met the
    targets but needs more GPUs for the traffic (binding "fewest GPUs (traffic)")."""
    b, st, ttft = point
    gpr = r.tp * r.pp * r.dp
    service = request_seconds(ttft, st.total_s, r.o)
    mu = b / service
    replicas, queue = _replicas(rate, users, num_gpus, gpr, b, mu, service, ttft, ttft_ms, utilization_cap(a, ttft_ms),
                                a.router)
    prefill_gpus, name = 0, f"DP{r.dp} x TP{r.tp} attention + EP{r.ep}" if r.ep > 1 else f"TP{r.tp} x PP{r.pp}"
    if r.disagg:  # the prefill pool that feeds these decode replicas (calc.serving.disagg)
        t_p = prefill_seconds(r, r.mem)
        arrivals = rate or (replicas * b / service if users else replicas * mu)
        instances, wait = prefill_instances(arrivals, t_p, ttft - t_p, ttft_ms, a.router)
        queue += wait
        prefill_gpus, name = instances * gpr, f"disagg TP{r.tp}: {instances} prefill + {replicas} decode"
    # a fixed --num-gpus whose replicas cannot admit every user at once does not carry them (as a rate it cannot);
    # a max-load layout's ``users`` are the requests sent, which queue for the batch by design
    short = bool(users and num_gpus and not max_load and replicas * b < users)
    meets = (meets and not short and (rate is None or queue < math.inf)
             and (ttft_ms is None or (ttft + queue) * 1e3 <= ttft_ms))
    total_gpus = replicas * gpr + prefill_gpus
    traffic_gpus = None
    if num_gpus and (rate or users) and not max_load:  # what the traffic needs of this layout, the budget aside
        needed = _replicas(rate, users, None, gpr, b, mu, service, ttft, ttft_ms, utilization_cap(a, ttft_ms),
                           a.router)[0]
        traffic_gpus = needed * gpr + prefill_gpus
        meets = meets and traffic_gpus <= num_gpus  # as sizing would: past the planning margin the budget falls short
    util = max(st.compute_s, st.memory_s) / st.total_s
    power = gpr * r.gpu.tdp_w * (0.3 + 0.7 * util) if r.gpu.tdp_w else None
    ttft_total = (ttft + queue) * 1e3 if queue < math.inf else math.inf
    if users and b == users:
        binding = "traffic (all users admitted)"
    elif nxt == "fewest":
        binding = "fewest GPUs (traffic)"  # a larger batch meets the targets but needs more GPUs
    elif nxt == "unmet":  # not even batch 1 meets the targets: the one it misses, not a capacity
        binding = ("TTFT target (missed at batch 1)" if ttft_ms is not None and ttft * 1e3 > ttft_ms
                   else "TPOT target (missed at batch 1)")
    else:
        binding = _binding(b, cap, r.mem.max_num_seqs * r.dp, st, nxt, ttft_ms, chunked=cap == r.chunk_cap(),
                           kv_sized_seqs=r.kv_sized_seqs)
    return Layout(
        name=name, tp=r.tp, pp=r.pp, ep=r.ep, gpus_per_replica=gpr, replicas=replicas, batch=b, ttft_ms=ttft_total,
        tpot_ms=st.total_s * 1e3, queue_ms=queue * 1e3, tokens_per_s=slot_tokens_per_s(r, b, st, ttft),
        decode_tokens_per_s=b / st.total_s,
        # per GPU of what is paid for: a fixed --num-gpus budget counts the GPUs its replicas leave idle too
        tokens_per_s_per_gpu=replicas * slot_tokens_per_s(r, b, st, ttft) / max(total_gpus, num_gpus or 0),
        requests_per_s_per_replica=mu,
        kv_cache_tokens=r.mem.kv_cache_tokens * r.dp, max_concurrency=r.mem.max_concurrency * r.dp,
        gpus_needed=total_gpus, prefill_gpus=prefill_gpus, traffic_gpus=traffic_gpus, meets_targets=meets, binding=binding,
        sized=bool((rate or users) and not num_gpus),
        tp_spans_nodes=r.tp > a.gpus_per_node, energy_j_per_token=power * st.total_s / b if power else None,
        frontier=frontier,
    )


LIGHT_LOAD = 0.5  # below this share of its slots busy, a replica's full-batch TTFT / TPOT overstate what users see


def light_load(best: Layout | None, rate: float | None, output: int) -> LightLoad | None:
    """A layout's TTFT / TPOT are priced at its full batch B (the planning figure: every slot busy). At a rate that keeps
    its slots less than LIGHT_LOAD busy, a replica holds about L = rate / replicas x (TTFT_b + (O - 1) x TPOT_b)
    requests at the frontier point b it runs at (Little's law at that point's own request time), and users see that
    point's figures: the smallest frontier batch b >= L_b (the load it holds at its own speed; the full batch's request
    time overstated L, 3x on Llama 3 8B at 5 requests/s), or None at heavier load (or without a rate)."""
    if best is None or not rate or not best.frontier:
        return None
    rho = rate / (best.replicas * best.requests_per_s_per_replica)
    if rho >= LIGHT_LOAD:
        return None
    per = rate / best.replicas

    def held_at(f: FrontierPoint) -> float:
        return per * (f.ttft_ms + (output - 1) * f.tpot_ms) / 1e3

    point = next((f for f in best.frontier if f.batch >= held_at(f)), best.frontier[-1])
    held = held_at(point)
    return LightLoad(busy=rho, requests_held=held, batch=point.batch, ttft_ms=point.ttft_ms, tpot_ms=point.tpot_ms)


def light_load_line(best: Layout, light: LightLoad, rate: float) -> str:
    """A light_load point as its assumption line."""
    return (f"light load: the best layout's slots run {light.busy:.0%} busy, so its TTFT / TPOT above are at its full "
            f"batch {best.batch:,}; a replica holds about {light.requests_held:,.1f} requests at {count(rate)} requests/s "
            f"(Little's law), nearer its frontier's batch-{light.batch:,} figures: TTFT {light.ttft_ms:,.0f} ms, "
            f"TPOT {light.tpot_ms:,.1f} ms")


def utilization_cap(a: ServingAssumptions, ttft_ms: float | None) -> float:
    """The busiest share of its request slots a replica may run at under a --rate: a.max_utilization when given,
    else DEFAULT_MAX_UTILIZATION without a TTFT target (the queue is then bounded by nothing else) and 1 (any stable
    queue: the target bounds the wait) with one.

    >>> utilization_cap(ServingAssumptions(), None), utilization_cap(ServingAssumptions(), 2000.0)
    (0.9, 1.0)
    """
    if a.max_utilization is not None:
        return a.max_utilization
    return DEFAULT_MAX_UTILIZATION if ttft_ms is None else 1.0


def _replicas(rate, users, num_gpus, gpr, batch, mu, service, ttft, ttft_ms, cap=1.0,  # noqa: ANN001
              router="least-loaded") -> tuple[int, float]:  # noqa: ANN001
    """Replicas for the traffic and the queueing delay each then sees: for a rate, the fewest whose slots run at
    most ``cap`` busy, rho = R x S / (n x B) <= cap, and whose wait behind ``router`` (calc.serving.queueing
    pool_queue_s) keeps TTFT within target (calc.serving.queueing.fewest)."""
    if num_gpus:
        n = num_gpus // gpr
        return n, pool_queue_s(rate, n, batch, service, router) if rate else 0.0
    if users:
        return math.ceil(users / batch), 0.0
    if not rate:
        return 1, 0.0

    def ok(n: int) -> bool:
        wait = pool_queue_s(rate, n, batch, service, router)
        return (wait < math.inf and rate / (n * mu) <= cap + 1e-12
                and (ttft_ms is None or (ttft + wait) * 1e3 <= ttft_ms or wait * 1e3 < 1))

    n = fewest(max(math.ceil(rate / (mu * cap) - 1e-9), 1), ok)
    return (n, pool_queue_s(rate, n, batch, service, router)) if n else (100_000, math.inf)


def _miss(x: Layout, targets: tuple[float | None, float | None]) -> float:
    """How far a layout is from the TTFT / TPOT targets: the larger of figure / target over the targets given."""
    ttft_ms, tpot_ms = targets
    return max((x.ttft_ms / ttft_ms) if ttft_ms else 0.0, (x.tpot_ms / tpot_ms) if tpot_ms else 0.0)


def _verdict(m, gpu, layouts, best, rate, users, num_gpus, unloadable=(), max_len=None,  # noqa: ANN001
             targets=(None, None)) -> str:  # noqa: ANN001
    if not layouts:
        return (f"no layout of up to {num_gpus or 64} x {gpu.name} holds one request of {m.name}"
                + (f" of --max-model-len {max_len:,} tokens (the engine checks one fits at startup)" if max_len else "")
                + ": it does not fit"
                + (f" ({len(unloadable)} the engine would not load: {unloadable[0]})" if unloadable else ""))
    if best is None:
        x = layouts[0]
        if rate and x.ttft_ms == math.inf:
            if num_gpus is None:
                return f"no number of {x.name} replicas on {gpu.name} carries {count(rate)} requests/s within the queueing model"
            return (f"{num_gpus} x {gpu.name} cannot carry {count(rate)} requests/s: the best layout, {x.replicas} x {x.name}, "
                    f"serves {x.replicas * x.requests_per_s_per_replica:,.2f} requests/s; drop --num-gpus to size it")
        if users and num_gpus and x.replicas * x.batch < users:
            x = max(layouts, key=lambda y: y.replicas * y.batch)  # the layout that admits the most
            return (f"{num_gpus} x {gpu.name} cannot hold {users:,} users at once: the layout that admits the most, "
                    f"{x.replicas} x {x.name}, runs {x.replicas * x.batch:,} requests (batch {x.batch} a replica); "
                    "drop --num-gpus to size it")
        if rate and num_gpus and x.traffic_gpus is not None and x.traffic_gpus > num_gpus:
            x = min((y for y in layouts if y.traffic_gpus is not None), key=lambda y: y.traffic_gpus or 0)
            return (f"{num_gpus} x {gpu.name} cannot carry {count(rate)} requests/s within the planning margin "
                    f"(--max-utilization): the layout needing the fewest, {x.name}, needs {x.traffic_gpus:,} GPUs for "
                    "it; drop --num-gpus to size it, or raise --max-utilization")
        x = min(layouts, key=lambda y: _miss(y, targets)) if any(targets) else x  # the smallest miss of a target
        return (f"no layout meets the targets; closest: {x.name} at TTFT {x.ttft_ms:,.0f} ms, TPOT {x.tpot_ms:,.1f} ms")
    traffic = (f"{count(rate)} requests/s" if rate else f"{users} users" if users else
               plural(num_gpus, "GPU") if num_gpus else "one replica")
    # a best layout on a fixed --num-gpus carries the traffic within it (_sized): what of it the traffic needs
    needs = "" if best.traffic_gpus is None else f" (the traffic needs {best.traffic_gpus:,} of the {num_gpus:,} GPUs given)"
    return (f"best: {plural(best.replicas, 'replica')} x {best.name} = {best.gpus_needed} x {gpu.name} for "
            f"{traffic}{needs}; batch {best.batch}, TTFT {best.ttft_ms:,.0f} ms, TPOT {best.tpot_ms:,.1f} ms, "
            f"{best.tokens_per_s_per_gpu:,.0f} tokens/s/GPU; binds: {best.binding}"
            + (f"; ~{best.energy_j_per_token:.2f} J per output token at board power" if best.energy_j_per_token else ""))


def _light_verdict(light: LightLoad | None, rate: float | None) -> str:
    """The headline's clause for a lightly loaded plan: the figures users see at the rate, beside the full-batch ones."""
    if light is None or rate is None:
        return ""
    return (f"; at {count(rate)} requests/s a replica holds ~{light.requests_held:,.1f} requests: users see about TTFT "
            f"{light.ttft_ms:,.0f} ms, TPOT {light.tpot_ms:,.1f} ms (its batch-{light.batch:,} point)")


def plan_explain(layouts: list[Layout]) -> list[str]:
    """Each layout's derivation: KV tokens, batch, TPOT / TTFT, requests/s per replica, replicas and GPUs."""
    return [
        f"{x.name}: KV {x.kv_cache_tokens:,} tokens -> up to {plural(x.max_concurrency, 'request')}; at batch {x.batch} "
        f"TPOT {x.tpot_ms:.2f} ms, TTFT {x.ttft_ms:.1f} ms (queue {x.queue_ms:.1f}); mu = B/(TTFT + (O - 1) x TPOT) = "
        f"{x.requests_per_s_per_replica:.3f} req/s per replica; {plural(x.replicas, 'replica')} -> {plural(x.gpus_needed, 'GPU')}"
        for x in layouts
    ]


def launch_cap_note(plan: ServePlan) -> str | None:
    """The running-request cap the best layout's engine is launched with (its batch per attention group, as
    _launched_memory and the --emit line set it), said where a page also shows the engine's default launch (report);
    None without a best layout."""
    best = plan.best
    if best is None:
        return None
    flag, cap, scope = request_cap(plan.engine, best.batch, best.tp, best.ep)
    return (f"each replica's engine runs at its batch, launched with {flag} {cap}" + (f" {scope}" if scope else "")
            + " (as `serve --emit` writes it); the concurrency figures above are the engine's default launch")
