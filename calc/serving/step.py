"""Time of one engine step (a forward pass over decode tokens plus a prefill chunk) on one replica.

Roofline per step (Williams et al. 2009) with the terms that dominate at serving sizes:
    compute = FLOPs / (t x peak x e_c x M/(M + M0))    GEMM efficiency falls at small M tokens
    memory  = (weights read on a rank + KV read by every sequence) / (bandwidth x e_m)
    comm    = L x 2 all-reduces x (latency + ring bytes / link)   Megatron TP, arXiv 1909.08053 sec. 3
    step    = max(compute, memory) + comm + per-step overhead
Weights are read once per step whatever the batch (that is why batching pays); each sequence reads
its own KV. Pipeline parallelism: a micro-batch of B/p sequences traverses all p stages, so its step
is the TP-only step at B/p tokens plus (p-1) stage-to-stage sends; p micro-batches are in flight.
"""

from __future__ import annotations

from pydantic import BaseModel

from calc.hardware.calibration import Efficiency
from calc.hardware.peaks import peak_tflops
from calc.memory.kv import kv_cache_bytes_per_token
from calc.model.flops import attention_dims
from calc.model.params import count_params
from calc.serving.assumptions import ServingAssumptions
from calc.specs import GPUSpec, ModelSpec
from calc.units import TERA, dtype_bytes

ACT_BYTES = 2  # activations and all-reduce payloads in 16 bits


class StepTime(BaseModel):
    tokens: int
    flops: float
    bytes_read: float
    gemm_efficiency: float
    compute_s: float
    memory_s: float
    comm_s: float
    overhead_s: float
    total_s: float
    bound: str


_COUNTS: dict[int, tuple[ModelSpec, int, int, int]] = {}


def _counts(m: ModelSpec) -> tuple[int, int, int]:
    """(matmul params, total params, routed-expert params), counted once per model object: a layout
    search evaluates hundreds of steps of the same model."""
    hit = _COUNTS.get(id(m))
    if hit is None or hit[0] is not m:
        p = count_params(m)
        hit = _COUNTS[id(m)] = (m, p.matmul_params, p.total_params, p.components.get("experts", 0))
    return hit[1], hit[2], hit[3]


def weight_bytes_read(m: ModelSpec, dtype: str, tokens: int) -> float:
    """Weights streamed from HBM once per step; routed experts only as far as ``tokens`` touch them
    (each token picks k of E experts; at most all E are read)."""
    _, total, experts = _counts(m)
    elem = float(dtype_bytes(dtype))
    if not m.moe:
        return total * elem
    touched = min(m.moe.num_experts, tokens * m.moe.experts_per_token) / m.moe.num_experts
    return (total - experts + experts * touched) * elem


def allreduce_s(num_bytes: float, tp: int, gpu: GPUSpec, a: ServingAssumptions) -> float:
    """One ring all-reduce: latency + 2(t-1)/t x bytes / per-direction bandwidth; across nodes when
    t exceeds a node, at the network's latency and per-GPU bandwidth."""
    if tp == 1:
        return 0.0
    across = tp > a.gpus_per_node
    latency = a.internode_latency_s if across else a.allreduce_latency_s
    link = a.internode_gb_s if across else gpu.interconnect_gb_s / 2
    if link <= 0:
        link = a.internode_gb_s  # no NVLink-class link recorded: PCIe/network class
    return latency + 2 * (tp - 1) / tp * num_bytes / (link * 1e9)


def p2p_s(num_bytes: float, across_nodes: bool, gpu: GPUSpec, a: ServingAssumptions) -> float:
    """One pipeline stage-to-stage send of the activations."""
    link = a.internode_gb_s if across_nodes or gpu.interconnect_gb_s <= 0 else gpu.interconnect_gb_s / 2
    return (a.internode_latency_s if across_nodes else a.allreduce_latency_s) + num_bytes / (link * 1e9)


def step_time(
    m: ModelSpec, gpu: GPUSpec, eff: Efficiency, a: ServingAssumptions, *, tp: int = 1, pp: int = 1,
    dtype: str = "bf16", kv_dtype: str | None = None, decode_seqs: int = 0, decode_context: float = 0,
    prefill_tokens: int = 0, prefill_context: float = 0,
) -> StepTime:
    """One step of ``decode_seqs`` sequences (each attending ``decode_context`` keys) plus a prefill
    chunk of ``prefill_tokens`` (each attending ``prefill_context`` keys on average), on a TP group
    of ``tp`` GPUs (PP: call with the micro-batch; the stage sends are added here)."""
    tokens = decode_seqs + prefill_tokens
    d_qk, d_v = attention_dims(m)
    per_key = m.num_layers * 2 * m.num_heads * (d_qk + d_v)
    flops = 2 * tokens * _counts(m)[0]
    flops += per_key * (decode_seqs * decode_context + prefill_tokens * prefill_context)
    gemm_eff = eff.compute * tokens / (tokens + a.gemm_half_tokens)
    compute = flops / (tp * peak_tflops(gpu, dtype) * TERA * gemm_eff)
    kv_token = kv_cache_bytes_per_token(m, kv_dtype or dtype, tp)
    kv_read = kv_token * (decode_seqs * decode_context + prefill_tokens + (prefill_context if prefill_tokens else 0))
    bytes_read = weight_bytes_read(m, dtype, tokens) / tp + kv_read
    memory = bytes_read / (gpu.hbm_tb_s * TERA * eff.memory)
    comm = m.num_layers * 2 * allreduce_s(tokens * m.hidden_size * ACT_BYTES, tp, gpu, a)
    if pp > 1:
        across = tp * pp > a.gpus_per_node
        comm += (pp - 1) * p2p_s(tokens * m.hidden_size * ACT_BYTES, across, gpu, a)
    parts = {"compute": compute, "memory": memory, "communication": comm, "overhead": a.step_overhead_s}
    total = max(compute, memory) + comm + a.step_overhead_s
    bound = max(parts, key=parts.__getitem__)
    return StepTime(tokens=tokens, flops=flops, bytes_read=bytes_read, gemm_efficiency=gemm_eff, compute_s=compute,
                    memory_s=memory, comm_s=comm, overhead_s=a.step_overhead_s, total_s=total, bound=bound)
