"""Performance answers built on the params, FLOPs and memory engines (reference sections 5 and 8).

MFU = achieved model FLOPs/s / (GPUs x peak) (PaLM arXiv 2204.02311 appendix B).
Training time = total FLOPs / (GPUs x peak x MFU).
Latency by roofline (Williams et al. 2009): each phase takes the larger of its compute time
(FLOPs / (GPUs x peak x compute efficiency)) and memory time (bytes / (GPUs x bandwidth x memory
efficiency)), plus TP all-reduce time over the GPU link.
Max concurrency = floor(free memory per GPU / KV bytes per request per GPU).
"""

from __future__ import annotations

from pydantic import BaseModel

from calc.calibration import Calibration, efficiency_for
from calc.errors import LLMCalcError
from calc.flops import decode_flops, forward_flops
from calc.hardware import peak_tflops
from calc.memory import DEFAULT_RESERVE_GIB, inference_memory, kv_cache_bytes_per_token
from calc.parallel import ring_allreduce_seconds, tp_allreduce_bytes_per_layer
from calc.params import count_params
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.units import TERA, check_fraction, check_positive, dtype_bytes

HOURS = 3600.0


def _check_gpus(num_gpus: int) -> None:
    if num_gpus < 1:
        raise LLMCalcError("--num-gpus", f"must be >= 1, got {num_gpus}")


def _check_serving_gpus(m: ModelSpec, num_gpus: int) -> Parallelism:
    """Serving splits the model by TP = number of GPUs; name the flag the user actually typed."""
    from calc.parallel import check_layout

    _check_gpus(num_gpus)
    try:
        return check_layout(m, Parallelism(tp=num_gpus))
    except LLMCalcError as exc:
        raise LLMCalcError("--num-gpus", f"serving uses TP = GPUs, and {exc.problem}") from None


class MFUResult(BaseModel):
    model: str
    gpu: str
    num_gpus: int
    seq: int
    dtype: str
    peak_tflops: float
    tokens_per_s: float
    model_flops: float
    flops_per_token_6n: float
    flops_per_token: float
    mfu: float
    mfu_with_attention: float
    hfu_full_recompute: float
    mfu_of_measured: float | None
    verdict: str
    explain: list[str]


def mfu(
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int = 1, seq: int = 2048, dtype: str = "bf16",
    tokens: float | None = None, gpu_hours: float | None = None, tokens_per_s: float | None = None,
    step_time_s: float | None = None, global_batch: float | None = None, causal: bool = False,
    calibration: Calibration | None = None,
) -> MFUResult:
    """MFU from a finished run (tokens, GPU-hours), observed tokens/s, or step time x global batch.

    6N form: tokens/s x 6N / (GPUs x peak). With attention: 6N is replaced by the exact training
    FLOPs per token at sequence length S (3 x forward / S). HFU with full recomputation: 4/3 of it.
    """
    _check_gpus(num_gpus)
    peak = peak_tflops(gpu, dtype) * TERA
    if tokens is not None and gpu_hours is not None:
        check_positive(tokens, "--tokens")
        check_positive(gpu_hours, "--gpu-hours")
        rate_per_gpu = tokens / (gpu_hours * HOURS)
        how = f"finished run: {tokens:.4g} tokens / ({gpu_hours:.4g} GPU-h x 3600)"
        total_tokens = tokens
    elif tokens_per_s is not None:
        rate_per_gpu = check_positive(tokens_per_s, "--tokens-per-s") / num_gpus
        how = f"observed {tokens_per_s:.4g} tokens/s on {num_gpus} GPUs"
        total_tokens = tokens_per_s
    elif step_time_s is not None and global_batch is not None:
        check_positive(step_time_s, "--step-time")
        check_positive(global_batch, "--global-batch")
        rate_per_gpu = global_batch * seq / step_time_s / num_gpus
        how = f"{global_batch:.4g} sequences x {seq} tokens / {step_time_s:.4g} s on {num_gpus} GPUs"
        total_tokens = global_batch * seq
    else:
        raise LLMCalcError("--tokens", "give --tokens with --gpu-hours, or --tokens-per-s, or --step-time with --global-batch")
    f = forward_flops(m, 1, seq, causal=causal)
    per_token = f.per_token_training_flops
    mfu_6n = rate_per_gpu * f.approx_6n / peak
    mfu_attn = rate_per_gpu * per_token / peak
    measured = None
    if calibration is not None:
        eff = efficiency_for(gpu, dtype, calibration)
        measured = mfu_attn / eff.compute
    return MFUResult(
        model=m.name, gpu=gpu.name, num_gpus=num_gpus, seq=seq, dtype=dtype, peak_tflops=peak / TERA,
        tokens_per_s=rate_per_gpu * num_gpus, model_flops=total_tokens * per_token,
        flops_per_token_6n=f.approx_6n, flops_per_token=per_token,
        mfu=mfu_6n, mfu_with_attention=mfu_attn, hfu_full_recompute=mfu_attn * 4 / 3, mfu_of_measured=measured,
        verdict=f"MFU {mfu_6n:.1%} by 6N, {mfu_attn:.1%} with attention FLOPs at seq {seq} "
        f"({gpu.name} {dtype} peak {peak / TERA:g} TFLOPS)",
        explain=[
            f"throughput per GPU: {how} = {rate_per_gpu:,.1f} tokens/s/GPU",
            f"6N = 6*{f.active_params:,} = {f.approx_6n:,} FLOPs/token",
            f"MFU (6N) = {rate_per_gpu:,.1f} * {f.approx_6n:.4g} / {peak:.4g} = {mfu_6n:.4f}",
            f"with attention ({f.convention}, S = {seq}): 3*forward/S = {per_token:.4g} FLOPs/token",
            f"MFU (attention) = {rate_per_gpu:,.1f} * {per_token:.4g} / {peak:.4g} = {mfu_attn:.4f}",
        ],
    )


class TrainTimeResult(BaseModel):
    model: str
    gpu: str
    num_gpus: int
    tokens: float
    seq: int
    mfu: float
    total_flops: float
    total_flops_6n: float
    gpu_hours: float
    days: float
    cost: float | None
    price_per_gpu_hour: float | None
    best_case_days: float | None
    verdict: str
    explain: list[str]


def train_time(
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int, tokens: float, seq: int = 2048, mfu_assumed: float = 0.4,
    dtype: str = "bf16", price_per_gpu_hour: float | None = None, causal: bool = False,
    calibration: Calibration | None = None,
) -> TrainTimeResult:
    """Days, GPU-hours and cost: D x (training FLOPs per token) / (GPUs x peak x MFU)."""
    _check_gpus(num_gpus)
    check_positive(tokens, "--tokens")
    check_fraction(mfu_assumed, "--mfu")
    if price_per_gpu_hour is not None:
        check_positive(price_per_gpu_hour, "--price-per-gpu-hour", allow_zero=True)
    peak = peak_tflops(gpu, dtype) * TERA
    f = forward_flops(m, 1, seq, causal=causal)
    total = tokens * f.per_token_training_flops
    seconds = total / (num_gpus * peak * mfu_assumed)
    gpu_hours = seconds * num_gpus / HOURS
    best = None
    if calibration is not None:
        best = total / (num_gpus * peak * efficiency_for(gpu, dtype, calibration).compute) / 86400
    cost = gpu_hours * price_per_gpu_hour if price_per_gpu_hour is not None else None
    cost_text = f", cost {cost:,.0f} at {price_per_gpu_hour:g}/GPU-h" if cost is not None else ""
    return TrainTimeResult(
        model=m.name, gpu=gpu.name, num_gpus=num_gpus, tokens=tokens, seq=seq, mfu=mfu_assumed,
        total_flops=total, total_flops_6n=tokens * f.approx_6n, gpu_hours=gpu_hours, days=seconds / 86400,
        cost=cost, price_per_gpu_hour=price_per_gpu_hour, best_case_days=best,
        verdict=f"{seconds / 86400:,.1f} days on {num_gpus} x {gpu.name} at {mfu_assumed:.0%} MFU "
        f"({gpu_hours:,.0f} GPU-hours{cost_text})",
        explain=[
            f"FLOPs = D x 3*forward/S = {tokens:.4g} x {f.per_token_training_flops:.4g} = {total:.4g} "
            f"(6N alone: {tokens * f.approx_6n:.4g})",
            f"time = {total:.4g} / ({num_gpus} x {peak:.4g} x {mfu_assumed}) = {seconds:,.0f} s = {seconds / 86400:,.2f} days",
            f"GPU-hours = {seconds:,.0f} x {num_gpus} / 3600 = {gpu_hours:,.0f}",
        ],
    )


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
    dtype: str = "fp16", kv_dtype: str | None = None, causal: bool = False, calibration: Calibration | None = None,
    target_ttft_s: float | None = None,
) -> LatencyResult:
    """TTFT of prefilling B prompts of P tokens and TPOT of decoding T tokens, by roofline, with TP = GPUs."""
    _check_serving_gpus(m, num_gpus)
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
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int = 1, max_tokens: int = 4096, dtype: str = "fp16",
    kv_dtype: str | None = None, reserve_gib: float = DEFAULT_RESERVE_GIB,
) -> ConcurrencyResult:
    """Requests of ``max_tokens`` (input + output) whose KV cache fits beside the weights.

    Per GPU (TP = GPUs): free = capacity - weights/t - activations of one prefill/t - reserve;
    max = floor(free / (KV per token per GPU x max_tokens)). 0 with the shortfall when free < 0.
    """
    _check_serving_gpus(m, num_gpus)
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
