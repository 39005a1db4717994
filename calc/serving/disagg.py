"""Disaggregated serving: a prefill pool and a decode pool (DistServe, Zhong et al. OSDI 2024; Splitwise,
Patel et al. ISCA 2024; vLLM / SGLang PD disaggregation with a KV connector).

Per TP size t (both pools), with P prompt and O output tokens:
    prefill instance : floor(P / chunk) steps of chunk tokens and one of the rest (calc.serving.step.prompt_chunks),
                       no decode interference: t_p; it serves 1 / t_p requests/s
    KV transfer      : the prompt's KV (P x KV bytes/token on each rank) over each GPU's network link
                       (ServingAssumptions.internode_gb_s): t_kv
    decode replica   : steps of B decode tokens only (no prefill chunks): TPOT(B); B the largest meeting
                       the TPOT target and the KV capacity; it serves
                       B / (TTFT + (O - 1) x TPOT) requests/s (calc.serving.step.request_seconds)
    TTFT             = t_p + prefill queueing (M/D/1 per instance) + t_kv
GPUs = (prefill instances + decode replicas) x t.
"""

from __future__ import annotations

import math
from typing import Any

from calc.serving.engine_memory import EngineMemory
from calc.serving.queueing import fewest, pool_queue_s
from calc.serving.step import StepTime, _system, decode_context, decode_range, prompt_chunks, step_time


def prefill_seconds(replica: Any, mem: EngineMemory) -> float:
    """One prompt through a prefill-only instance, in chunks of the engine's batched tokens (the last for its own)."""
    return sum(n * step_time(replica.m, replica.gpu, replica.a, tp=mem.tp, dtype=replica.dtype,
                             kv_dtype=replica.kv_dtype, calibration=replica.hook, prefill_tokens=tokens,
                             prefill_prompt=replica.p).total_s
               for n, tokens in prompt_chunks(replica.p, mem.batched_tokens))


def kv_transfer_seconds(replica: Any, mem: EngineMemory) -> float:
    """The prompt's KV from the prefill ranks to the decode ranks, rank to rank in parallel over the NIC."""
    system = _system(replica.gpu, replica.a)
    return system.inter_node_latency_s + replica.p * mem.kv_bytes_per_token / (system.inter_node_gb_s * 1e9)


def decode_step(replica: Any, batch: int) -> StepTime:
    """A decode-only step of ``batch`` sequences at the mean context."""
    return step_time(replica.m, replica.gpu, replica.a, tp=replica.tp, dtype=replica.dtype, kv_dtype=replica.kv_dtype,
                     calibration=replica.hook, decode_seqs=batch, decode_context=decode_context(replica.p, replica.o),
                     decode_contexts=decode_range(replica.p, replica.o))


def prefill_instances(rate: float, t_p: float, t_kv: float, ttft_ms: float | None,
                      router: str = "least-loaded") -> tuple[int, float]:
    """Fewest prefill instances whose queueing (one prompt at a time each, behind ``router``: calc.serving.queueing
    pool_queue_s) keeps TTFT within target (rho < 1 without one); (instances, wait), the wait inf when none up to
    100,000 does."""

    def ok(n: int) -> bool:
        wait = pool_queue_s(rate, n, 1, t_p, router)
        return wait < math.inf and (ttft_ms is None or (t_p + wait + t_kv) * 1e3 <= ttft_ms or wait * 1e3 < 1)

    n = fewest(max(math.ceil(rate * t_p), 1), ok)
    return (n, pool_queue_s(rate, n, 1, t_p, router)) if n else (100_000, math.inf)
