"""Training memory: states by recipe sharded by ZeRO (Rajbhandari et al. 2020, arXiv 1910.02054)
plus activations per GPU on the first pipeline stage: per architecture, tensor by tensor (calc.memory.activations:
the tensors autograd keeps, logits and the fp32 loss), with the textbook Korthikanti et al. 2022 figure beside it."""

from __future__ import annotations

import math

from calc.errors import LLMCalcError
from calc.memory.activations import LayerSetup, Recompute, korthikanti_layer_bytes, lm_head_buffers, stage_activations
from calc.memory.result import DEFAULT_RESERVE_GIB, MemoryResult, _search_min_gpus, _verdict
from calc.model.parallel import check_layout, layers_per_stage
from calc.model.params import count_params
from calc.sanity import check_context
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.units import GIB, gb, gib

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


def training_memory(
    m: ModelSpec, *, gpu: GPUSpec | None = None, plan: Parallelism | None = None, recipe: str = "bf16-adam",
    zero: int = 0, micro_batch: int = 1, seq: int = 2048, recompute: Recompute = "none", flash: bool = True,
    reserve_gib: float = DEFAULT_RESERVE_GIB, activations_model: str = "per-tensor",
) -> MemoryResult:
    """Training memory per GPU on the first pipeline stage (the fullest under 1F1B).

    ``activations_model``: "per-tensor" (default) counts the tensors a SwiGLU/GQA/RMSNorm block really keeps
    (fused norm kernels, FlashAttention or eager scores, every matmul input since all weights train), the
    logits with the fp32 loss (12 B per logit in its backward) and the backward workspace; "textbook" is
    Korthikanti et al.'s GPT-3 formula below, shown in --explain either way.

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
    reserve = int(reserve_gib * GIB)

    def per_gpu_for(layout: Parallelism) -> dict[str, int]:
        states = training_bytes_per_gpu(
            m, params=params, tp=layout.tp, pp=layout.pp, dp=layout.dp, cp=layout.cp, sp=layout.sequence_parallel,
            recipe=recipe, zero=zero, micro_batch=micro_batch, seq=seq, recompute=recompute, flash=flash,
            reserve_bytes=reserve,
        )
        # DP does not change activations: the per-tensor figure (or the textbook one) for this TP x PP x CP.
        return {**states, "activations": activations}

    s_local = seq // plan.cp
    layer = korthikanti_layer_bytes(s_local, micro_batch, m.hidden_size, m.num_heads, plan.tp,
                                    plan.sequence_parallel, recompute, flash)
    in_flight = plan.pp
    sp_div = plan.tp if plan.sequence_parallel else 1
    embed = s_local * micro_batch * m.hidden_size * in_flight / sp_div
    output = 4 * s_local * micro_batch * m.hidden_size * (1 + m.vocab_size / m.hidden_size) / plan.tp if plan.pp == 1 else 0
    blocks = layers_per_stage(m, plan.pp) * in_flight * layer
    textbook = math.ceil(blocks + embed + output)
    if activations_model not in ("per-tensor", "textbook"):
        raise LLMCalcError("--activations", f"use per-tensor or textbook, got {activations_model!r}")
    per_tensor_lines: list[str] = []
    activations = textbook
    if activations_model == "per-tensor":
        setup = LayerSetup(full=True, attention="flash" if flash else "eager", fused=True, tp=plan.tp, sp=plan.sequence_parallel)
        stage = stage_activations(m, micro_batch, s_local, setup, recompute, layers_per_stage(m, plan.pp), in_flight)
        head = lm_head_buffers(m, micro_batch, s_local, "fp32", 1, 2, True, plan.tp) if plan.pp == 1 else []
        head_saved = sum(b.bytes for b in head[:-1])
        logits = head[-1].bytes if head else 0
        activations = stage.saved + head_saved + max(logits, stage.backward_workspace)
        per_tensor_lines = [
            f"per-tensor activations = {stage.formula} = {stage.saved:,} B + head inputs {head_saved:,} B + max(logits/loss "
            f"{logits:,}, backward workspace {stage.backward_workspace:,}) = {activations:,} B",
            *[f"  {b.name}: {b.formula}" for b in stage.layer],
        ]
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
        warnings=check_context(m, seq, "--seq"),
        model=m.name, mode="train", dtype=recipe, kv_dtype=None, batch=micro_batch, seq=seq,
        tp=plan.tp, pp=plan.pp, dp=plan.dp, cp=plan.cp, num_gpus=n,
        weights_bytes=params * w, kv_cache_bytes_per_token=0, kv_cache_bytes=0,
        activation_bytes=activations, gradient_bytes=params * g, optimizer_bytes=params * o,
        reserve_bytes=reserve * n, total_bytes=params * (w + g + o) + activations * plan.dp * plan.cp + reserve * n,
        per_gpu=per_gpu, per_gpu_bytes=per_gpu_bytes, textbook_activation_bytes=textbook, **verdict,
        assumptions=[
            f"recipe {recipe}: {w} B weights + {g} B gradients + {o} B optimizer per parameter",
            f"ZeRO stage {zero} over DP {plan.dp}",
            (f"activations tensor by tensor (fused norms, {'FlashAttention' if flash else 'eager attention'}, fp32 loss), "
             f"recompute={recompute}" if activations_model == "per-tensor" else
             f"activations: Korthikanti et al. 2022, recompute={recompute}, score term {score_term}")
            + f", sequence parallel={plan.sequence_parallel}, {in_flight} microbatch(es) in flight on stage 1",
            f"reserve {reserve_gib:g} GiB per GPU; min_gpus grows DP at this TP x PP x CP"
            + ("" if zero else " (needs ZeRO >= 1 to shrink per-GPU memory)"),
        ],
        explain=[
            f"states = N*(w+g+o) = {params:,}*({w}+{g}+{o}) = {params * (w + g + o):,} B "
            f"({gb(params * (w + g + o)):.2f} GB) before sharding",
            f"per layer activations (s={s_local}, b={micro_batch}, h={m.hidden_size}, a={m.num_heads}, "
            f"t={plan.tp}) = {layer:,.0f} B",
            f"textbook (Korthikanti) stage-1 activations = {layers_per_stage(m, plan.pp)} layers x {in_flight} microbatches x "
            f"{layer:,.0f} + embedding {embed:,.0f} + output {output:,.0f} = {textbook:,} B",
            *per_tensor_lines,
            "per GPU = " + " + ".join(f"{k} {gib(v):.2f}" for k, v in per_gpu.items())
            + f" = {gib(per_gpu_bytes):.2f} GiB",
        ],
    )


def training_bytes_per_gpu(
    m: ModelSpec, *, params: int, expert_params: int = 0, tp: int, pp: int, dp: int, cp: int = 1, ep: int = 1,
    sp: bool = False, recipe: str = "bf16-adam", zero: int = 0, micro_batch: int = 1, seq: int = 2048,
    recompute: Recompute = "none", flash: bool = True, reserve_bytes: int = 0, in_flight: float | None = None,
) -> dict[str, int]:
    """Bytes per GPU on the first pipeline stage, by category (the arithmetic of ``training_memory``).

    states: dense params N - N_e split by t*p, routed-expert params N_e by t*p*e; ZeRO stage >= 1 shards
    optimizer state over the d ranks (experts over d/e), >= 2 gradients, 3 weights. Activations: ceil(L/p)
    layers x in-flight microbatches (default p) x Korthikanti bytes per layer at s/c tokens, + embedding
    dropout mask s*b*h*in_flight (/t with SP) + output layer 4*s*b*h*(1 + v/h)/t when p = 1.
    """
    w, g, o = RECIPES[recipe]
    dense, experts = params - expert_params, expert_params
    edp = max(dp // ep, 1)

    def split(per_param: int, stage: int) -> int:
        return math.ceil(dense * per_param / (tp * pp) / (dp if zero >= stage else 1)
                         + experts * per_param / (tp * pp * ep) / (edp if zero >= stage else 1))

    s_local = seq // cp
    in_flight = pp if in_flight is None else in_flight
    layer = korthikanti_layer_bytes(s_local, micro_batch, m.hidden_size, m.num_heads, tp, sp, recompute, flash)
    blocks = layers_per_stage(m, pp) * in_flight * layer
    embed = s_local * micro_batch * m.hidden_size * in_flight / (tp if sp else 1)
    output = 4 * s_local * micro_batch * m.hidden_size * (1 + m.vocab_size / m.hidden_size) / tp if pp == 1 else 0
    return {
        "weights": split(w, 3),
        "gradients": split(g, 2),
        "optimizer": split(o, 1),
        "activations": math.ceil(blocks + embed + output),
        "reserve": reserve_bytes,
    }
