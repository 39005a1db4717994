"""Serving answers: roofline latency and max concurrency (reference sections 5 and 8).

Latency by roofline (Williams et al. 2009): each phase takes the larger of its compute time
(FLOPs / (GPUs x peak x compute efficiency)) and memory time (bytes / (GPUs x bandwidth x memory
efficiency)), plus TP all-reduce time over the GPU link.
Max concurrency = floor(free memory per GPU / KV bytes per request per GPU).
"""

from __future__ import annotations

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.hardware.calibration import Calibration, efficiency_for
from calc.hardware.collectives import ring_allreduce_seconds
from calc.hardware.peaks import peak_tflops
from calc.memory import DEFAULT_RESERVE_GIB, inference_memory, kv_cache_bytes_per_token
from calc.model.flops import decode_flops, forward_flops
from calc.model.parallel import check_layout, check_num_gpus, tp_allreduce_bytes_per_layer
from calc.model.params import count_params
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.units import TERA, dtype_bytes


def check_serving_gpus(m: ModelSpec, num_gpus: int) -> Parallelism:
    """Serving splits the model by TP = number of GPUs; name the flag the user actually typed."""
    check_num_gpus(num_gpus)
    try:
        return check_layout(m, Parallelism(tp=num_gpus))
    except LLMCalcError as exc:
        raise LLMCalcError("--num-gpus", f"serving uses TP = GPUs, and {exc.problem}") from None


class LatencyResult(BaseModel):
    model: str
    gpu: str
    num_gpus: int
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
    tokens_per_s: float
    e2e_s: float
    ttft_at_full_peak_s: float
    verdict: str
    explain: list[str]


def _weight_bytes_read(m: ModelSpec, dtype: str, tokens: int) -> float:
    """Weights streamed from HBM once per pass; routed experts only as far as they are touched."""
    p = count_params(m)
    elem = float(dtype_bytes(dtype))
    if not m.moe:
        return p.total_params * elem
    experts = p.components.get("experts", 0)
    touched = min(m.moe.num_experts, tokens * m.moe.experts_per_token) / m.moe.num_experts
    return (p.total_params - experts + experts * touched) * elem


def latency(
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int = 1, batch: int = 1, prompt: int = 1024, output: int = 128,
    dtype: str = "bf16", kv_dtype: str | None = None, causal: bool = False, calibration: Calibration | None = None,
    target_ttft_s: float | None = None,
) -> LatencyResult:
    """TTFT of prefilling B prompts of P tokens and TPOT of decoding T tokens, by roofline, with TP = GPUs."""
    check_serving_gpus(m, num_gpus)
    elem = float(dtype_bytes(dtype))
    kv_token = kv_cache_bytes_per_token(m, kv_dtype or dtype)  # whole model; bandwidth is summed over GPUs
    eff = efficiency_for(gpu, dtype, calibration)
    peak = peak_tflops(gpu, dtype) * TERA
    bandwidth = gpu.hbm_tb_s * TERA
    compute_rate = num_gpus * peak * eff.compute
    memory_rate = num_gpus * bandwidth * eff.memory

    pre = forward_flops(m, batch, prompt, causal=causal)
    pre_bytes = _weight_bytes_read(m, dtype, batch * prompt) + kv_token * batch * prompt
    pre_compute, pre_memory = pre.forward_flops / compute_rate, pre_bytes / memory_rate
    pre_comm = m.num_layers * ring_allreduce_seconds(
        tp_allreduce_bytes_per_layer(m, batch * prompt, elem), num_gpus, gpu.interconnect_gb_s)
    ttft = max(pre_compute, pre_memory) + pre_comm

    mid = prompt + (output + 1) // 2  # the average context over the generation
    dec = decode_flops(m, batch, mid - 1, 1)
    dec_bytes = _weight_bytes_read(m, dtype, batch) + kv_token * batch * mid
    dec_compute, dec_memory = dec.generation_flops / compute_rate, dec_bytes / memory_rate
    dec_comm = m.num_layers * ring_allreduce_seconds(
        tp_allreduce_bytes_per_layer(m, batch, elem), num_gpus, gpu.interconnect_gb_s)
    tpot = max(dec_compute, dec_memory) + dec_comm
    ridge = peak / bandwidth
    at_peak = pre.forward_flops / (num_gpus * peak)
    verdict = f"TTFT {ttft * 1e3:,.0f} ms ({'compute' if pre_compute >= pre_memory else 'memory'}-bound), " \
              f"TPOT {tpot * 1e3:,.1f} ms, {batch / tpot:,.0f} tokens/s decode"
    if target_ttft_s is not None:
        if at_peak > target_ttft_s:
            reach = "not reachable on these GPUs even at 100% of peak"
        elif ttft > target_ttft_s:
            reach = f"reachable only above the assumed {eff.compute:.0%} efficiency"
        else:
            reach = "reachable"
        verdict = (f"prefill needs >= {at_peak:.2f} s at 100% of peak ({ttft:.2f} s at {eff.compute:.0%}): "
                   f"{target_ttft_s * 1e3:.0f} ms is {reach}")
    return LatencyResult(
        model=m.name, gpu=gpu.name, num_gpus=num_gpus, batch=batch, prompt=prompt, output=output, dtype=dtype,
        efficiency_source=eff.source, compute_efficiency=eff.compute, memory_efficiency=eff.memory,
        ridge_point_flops_per_byte=ridge,
        prefill_flops=pre.forward_flops, prefill_bytes=pre_bytes, prefill_intensity=pre.forward_flops / pre_bytes,
        prefill_compute_s=pre_compute, prefill_memory_s=pre_memory, prefill_comm_s=pre_comm, ttft_s=ttft,
        prefill_bound="compute" if pre_compute >= pre_memory else "memory",
        decode_flops_per_step=dec.generation_flops, decode_bytes_per_step=dec_bytes,
        decode_intensity=dec.generation_flops / dec_bytes,
        decode_compute_s=dec_compute, decode_memory_s=dec_memory, decode_comm_s=dec_comm, tpot_s=tpot,
        decode_bound="compute" if dec_compute >= dec_memory else "memory",
        tokens_per_s=batch / tpot, e2e_s=ttft + output * tpot, ttft_at_full_peak_s=at_peak,
        verdict=verdict,
        explain=[
            f"ridge point = peak/bandwidth = {peak:.4g}/{bandwidth:.4g} = {ridge:.0f} FLOPs/byte",
            f"prefill FLOPs (B={batch}, S={prompt}, {pre.convention}) = {pre.forward_flops:.4g}; "
            f"intensity {pre.forward_flops / pre_bytes:,.0f} FLOPs/byte",
            f"prefill compute = {pre.forward_flops:.4g} / ({num_gpus} x {peak:.4g} x {eff.compute:.2f}) = {pre_compute:.4f} s",
            f"prefill memory = {pre_bytes:.4g} B / ({num_gpus} x {bandwidth:.4g} x {eff.memory:.2f}) = {pre_memory:.4f} s",
            f"prefill TP all-reduce = L x 2 x ring(B*S*H*bytes) = {pre_comm:.4f} s; TTFT = {ttft:.4f} s",
            f"decode step at context {mid}: FLOPs {dec.generation_flops:.4g}, bytes (weights + KV) {dec_bytes:.4g}; "
            f"compute {dec_compute * 1e3:.3f} ms, memory {dec_memory * 1e3:.3f} ms, comm {dec_comm * 1e3:.3f} ms",
            f"at 100% of peak the prefill alone takes {pre.forward_flops:.4g} / ({num_gpus} x {peak:.4g}) = {at_peak:.3f} s",
            "all-reduce latency per call is not modelled (bandwidth term only)",
        ],
    )


class ConcurrencyRow(BaseModel):
    max_tokens: int
    kv_cache_bytes_per_request: int
    max_concurrency: int


class ConcurrencyResult(BaseModel):
    model: str
    gpu: str
    num_gpus: int
    dtype: str
    kv_dtype: str
    max_tokens: int
    capacity_bytes: int
    weights_bytes: int
    reserve_bytes: int
    activation_bytes: int
    free_bytes: int
    kv_cache_bytes_per_request: int
    max_concurrency: int
    shortfall_bytes: int
    table: list[ConcurrencyRow]
    assumptions: list[str]
    verdict: str
    explain: list[str]


CONTEXT_TABLE = (1024, 2048, 4096, 8192, 16384, 32768)


def concurrency(
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int = 1, max_tokens: int = 4096, dtype: str = "bf16",
    kv_dtype: str | None = None, reserve_gib: float = DEFAULT_RESERVE_GIB,
) -> ConcurrencyResult:
    """Requests of ``max_tokens`` (input + output) whose KV cache fits beside the weights.

    Per GPU (TP = GPUs): free = capacity - weights/t - activations of one prefill/t - reserve;
    max = floor(free / (KV per token per GPU x max_tokens)). 0 with the shortfall when free < 0.
    """
    check_serving_gpus(m, num_gpus)
    kv_dtype = kv_dtype or dtype

    def per_gpu(tokens: int):  # noqa: ANN202 - local helper
        mem = inference_memory(m, gpu=gpu, plan=Parallelism(tp=num_gpus), dtype=dtype, kv_dtype=kv_dtype,
                               batch=1, seq=tokens, reserve_gib=reserve_gib)
        pg = mem.per_gpu
        free = gpu.memory_bytes - pg["weights"] - pg["activations"] - pg["reserve"]
        return mem, free, pg["kv_cache"], max(free // pg["kv_cache"], 0)

    table = []
    for tokens in CONTEXT_TABLE:
        _, _, kv_gpu, fit = per_gpu(tokens)
        table.append(ConcurrencyRow(max_tokens=tokens, kv_cache_bytes_per_request=kv_gpu * num_gpus,
                                    max_concurrency=fit))
    mem, free_gpu, kv_req_gpu, count = per_gpu(max_tokens)
    capacity = gpu.memory_bytes * num_gpus
    free = free_gpu * num_gpus
    kv_request = kv_req_gpu * num_gpus  # as stored on all GPUs (replicated KV heads counted)
    if count > 0:
        verdict = f"{count} concurrent requests of {max_tokens} tokens fit on {num_gpus} x {gpu.name}"
    elif free < 0:
        verdict = (f"0 requests: weights and reserves exceed {num_gpus} x {gpu.name} by {-free / 1e9:.1f} GB; "
                   f"needs >= {mem.min_gpus or 'more than 4096'} GPUs")
    else:
        verdict = f"0 requests: {free / 1e9:.2f} GB free is less than one request's KV cache ({kv_request / 1e9:.2f} GB)"
    return ConcurrencyResult(
        model=m.name, gpu=gpu.name, num_gpus=num_gpus, dtype=dtype, kv_dtype=kv_dtype, max_tokens=max_tokens,
        capacity_bytes=capacity, weights_bytes=mem.weights_bytes, reserve_bytes=mem.reserve_bytes,
        activation_bytes=mem.activation_bytes, free_bytes=free, kv_cache_bytes_per_request=kv_request,
        max_concurrency=int(count), shortfall_bytes=max(-free, 0), table=table,
        assumptions=mem.assumptions + [f"TP = {num_gpus}; one prefill of {max_tokens} tokens in flight"],
        verdict=verdict,
        explain=[
            f"capacity = {num_gpus} x {gpu.memory_bytes:,} B = {capacity:,} B",
            f"free per GPU = {gpu.memory_bytes:,} - weights {mem.per_gpu['weights']:,} - activations "
            f"{mem.per_gpu['activations']:,} - reserve {mem.per_gpu['reserve']:,} = {free_gpu:,} B",
            f"KV per request per GPU = {mem.per_gpu['kv_cache']:,} B ({max_tokens} tokens)",
            f"max concurrency = floor({free_gpu:,} / {kv_req_gpu:,}) = {count}",
        ],
    )
