"""GPU memory for inference and training, total and per GPU (reference sections 3 and 6).

Inference (seed 001 section 2.12): weights N*bytes; KV cache 2*L*g*d*bytes per token (MHA:
g = h; MLA caches kv_lora_rank + qk_rope_head_dim per layer); activations B*S*H*c.
Training (seed 001 section 2.15): weights + gradients + optimizer states by a named recipe,
sharded by ZeRO (Rajbhandari et al. 2020, arXiv 1910.02054); activations per layer by
Korthikanti et al. 2022 (arXiv 2205.05198, section 4 and table 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.parallel import check_layout, inference_layout, kv_heads_per_gpu, layers_per_stage
from calc.params import count_params
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.units import GIB, dtype_bytes, exact_bytes, gb, gib

Recompute = Literal["none", "selective", "full"]

# Bytes per parameter: (weights, gradients, optimizer states).
RECIPES: dict[str, tuple[int, int, int]] = {
    # bf16 weights 2 + bf16 grads 2 + fp32 master 4 + Adam m 4 + v 4 = 16 (ZeRO paper section 3.1).
    "bf16-adam": (2, 2, 12),
    # as above plus fp32 gradient accumulators (4): 20 bytes, the seed's "about 20".
    "bf16-adam-fp32-grads": (2, 6, 12),
    # plain fp32 Adam: weights 4 + grads 4 + m 4 + v 4 = 16.
    "fp32-adam": (4, 4, 8),
    # fp32 SGD with momentum: weights 4 + grads 4 + momentum 4 = 12.
    "sgd-momentum": (4, 4, 4),
}

DEFAULT_RESERVE_GIB = 1.0  # CUDA context (~0.5 GiB) plus allocator slack, per GPU


def weight_bytes(params: int, dtype: str, group_size: int | None = None) -> int:
    """N * bytes(dtype); for int4/int8 with ``group_size`` G add one fp16 scale per G weights."""
    total = exact_bytes(params, dtype)
    if group_size:
        if group_size < 1:
            raise LLMCalcError("--group-size", f"must be >= 1, got {group_size}")
        total += 2 * math.ceil(params / group_size)
    return total


def kv_elements_per_token(m: ModelSpec, tp: int = 1, pp: int = 1) -> int:
    """Cached values per token on one GPU: 2 (K and V) * L/p * g/t * d; MLA: L/p * (r_kv + d_rope)
    (the latent is replicated on every TP rank)."""
    layers = layers_per_stage(m, pp)
    if m.mla:
        return layers * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim)
    return 2 * layers * kv_heads_per_gpu(m, tp) * m.dim_per_head


def kv_cache_bytes_per_token(m: ModelSpec, kv_dtype: str = "fp16", tp: int = 1, pp: int = 1) -> int:
    """KV-cache bytes per token (per GPU when tp/pp > 1).

    >>> from calc.catalog import load_model
    >>> kv_cache_bytes_per_token(load_model("llama2-70b"), "fp16")  # 80 * 8 * 128 * 2 * 2
    327680
    """
    return exact_bytes(kv_elements_per_token(m, tp, pp), kv_dtype, "--kv-dtype")


def activation_factor(m: ModelSpec) -> float:
    """c in the seed's B*S*H*c: live values per token of one layer's forward, divided by H:
    residual + norm output (2H), QKV ((h+2g)*d), attention output (h*d), MLP up/gate
    (I, or 2I gated) and the activation output (I)."""
    d = m.dim_per_head
    width = m.moe.expert_intermediate_size * m.moe.experts_per_token if m.moe else m.intermediate_size
    live = 2 * m.hidden_size + (m.num_heads + 2 * m.kv_heads) * d + m.num_heads * d
    live += width * (3 if m.gated_mlp else 2)
    return live / m.hidden_size


def korthikanti_layer_bytes(
    seq: int, micro_batch: int, hidden: int, heads: int, tp: int = 1,
    sequence_parallel: bool = False, recompute: Recompute = "none", flash: bool = False,
) -> float:
    """Activation bytes one transformer layer keeps for backward (Korthikanti et al. 2022, table 2;
    fp16, with dropout). With s, b, h, a, t:
      none, no TP       s*b*h*(34 + 5*a*s/h)
      TP                s*b*h*(10 + 24/t + 5*a*s/(h*t))
      TP + SP           s*b*h/t*(34 + 5*a*s/h)
      selective (or FlashAttention, which never stores the s x s scores): drop the 5*a*s/h term
      full recompute    2*s*b*h (only the layer input; /t with SP)
    """
    s, b, h, a, t = seq, micro_batch, hidden, heads, tp
    if recompute == "full":
        return 2 * s * b * h / (t if sequence_parallel else 1)
    scores = 0.0 if recompute == "selective" or flash else 5 * a * s / h
    if sequence_parallel:
        return s * b * h / t * (34 + scores)
    return s * b * h * (10 + 24 / t + scores / t)


class MemoryResult(BaseModel):
    """Memory by category, in bytes (integers), totals and per GPU, with the fit verdict."""

    model: str
    mode: str
    dtype: str
    kv_dtype: str | None
    batch: int
    seq: int
    tp: int
    pp: int
    dp: int
    cp: int
    num_gpus: int
    weights_bytes: int
    kv_cache_bytes_per_token: int
    kv_cache_bytes: int
    activation_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    reserve_bytes: int
    total_bytes: int
    per_gpu: dict[str, int]
    per_gpu_bytes: int
    gpu: str | None
    gpu_memory_bytes: int | None
    fits: bool | None
    headroom_bytes_per_gpu: int | None
    min_gpus: int | None
    assumptions: list[str]
    explain: list[str]


def _verdict(gpu: GPUSpec | None, per_gpu_bytes: int, min_gpus: Callable[[], int | None]) -> dict:
    if gpu is None:
        return {"gpu": None, "gpu_memory_bytes": None, "fits": None, "headroom_bytes_per_gpu": None, "min_gpus": None}
    headroom = gpu.memory_bytes - per_gpu_bytes
    return {
        "gpu": gpu.name,
        "gpu_memory_bytes": gpu.memory_bytes,
        "fits": headroom >= 0,
        "headroom_bytes_per_gpu": headroom,
        "min_gpus": min_gpus(),
    }


def _search_min_gpus(fits_on: Callable[[int], bool | None], limit: int = 4096) -> int | None:
    n = 1
    while n <= limit:
        if fits_on(n):
            return n
        n += 1 if n < 8 else 8
    return None


def inference_memory(
    m: ModelSpec, *, gpu: GPUSpec | None = None, plan: Parallelism | None = None, dtype: str = "fp16",
    kv_dtype: str | None = None, batch: int = 1, seq: int = 2048, group_size: int | None = None,
    act_factor: float | None = None, reserve_gib: float = DEFAULT_RESERVE_GIB,
) -> MemoryResult:
    """Serving memory of ``batch`` requests of ``seq`` tokens each (input + output).

    per GPU = weights/(t*p) + kv_per_token(g/t heads, L/p layers)*B*S + B*S*H*c*bytes/t + reserve.
    """
    plan = check_layout(m, plan or Parallelism())
    kv_dtype = kv_dtype or dtype
    for name, value in (("--batch", batch), ("--seq", seq)):
        if value < 1:
            raise LLMCalcError(name, f"must be >= 1, got {value}")
    if reserve_gib < 0:
        raise LLMCalcError("--reserve-gib", f"must be >= 0, got {reserve_gib}")
    params = count_params(m).total_params
    shards = plan.tp * plan.pp
    weights = weight_bytes(params, dtype, group_size)
    kv_token = kv_cache_bytes_per_token(m, kv_dtype)
    c = activation_factor(m) if act_factor is None else act_factor
    act_elem = dtype_bytes("fp16" if dtype in ("int4", "int8", "fp8") else dtype)
    activations = math.ceil(batch * seq * m.hidden_size * c * act_elem)
    reserve = int(reserve_gib * GIB)

    def per_gpu_for(layout: Parallelism) -> dict[str, int]:
        return {
            "weights": math.ceil(weights / (layout.tp * layout.pp)),
            "kv_cache": kv_cache_bytes_per_token(m, kv_dtype, layout.tp, layout.pp) * batch * seq,
            "activations": math.ceil(activations / layout.tp),
            "reserve": reserve,
        }

    def fits_on(n: int) -> bool | None:
        layout = inference_layout(m, n)
        return None if layout is None or gpu is None else sum(per_gpu_for(layout).values()) <= gpu.memory_bytes

    per_gpu = per_gpu_for(plan)
    per_gpu_bytes = sum(per_gpu.values())
    verdict = _verdict(gpu, per_gpu_bytes, lambda: _search_min_gpus(fits_on))
    kv_total = kv_token * batch * seq
    return MemoryResult(
        model=m.name, mode="infer", dtype=dtype, kv_dtype=kv_dtype, batch=batch, seq=seq,
        tp=plan.tp, pp=plan.pp, dp=plan.dp, cp=plan.cp, num_gpus=shards * plan.dp * plan.cp,
        weights_bytes=weights, kv_cache_bytes_per_token=kv_token, kv_cache_bytes=kv_total,
        activation_bytes=activations, gradient_bytes=0, optimizer_bytes=0, reserve_bytes=reserve * shards,
        total_bytes=weights + kv_total + activations + reserve * shards,
        per_gpu=per_gpu, per_gpu_bytes=per_gpu_bytes, **verdict,
        assumptions=[
            f"weights in {dtype}" + (f" with one fp16 scale per {group_size} weights" if group_size else ""),
            f"KV cache in {kv_dtype}; KV heads per GPU = max(g/t, 1) = {kv_heads_per_gpu(m, plan.tp)}",
            f"activations B*S*H*c with c = {c:.2f} (one layer's live values per token / H), split by TP",
            f"reserve {reserve_gib:g} GiB per GPU for CUDA context and allocator slack",
        ],
        explain=[
            f"weights = N*bytes = {params:,}*{dtype_bytes(dtype)} = {weights:,} B ({gb(weights):.2f} GB)",
            _kv_explain(m, kv_dtype, kv_token),
            f"KV cache = {kv_token:,} B/token x {batch} x {seq} tokens = {kv_total:,} B ({gb(kv_total):.2f} GB)",
            f"activations = B*S*H*c*bytes = {batch}*{seq}*{m.hidden_size}*{c:.2f}*{act_elem} = {activations:,} B",
            f"per GPU (TP {plan.tp}, PP {plan.pp}) = " + " + ".join(f"{k} {gib(v):.2f}" for k, v in per_gpu.items())
            + f" = {gib(per_gpu_bytes):.2f} GiB",
        ],
    )


def _kv_explain(m: ModelSpec, kv_dtype: str, per_token: int) -> str:
    b = dtype_bytes(kv_dtype, "--kv-dtype")
    if m.mla:
        return (f"KV/token (MLA) = L*(r_kv + d_rope)*bytes = {m.num_layers}*({m.mla.kv_lora_rank}+"
                f"{m.mla.qk_rope_head_dim})*{b} = {per_token:,} B")
    return (f"KV/token = 2*L*g*d*bytes = 2*{m.num_layers}*{m.kv_heads}*{m.dim_per_head}*{b} = {per_token:,} B")


def training_memory(
    m: ModelSpec, *, gpu: GPUSpec | None = None, plan: Parallelism | None = None, recipe: str = "bf16-adam",
    zero: int = 0, micro_batch: int = 1, seq: int = 2048, recompute: Recompute = "none", flash: bool = True,
    reserve_gib: float = DEFAULT_RESERVE_GIB,
) -> MemoryResult:
    """Training memory per GPU on the first pipeline stage (the fullest under 1F1B).

    states = N * (w + g + o) bytes (recipe), split by t*p, then ZeRO over d: stage 1 shards o,
    stage 2 also g, stage 3 also w. Activations = L/p layers x p in-flight microbatches x
    per-layer bytes (Korthikanti), + embedding dropout mask s*b*h*p (/t with SP) + output layer
    4*s*b*h*(1 + v/h)/t when p = 1 (Korthikanti section 4.3). CP splits s.
    """
    plan = check_layout(m, plan or Parallelism())
    if recipe not in RECIPES:
        raise LLMCalcError("--recipe", f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    if zero not in (0, 1, 2, 3):
        raise LLMCalcError("--zero", f"ZeRO stage must be 0, 1, 2 or 3, got {zero}")
    for name, value in (("--batch", micro_batch), ("--seq", seq)):
        if value < 1:
            raise LLMCalcError(name, f"must be >= 1, got {value}")
    if seq % plan.cp:
        raise LLMCalcError("--cp", f"{plan.cp} must divide the sequence length {seq}")
    params = count_params(m).total_params
    w, g, o = RECIPES[recipe]

    def per_gpu_for(layout: Parallelism) -> dict[str, int]:
        shards = layout.tp * layout.pp

        def zero_split(per_param: int, stage: int) -> int:
            return math.ceil(params * per_param / shards / (layout.dp if zero >= stage else 1))

        return {
            "weights": zero_split(w, 3),
            "gradients": zero_split(g, 2),
            "optimizer": zero_split(o, 1),
            "activations": activations,
            "reserve": reserve,
        }

    s_local = seq // plan.cp
    layer = korthikanti_layer_bytes(s_local, micro_batch, m.hidden_size, m.num_heads, plan.tp,
                                    plan.sequence_parallel, recompute, flash)
    in_flight = plan.pp
    blocks = layers_per_stage(m, plan.pp) * in_flight * layer
    sp_div = plan.tp if plan.sequence_parallel else 1
    embed = s_local * micro_batch * m.hidden_size * in_flight / sp_div
    output = 4 * s_local * micro_batch * m.hidden_size * (1 + m.vocab_size / m.hidden_size) / plan.tp if plan.pp == 1 else 0
    activations = math.ceil(blocks + embed + output)
    reserve = int(reserve_gib * GIB)
    per_gpu = per_gpu_for(plan)
    per_gpu_bytes = sum(per_gpu.values())
    n = plan.num_gpus
    fixed = plan.tp * plan.pp * plan.cp

    def fits_on(count: int) -> bool | None:
        if count % fixed or gpu is None:
            return None
        return sum(per_gpu_for(plan.model_copy(update={"dp": count // fixed})).values()) <= gpu.memory_bytes

    verdict = _verdict(gpu, per_gpu_bytes, lambda: _search_min_gpus(fits_on) if zero else None)
    score_term = "dropped (FlashAttention)" if flash and recompute == "none" else (
        "dropped (selective recomputation)" if recompute == "selective" else "kept")
    return MemoryResult(
        model=m.name, mode="train", dtype=recipe, kv_dtype=None, batch=micro_batch, seq=seq,
        tp=plan.tp, pp=plan.pp, dp=plan.dp, cp=plan.cp, num_gpus=n,
        weights_bytes=params * w, kv_cache_bytes_per_token=0, kv_cache_bytes=0,
        activation_bytes=activations, gradient_bytes=params * g, optimizer_bytes=params * o,
        reserve_bytes=reserve * n, total_bytes=params * (w + g + o) + activations * plan.dp * plan.cp + reserve * n,
        per_gpu=per_gpu, per_gpu_bytes=per_gpu_bytes, **verdict,
        assumptions=[
            f"recipe {recipe}: {w} B weights + {g} B gradients + {o} B optimizer per parameter",
            f"ZeRO stage {zero} over DP {plan.dp}",
            f"activations: Korthikanti et al. 2022, recompute={recompute}, score term {score_term}, "
            f"sequence parallel={plan.sequence_parallel}, {in_flight} microbatch(es) in flight on stage 1",
            f"reserve {reserve_gib:g} GiB per GPU; min_gpus grows DP at this TP x PP x CP"
            + ("" if zero else " (needs ZeRO >= 1 to shrink per-GPU memory)"),
        ],
        explain=[
            f"states = N*(w+g+o) = {params:,}*({w}+{g}+{o}) = {params * (w + g + o):,} B "
            f"({gb(params * (w + g + o)):.2f} GB) before sharding",
            f"per layer activations (s={s_local}, b={micro_batch}, h={m.hidden_size}, a={m.num_heads}, "
            f"t={plan.tp}) = {layer:,.0f} B",
            f"stage-1 activations = {layers_per_stage(m, plan.pp)} layers x {in_flight} microbatches x {layer:,.0f}"
            f" + embedding {embed:,.0f} + output {output:,.0f} = {activations:,} B",
            "per GPU = " + " + ".join(f"{k} {gib(v):.2f}" for k, v in per_gpu.items())
            + f" = {gib(per_gpu_bytes):.2f} GiB",
        ],
    )
