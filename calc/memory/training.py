"""Training memory: states by recipe sharded by ZeRO (Rajbhandari et al. 2020, arXiv 1910.02054)
plus activations per GPU on the fullest pipeline stage: per architecture, tensor by tensor (calc.memory.activations:
the tensors autograd keeps, logits and the cross-entropy's buffers), with the textbook Korthikanti et al. 2022 figure beside it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from calc.errors import LLMCalcError
from calc.memory.activations import (
    TRAINING_LOSSES,
    LayerSetup,
    Recompute,
    korthikanti_layer_bytes,
    lm_head_buffers,
    offloaded_layer_bytes,
    priced_loss,
    stage_activations,
)
from calc.memory.pipeline import (
    CONTIGUOUS,
    StageSplit,
    held_by_rank,
    held_stage_layers,
    rank_layers,
    stage_params,
    stage_params_note,
)
from calc.memory.result import MemoryResult, _search_min_gpus, _verdict
from calc.model.parallel import check_layout, expert_grid_problem, layers_per_stage
from calc.model.params import count_params, layer_kinds, model_tensors, total_params
from calc.sanity import check_context
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.units import GIB, check_count, check_positive, check_within, gb, gib

DEFAULT_CUDA_CONTEXT_GIB = 0.5  # CUDA 12 context + cuBLAS/NCCL handles on one device, outside the allocator
DEFAULT_FRAGMENTATION = 0.05  # caching allocator: reserved = allocated peak x (1 + this)
MAX_FRAGMENTATION = 1.0  # --fragmentation at most 1: reserved at most twice the allocated peak
# PyTorch's expandable_segments allocator (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True, set by torchtitan's
# run script and Megatron-Bridge/NeMo performance recipes) grows segments in place: reserved ~ allocated
EXPANDABLE_SEGMENTS_FRAGMENTATION = 0.0
# Training is priced as Megatron-class stacks run it (Megatron-LM/Core, NeMo, Megatron-Bridge), in every training
# command (memory --mode train, train-step, train-plan, train-time, report): fused norms and bias-SwiGLU
# (--bias-swiglu-fusion, default on: silu(gate) not kept), expandable segments, and the persistent gradient buffer
# (megatron/core/distributed/param_and_grad_buffer.py allocates main_grad for every local parameter when the model
# is wrapped, whether or not micro-batches accumulate; with ZeRO-2/3, FSDP/DeepSpeed style, sharded gradients
# appear during the backward instead). These are the megatron stack's settings (MEGATRON_MEMORY); fine-tuning
# (calc.memory.finetune) defaults to eager HF Trainer / PEFT (HF_MEMORY); calc.training.stack.MEMORY maps each stack to one.
MEGATRON_FUSED = True
MEGATRON_FRAGMENTATION = EXPANDABLE_SEGMENTS_FRAGMENTATION
# ... and Megatron-Core's vocab-parallel cross-entropy on the last stage: 6 B per logit (calc.memory.activations
# lm_head_buffers, "megatron"), not the 12 B of torch cross_entropy on upcast logits (torchtitan's loss, "fp32").
MEGATRON_LOSS = "megatron"
DEFAULT_FSDP_LAYERS_IN_FLIGHT = 2  # FSDP: the unsharded layer being computed + the one prefetched
# How the data-parallel ranks shard the training states (``Layout.sharding``): "zero" is ZeRO stage 0-3 as DeepSpeed and
# Megatron's distributed optimizer shard them (ZeRO-2/3 refused with PP, calc.training.layout.zero_with_pp_problem);
# FSDP_PP is torchtitan's FSDP2 under pipeline parallelism (``fsdp_pp_states``); ZERO2_PP is Llama 3's FSDP under
# pipeline parallelism, gradients reduce-scattered every micro-batch (``zero2_pp_states``).
ZERO_SHARDING = "zero"
FSDP_PP = "fsdp-pp"
ZERO2_PP = "zero2-pp"
SHARDINGS = (ZERO_SHARDING, FSDP_PP, ZERO2_PP)
FSDP_REDUCE_BYTES = 4  # FSDP2 MixedPrecisionPolicy(reduce_dtype=float32), torchtitan's mixed_precision_reduce default

RECIPES: dict[str, tuple[int, int, int]] = {
    # bf16 weights 2 + bf16 grads 2 + fp32 master 4 + Adam m 4 + v 4 = 16 (ZeRO paper section 3.1).
    "bf16-adam": (2, 2, 12),
    # as above plus fp32 gradient accumulators (4): 20 bytes, the seed's "about 20".
    "bf16-adam-fp32-grads": (2, 6, 12),
    # NeMo's SFT / PEFT recipe (NeMo-Framework-Launcher launcher_scripts/conf/peft/llama/sft.yaml @ f112c825, tag
    # 24.07: optim distributed_fused_adam with "dtype: bf16", "grad_sync_dtype: bf16"): bf16 weights 2 + bf16 grads 2 +
    # Adam m 2 + v 2 in bf16 = 8, no separate master copy (NeMo megatron_base_model.py setup_optimization @ a280e706:
    # store_params False when the optimizer dtype equals the model dtype; Apex DistributedFusedAdam keeps m and v in
    # its ``dtype``).
    "bf16-adam-bf16-states": (2, 2, 4),
    # plain fp32 Adam: weights 4 + grads 4 + m 4 + v 4 = 16.
    "fp32-adam": (4, 4, 8),
    # fp32 SGD with momentum: weights 4 + grads 4 + momentum 4 = 12.
    "sgd-momentum": (4, 4, 4),
}


# Recipes whose optimizer states o hold a separate fp32 master copy beside the 16-bit model weights w.
MASTER_RECIPES = ("bf16-adam", "bf16-adam-fp32-grads")


def optimizer_step_bytes(recipe: str) -> int:
    """HBM bytes the optimizer step moves per parameter under ``recipe`` (RECIPES (w, g, o)): it reads the gradient
    (the fp32 accumulator, 4 B, under bf16-adam-fp32-grads), reads and writes its states o, and writes the model
    weight w where a separate fp32 master sits in o (bf16-adam, bf16-adam-fp32-grads), else reads and writes w:

        bf16-adam 2 + 2 x 12 + 2 = 28;  bf16-adam-fp32-grads 4 + 24 + 2 = 30;  bf16-adam-bf16-states 2 + 2 x 4 + 2 x 2 = 14;
        fp32-adam 4 + 2 x 8 + 2 x 4 = 28;  sgd-momentum 4 + 2 x 4 + 2 x 4 = 20

    >>> [optimizer_step_bytes(r) for r in RECIPES]
    [28, 30, 14, 28, 20]
    """
    w, g, o = recipe_bytes(recipe)
    master = recipe in MASTER_RECIPES
    grads = 4 if recipe == "bf16-adam-fp32-grads" else g
    return grads + 2 * o + (w if master else 2 * w)


def recipe_bytes(recipe: str) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per parameter of a RECIPES entry; an unknown name is refused (--recipe)."""
    if recipe not in RECIPES:
        raise LLMCalcError("--recipe", f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    return RECIPES[recipe]


# Megatron-FSDP (and Megatron's DDP buffers) reduce gradients in the parameter dtype unless grad_reduce_in_fp32
# (megatron/core/distributed/distributed_data_parallel_config.py: ``grad_reduce_in_fp32: bool = False``; the
# Megatron-Bridge performance recipes set it False): an unsharded unit's gradient is bf16, the recipe's 2 B
# (train-step on a Megatron stack; memory --mode train keeps PyTorch FSDP's fp32 reduce, as fine-tuning does).
MEGATRON_FSDP_GRAD_BYTES = RECIPES["bf16-adam"][1]


@dataclass(frozen=True)
class StackMemory:
    """What a training stack's defaults decide in the memory engine (calc.training.stack.MEMORY names one per stack;
    each flag --loss, --compile, --fragmentation overrides its field):
      loss               cross-entropy buffers on the last stage (calc.memory.activations.lm_head_buffers)
      fused              fused norm / SwiGLU kernels (Megatron's fusions, or torch.compile): silu(gate) not kept
      fragmentation      allocator reserved / allocated - 1
      grad_buffer        gradients live from wrap time (Megatron's param_and_grad_buffer), not only from the backward
      fsdp_reduce_bytes  bytes per element of an unsharded FSDP unit's gradient (fsdp_in_flight_bytes)
      caching_allocator  the caching allocator's cached blocks counted (caching_allocator_cached)
      fp32_shards        ZeRO-3 is PyTorch FSDP2 mixed precision: the fp32 sharded parameter is the master, no 16-bit
                         shard persists, gradients are reduce-scattered into fp32 shards (fsdp2_states)
      bnb_linears        QLoRA's frozen 4-/8-bit linears are bitsandbytes' (PEFT): MatMul4Bit keeps its input whenever an
                         adapter sits upstream (calc.memory.activations.LayerSetup.quantized); torchtune's torchao
                         LinearNF4 (torchao/dtypes/nf4tensor.py: ``ctx.nf4_weight = weight``) and NeMo's keep only the
                         weight, so their frozen linears keep no input, as a frozen bf16 linear under LoRA"""

    loss: str
    fused: bool
    fragmentation: float
    grad_buffer: bool
    fsdp_reduce_bytes: int
    caching_allocator: bool
    fp32_shards: bool = False
    bnb_linears: bool = False


# Megatron-class stacks, as train-step has always priced them (the constants above).
MEGATRON_MEMORY = StackMemory(loss=MEGATRON_LOSS, fused=MEGATRON_FUSED, fragmentation=MEGATRON_FRAGMENTATION, grad_buffer=True,
                              fsdp_reduce_bytes=MEGATRON_FSDP_GRAD_BYTES, caching_allocator=False)
# Hugging Face Trainer / PEFT in eager PyTorch, as fine-tuning (calc.memory.finetune.finetune_memory's defaults) prices it:
# torch cross_entropy on fp32-upcast logits (transformers loss/loss_utils.py ForCausalLMLoss: ``logits.float()``), no
# torch.compile (TrainingArguments.torch_compile=False: silu(gate) kept), the default caching allocator (no expandable
# segments: DEFAULT_FRAGMENTATION), gradients allocated by the first backward (zero_grad(set_to_none=True), no
# persistent buffer), PyTorch FSDP's fp32 gradient reduce (FSDP_REDUCE_BYTES).
HF_MEMORY = StackMemory(loss="fp32", fused=False, fragmentation=DEFAULT_FRAGMENTATION, grad_buffer=False,
                        fsdp_reduce_bytes=FSDP_REDUCE_BYTES, caching_allocator=False, bnb_linears=True)


def gradients_persist(grad_accum: int, grad_buffer: bool, zero: int) -> bool:
    """Whether the gradients are alive beside the activations (counted whole, not only past the freed activations):
    when micro-batches accumulate into them (``grad_accum`` > 1), or in Megatron's persistent gradient buffer
    (``grad_buffer``, allocated at wrap time for DDP and the distributed optimizer, ZeRO 0/1); with ZeRO-2/3 the
    sharded gradients are produced during the backward as activations are freed."""
    return grad_accum > 1 or (grad_buffer and zero <= 1)


def routed_expert_params(m: ModelSpec) -> int:
    """Parameters of the routed experts (E x the expert MLP per MoE layer, biases included): the part expert
    parallelism splits e ways; 0 for a dense model (calc.model.params.layer_kinds, component "experts")."""
    return sum(t.params * count for _, count, tensors in layer_kinds(m) for t in tensors if t.component == "experts")


def training_memory(
    m: ModelSpec, *, gpu: GPUSpec | None = None, plan: Parallelism | None = None, recipe: str = "bf16-adam",
    zero: int = 0, micro_batch: int = 1, seq: int = 2048, recompute: Recompute = "none", flash: bool = True,
    reserve_gib: float = DEFAULT_CUDA_CONTEXT_GIB, activations_model: str = "per-tensor", ep: int = 1,
    etp: int | None = None, in_flight: float | None = None, fused: bool = MEGATRON_FUSED, grad_accum: int = 1,
    fragmentation: float = MEGATRON_FRAGMENTATION, grad_buffer: bool = True, loss: str = MEGATRON_LOSS,
    sharding: str = ZERO_SHARDING, fsdp_reduce_bytes: int = FSDP_REDUCE_BYTES, dropout: float = 0.0,
    recompute_modules: frozenset[str] = frozenset(), offload_layers: int | None = None,
    offload_modules: frozenset[str] = frozenset(), gemm_input_bytes: float = 0.0, caching_allocator: bool = False,
    global_batch: int | None = None, min_gpus_of: Callable[[], int | None] | None = None, act_bytes: int = 2,
    pp_slots: int = 0, held_layers: tuple[int, int] | None = None, fp32_shards: bool = False,
    pp_split: StageSplit = CONTIGUOUS, rank_held: tuple[int, ...] | None = None,
) -> MemoryResult:
    """Training memory per GPU on the fullest pipeline stage (the first under 1F1B, or the last with a large head).

    ``activations_model``: "per-tensor" (default) counts the tensors a SwiGLU/GQA/RMSNorm block really keeps
    (fused norm kernels, FlashAttention or eager scores, every matmul input since all weights train), the
    logits with the loss buffers (``loss``: Megatron's vocab-parallel CE, 6 B per logit in its backward, by default)
    and the backward workspace; "textbook" is
    Korthikanti et al.'s GPT-3 formula below, shown in --explain either way.

    states = N * (w + g + o) bytes (recipe), split by t*p (with PP each rank's own N_r in place of N/p: the
    embedding on the first, the head on the last, calc.memory.pipeline.stage_params), then ZeRO over d: stage 1 shards o,
    stage 2 also g, stage 3 also w, over the d*c ranks (Megatron's distributed optimizer shards over DP x CP);
    routed experts split e ways (``ep``) and ETP ways (``etp``, None: t), their states sharded over EDP = t*d*c/(ETP*e)
    (``shard_states``). Activations: ``training_bytes_per_gpu``
    (``in_flight`` micro-batches on the first stage, default p; CP splits s), the same function train-step and
    train-plan use, so a plan priced here and timed there has one memory figure. Defaults are the Megatron-class
    settings train-step prices plans with (``MEGATRON_FUSED``: fused norm and SwiGLU kernels; ``grad_buffer``: the
    persistent gradient buffer; ``MEGATRON_FRAGMENTATION``: expandable segments); ``fused=False`` is eager PyTorch
    (as ``finetune_memory``); ``reserve_gib`` is the CUDA context, ``fragmentation`` the allocator's overhead;
    ``loss`` the cross-entropy's buffers on the last stage (``MEGATRON_LOSS``; ``TRAINING_LOSSES``); ``sharding``
    FSDP_PP prices torchtitan's FSDP2 with PP (``fsdp_pp_states``), ZERO2_PP Llama 3's FSDP with PP
    (``zero2_pp_states``), instead of ZeRO ``zero``; ``fsdp_reduce_bytes``
    the gradient bytes of a ZeRO-3 unit (PyTorch FSDP's fp32 reduce by default, as ``finetune_memory``;
    MEGATRON_FSDP_GRAD_BYTES for Megatron-FSDP, as train-step on a Megatron stack); ``dropout``,
    ``recompute_modules``, ``offload_layers``, ``offload_modules``, ``gemm_input_bytes`` and ``caching_allocator``
    are passed to ``training_bytes_per_gpu`` as they are (calc.training.step.engine_options maps a train-step layout
    onto them, so `memory --mode train` and train-step price one plan alike).

    ``pp_slots``: the embedding / loss counted as pipeline layers (calc.model.parallel.check_layout's extra_stage_slots).
    ``held_layers``: the schedule's layer-micro-batches on the first and the last rank (calc.memory.pipeline), when
    the caller knows the schedule (train-step's layouts); without it, ceil(L/p) layers x ``in_flight`` and floor(L/p).
    ``pp_split``: how the layout places layers on the ranks (chunks, embedding / loss slots), which decides each
    rank's own parameters (calc.memory.pipeline.stage_params): with PP the states are priced rank by rank.

    ``global_batch``: min_gpus counts only a DP that splits it into whole micro-batches; ``min_gpus_of``: a search
    that replaces this one's for min_gpus (calc.training.step.layout_memory's, which prices each DP at its own
    micro-batches in flight), so the smallest count is searched once.

    total_bytes is the sum over the GPUs of what each holds: per_gpu_bytes x num_gpus, or under PP each rank's own
    peak on its num_gpus / p GPUs.
    """
    plan = check_layout(m, plan or Parallelism(), pp_slots)
    if recompute not in get_args(Recompute):
        raise LLMCalcError("--recompute", f"unknown {recompute!r}; use one of {', '.join(get_args(Recompute))}")
    if in_flight is not None and in_flight <= 0:
        raise LLMCalcError("--pp-microbatch-group", f"micro-batches in flight must be > 0, got {in_flight:g}")
    if loss not in TRAINING_LOSSES:
        raise LLMCalcError("--loss", f"unknown loss {loss!r}; use one of {', '.join(TRAINING_LOSSES)}")
    w, g, o = recipe_bytes(recipe)
    if zero not in (0, 1, 2, 3):
        raise LLMCalcError("--zero", f"ZeRO stage must be 0, 1, 2 or 3, got {zero}")
    if sharding not in SHARDINGS:
        raise LLMCalcError("--sharding", f"unknown sharding {sharding!r}; use one of {', '.join(SHARDINGS)}")
    for name, value in (("--batch", micro_batch), ("--seq", seq), ("--grad-accum", grad_accum)):
        check_count(value, name)
    if global_batch is not None:
        check_count(global_batch, "--global-batch")
    check_positive(reserve_gib, "--reserve-gib", allow_zero=True)
    check_within(fragmentation, "--fragmentation", 0.0, MAX_FRAGMENTATION)
    check_within(dropout, "--dropout", 0.0, 1.0, hi_open=True)
    if seq % plan.cp:
        raise LLMCalcError("--cp", f"{plan.cp} must divide the sequence length {seq}")
    problem = expert_grid_problem(m, plan.tp, plan.cp, plan.dp, ep, etp)
    if problem:
        raise LLMCalcError(*problem)
    params = count_params(m).total_params
    experts = routed_expert_params(m) if m.moe else 0
    reserve = int(reserve_gib * GIB)

    if activations_model not in ACTIVATION_MODELS:
        raise LLMCalcError("--activations", f"use per-tensor or textbook, got {activations_model!r}")
    s_local = seq // plan.cp
    in_flight = plan.pp if in_flight is None else in_flight
    cache: dict = {}

    def per_gpu_for(layout: Parallelism, model: str = activations_model, peaks: list[int] | None = None) -> dict[str, int]:
        # DP does not change activations: the per-tensor figure (or the textbook one) for this TP x PP x CP.
        return training_bytes_per_gpu(
            m, params=params, expert_params=experts, tp=layout.tp, pp=layout.pp, dp=layout.dp * layout.cp, cp=layout.cp,
            ep=ep, etp=etp, sp=layout.sequence_parallel, recipe=recipe, zero=zero, micro_batch=micro_batch, seq=seq,
            recompute=recompute, flash=flash, reserve_bytes=reserve, in_flight=in_flight, activations_model=model,
            cache=cache, fused=fused, grad_accum=grad_accum, fragmentation=fragmentation, grad_buffer=grad_buffer,
            loss=loss, sharding=sharding, fsdp_reduce_bytes=fsdp_reduce_bytes, dropout=dropout,
            recompute_modules=recompute_modules, offload_layers=offload_layers, offload_modules=offload_modules,
            gemm_input_bytes=gemm_input_bytes, caching_allocator=caching_allocator, act_bytes=act_bytes,
            held_layers=held_layers if layout.pp == plan.pp else None, fp32_shards=fp32_shards, pp_split=pp_split,
            rank_held=rank_held if layout.pp == plan.pp else None, rank_peaks=peaks,
        )

    layer = korthikanti_layer_bytes(s_local, micro_batch, m.hidden_size, m.num_heads, plan.tp,
                                    plan.sequence_parallel, recompute, flash)
    textbook = per_gpu_for(plan, "textbook")["activations"]
    per_tensor = per_gpu_for(plan, "per-tensor")["activations"]
    activations = per_tensor if activations_model == "per-tensor" else textbook
    setup = training_setup(tp=plan.tp, sp=plan.sequence_parallel, flash=flash, fused=fused, dropout=dropout,
                           recompute_modules=recompute_modules, gemm_input_bytes=gemm_input_bytes,
                           offload_modules=offload_modules, act_bytes=act_bytes)
    per_tensor_lines = _per_tensor_explain(m, micro_batch, s_local, plan, recompute, setup, per_tensor, in_flight, loss,
                                           None if offload_layers else held_layers, offload_layers)
    rank_totals: list[int] = []
    per_gpu = per_gpu_for(plan, peaks=rank_totals)
    per_gpu_bytes = sum(per_gpu.values())
    overhead = per_gpu["allocator fragmentation"] + per_gpu["CUDA context"]
    n = plan.num_gpus
    fixed = plan.tp * plan.pp * plan.cp

    def fits_on(count: int) -> bool | None:
        if count % fixed or gpu is None:
            return None
        if (count // fixed * plan.cp) % ep:  # the experts' EP groups come out of DP x CP (calc.training.plan)
            return None
        if global_batch and global_batch % (count // fixed * micro_batch):  # a DP the given global batch cannot split
            return None
        return sum(per_gpu_for(plan.model_copy(update={"dp": count // fixed})).values()) <= gpu.cuda_total_bytes

    verdict = _verdict(gpu, per_gpu_bytes, min_gpus_of or (lambda: _search_min_gpus(fits_on, grows=zero > 0, unit=fixed)))
    score_term = "dropped (FlashAttention)" if flash and recompute == "none" else (
        "dropped (selective recomputation)" if recompute == "selective" else
        "dropped (recomputed: JAX's dots policy)" if recompute == "dots" else "kept")
    return MemoryResult(
        warnings=check_context(m, seq, "--seq") + _textbook_caveat(m, activations_model, textbook, per_tensor),
        model=m.name, mode="train", dtype=recipe, kv_dtype=None, batch=micro_batch, seq=seq,
        tp=plan.tp, pp=plan.pp, dp=plan.dp, cp=plan.cp, num_gpus=n,
        weights_bytes=params * w, kv_cache_bytes_per_token=0, kv_cache_bytes=0,
        activation_bytes=activations, gradient_bytes=params * g, optimizer_bytes=params * o,
        reserve_bytes=overhead * n,
        # every GPU's own peak: under PP each rank's (rank_totals) on its n/p GPUs, else the one figure on all n
        total_bytes=sum(rank_totals) * (n // plan.pp) if len(rank_totals) == plan.pp > 1 else per_gpu_bytes * n,
        per_gpu=per_gpu, per_gpu_bytes=per_gpu_bytes, textbook_activation_bytes=textbook, **verdict,
        assumptions=[
            f"recipe {recipe}: {w} B weights + {g} B gradients + {o} B optimizer per parameter; activations "
            + ("in fp32, 4 B an element (the run computes in fp32 / TF32)" if act_bytes == 4 else
               f"{act_bytes} B an element"),
            (f"torchtitan FSDP2 with PP: stage weights gathered and fp32 gradients unsharded all step, fp32 master + "
             f"Adam sharded over DP x CP {plan.dp * plan.cp}" if sharding == FSDP_PP else
             f"Llama 3's FSDP with PP: stage weights whole, gradients reduce-scattered in fp32 after every micro-batch "
             f"into an fp32 shard, fp32 master + Adam sharded over DP x CP {plan.dp * plan.cp}; one unit's fp32 gradient "
             "in flight" if sharding == ZERO2_PP else
             f"FSDP2 mixed precision (ZeRO-3) over DP x CP {plan.dp * plan.cp}: the fp32 shard is the master, no 16-bit "
             "shard kept, gradients reduce-scattered into fp32 shards" if fp32_shards and zero == 3 and recipe in MASTER_RECIPES else
             f"ZeRO stage {zero} over DP x CP {plan.dp * plan.cp}") + (f"; routed experts split EP {ep}" if ep > 1 else ""),
            *([note] if (note := stage_params_note(m, plan.pp, pp_split, rank_totals)) else []),
            (f"activations tensor by tensor ({'fused' if fused else 'eager'} norms and SwiGLU, "
             f"{'FlashAttention' if flash else 'eager attention'}, {loss} cross-entropy), "
             f"recompute={recompute}" if activations_model == "per-tensor" else
             f"activations: Korthikanti et al. 2022, recompute={recompute}, score term {score_term}")
            + f", sequence parallel={plan.sequence_parallel}, {in_flight:g} microbatch(es) in flight on stage 1",
            f"CUDA context {reserve_gib:g} GiB per GPU + allocator fragmentation {fragmentation:.0%} of the allocated peak; "
            + ("gradients persist (" + ("Megatron's gradient buffer" if grad_buffer and zero <= 1 else "grad accumulation") + "); "
               if gradients_persist(grad_accum, grad_buffer, zero)
               else "gradients at the backward's end (the part 'gradients': what they add beyond the activations freed by "
                    "then); ")
            + f"{grad_accum:,} micro-batch(es) per rank per step"
            + ("" if global_batch else (" (no global batch given: the pipeline's micro-batches accumulate, no more; "
                                        "--global-batch sets it)" if plan.pp > 1 and grad_accum > 1 else
                                        " (no global batch given: no gradient accumulation; --global-batch sets it)")) + "; "
            + "min_gpus grows DP at this TP x PP x CP"
            + ("" if zero else " (ZeRO 0 replicates every state, so more DP saves nothing per GPU: the smallest count "
                               "is TP x PP x CP when that fits, else none)")
            + (f", only to a DP that splits the global batch of {global_batch:,} into whole micro-batches of "
               f"{micro_batch}" if global_batch and zero else ""),
        ],
        explain=[
            f"states = N*(w+g+o) = {params:,}*({w}+{g}+{o}) = {params * (w + g + o):,} B "
            f"({gb(params * (w + g + o)):.2f} GB) before sharding",
            f"per layer activations (s={s_local}, b={micro_batch}, h={m.hidden_size}, a={m.num_heads}, "
            f"t={plan.tp}) = {layer:,.0f} B",
            "textbook (Korthikanti) stage-1 activations = "
            + (f"{layers_per_stage(m, plan.pp)} layers x {in_flight:g} microbatches" if held_layers is None or offload_layers
               else f"{held_layers[0]} layer-micro-batches (the schedule's, on the fullest rank but the last)")
            + f" x {layer:,.0f} + embedding s*b*h*{in_flight}{'/t' if plan.sequence_parallel else ''}"
            f"{' + output 4*s*b*h*(1 + v/h)/t' if plan.pp == 1 else ''} = {textbook:,} B",
            *per_tensor_lines,
            "per GPU = " + " + ".join(f"{k} {gib(v):.2f}" for k, v in per_gpu.items())
            + f" = {gib(per_gpu_bytes):.2f} GiB",
        ],
    )


ActivationModel = Literal["per-tensor", "textbook"]


def _textbook_caveat(m: ModelSpec, activations_model: str, textbook: int, per_tensor: int) -> list[str]:
    """--activations textbook on a layer Korthikanti et al. 2022 did not derive (a dense multi-head attention + 4h MLP
    block): routed experts (k copies of each token's MLP tensors and the router's), MLA's latents or state-space
    mixers keep other tensors, so the figure is said to be the dense formula's, beside the per-tensor count."""
    kinds = [w for w, has in (("routed experts", m.moe is not None), ("MLA", m.mla is not None),
                              ("state-space / linear-attention layers", m.mixer is not None)) if has]
    if activations_model != "textbook" or not kinds:
        return []
    return [f"--activations textbook: Korthikanti et al.'s formula is a dense transformer layer's, and {m.name} has "
            f"{' and '.join(kinds)}: {textbook / 2**30:,.2f} GiB by it, {per_tensor / 2**30:,.2f} GiB tensor by tensor "
            "(--activations per-tensor)"]
ACTIVATION_MODELS = ("per-tensor", "textbook")


@dataclass(frozen=True)
class LayerActivations:
    """Bytes of one micro-batch on one GPU (plain ints: the plan search's hot path caches these).

    saved: one transformer layer's saved tensors (or its checkpointed input); embed: the embedding output's
    dropout mask (first stage); head_saved: final norm + lm_head inputs and logits: the loss buffers (last
    stage); workspace: the backward transient (the recomputed layer + dY, dX of its largest tensor)."""

    saved: int
    embed: int
    head_saved: int
    logits: int
    workspace: int


def layer_activations(m: ModelSpec, micro_batch: int, s_local: int, tp: int, sp: bool, recompute: Recompute,
                      flash: bool, dropout: float = 0.0, setup: LayerSetup | None = None, loss: str = "fp32",
                      loss_chunks: int = 8, lm_head_trains: bool = True) -> LayerActivations:
    """Per-tensor activations of one layer, the embedding and the head for ``micro_batch`` x ``s_local`` tokens
    (calc.memory.activations.layer_buffers / stage_activations / lm_head_buffers).

    ``setup``: what the block keeps (default: every weight trains, fused norms and SwiGLU, as Megatron runs;
    fine-tuning passes its adapters, eager elementwise and LoRA dropout). Recomputation levels, one meaning
    in every mode (``recompute_levels``): full keeps each layer's input (b*s*H*2, /t with SP) and recomputes
    one layer in backward; selective is Megatron's (Korthikanti et al. 2022 sec. 5): the attention core,
    which drops the s x s scores of eager attention and changes nothing under FlashAttention (its backward
    recomputes them anyway); sac is torchtitan's op-level selective AC. ``dropout`` > 0 (GPT-3 style) adds the
    1-byte masks: residual (2*s*b*H per layer), attention (b*a*s*s, eager), embedding (s*b*H, first stage),
    all /t where their tensor is split (Korthikanti table 2)."""
    if setup is None:
        setup = LayerSetup(full=True, attention="flash" if flash else "eager", fused=True, tp=tp, sp=sp, dropout=dropout)
    stage = stage_activations(m, micro_batch, s_local, setup, recompute, 1, 1)
    head = lm_head_buffers(m, micro_batch, s_local, loss, loss_chunks, setup.act_bytes, lm_head_trains, tp,
                           compiled=setup.fused)
    embed = math.ceil(micro_batch * s_local * m.hidden_size / (tp if sp else 1)) if setup.dropout else 0
    return LayerActivations(saved=stage.saved, embed=embed, head_saved=sum(b.bytes for b in head[:-1]),
                            logits=head[-1].bytes, workspace=stage.backward_workspace)


def stage_activation_ends(per: LayerActivations, num_layers: int, pp: int, in_flight: float,
                          offload_layers: int | None = None, held: tuple[int, int] | None = None) -> tuple[int, int]:
    """Activations of the fullest pipeline rank but the last, and of the last (``rank_activation_bytes`` at ranks 0 and
    p - 1). 1F1B: the first stage holds ``in_flight`` micro-batches of ceil(L/p) layers (+ their embedding masks), the
    last one micro-batch of floor(L/p) layers + the head:
        first = ceil(L/p) * in_flight * layer + in_flight * embed [+ head when p = 1] + workspace
        last  = floor(L/p) * layer + head inputs + max(logits/loss, workspace)
    (the loss buffers exist at the backward's start, before the layers' workspace). ``held``: the schedule's own
    count of layer-micro-batches on the first and the last rank (calc.memory.pipeline.held_stage_layers: the
    stages' real layer counts, chunk by chunk under interleaving) in place of ceil(L/p) * in_flight and floor(L/p).
    ``offload_layers``: activation offload to CPU keeps only that many layers of each micro-batch on the GPU.
    Without a pipeline both are the one stage's: first + head."""
    head = per.head_saved + max(per.logits, per.workspace)
    first_layers, last_layers = math.ceil(num_layers / pp), num_layers // pp
    if offload_layers:
        first_layers, last_layers = min(first_layers, offload_layers), min(last_layers, offload_layers)
    first_held, last_held = (first_layers * in_flight, last_layers) if held is None or offload_layers else held
    if pp == 1:
        first = math.ceil(first_held * per.saved + in_flight * per.embed) + head
        return first, first
    return rank_activation_bytes(per, 0, pp, first_held, in_flight), rank_activation_bytes(per, pp - 1, pp, last_held, in_flight)


def stage_activation_bytes(per: LayerActivations, num_layers: int, pp: int, in_flight: float,
                           offload_layers: int | None = None, held: tuple[int, int] | None = None) -> int:
    """Activations of the fullest pipeline stage: the larger of ``stage_activation_ends``."""
    return max(stage_activation_ends(per, num_layers, pp, in_flight, offload_layers, held))


def textbook_activation_bytes(m: ModelSpec, micro_batch: int, s_local: int, tp: int, pp: int, sp: bool,
                              recompute: Recompute, flash: bool, in_flight: float, held: int | None = None) -> int:
    """Korthikanti et al. 2022 (sec. 4.2-4.3): ceil(L/p) layers x in-flight micro-batches (or ``held``, the schedule's
    layer-micro-batches on the first stage) x the per-layer bytes (``korthikanti_layer_bytes``) + embedding dropout
    mask s*b*h*in_flight (/t with SP) + output layer 4*s*b*h*(1 + v/h)/t when p = 1."""
    layer = korthikanti_layer_bytes(s_local, micro_batch, m.hidden_size, m.num_heads, tp, sp, recompute, flash)
    blocks = (layers_per_stage(m, pp) * in_flight if held is None else held) * layer
    embed = s_local * micro_batch * m.hidden_size * in_flight / (tp if sp else 1)
    output = 4 * s_local * micro_batch * m.hidden_size * (1 + m.vocab_size / m.hidden_size) / tp if pp == 1 else 0
    return math.ceil(blocks + embed + output)


def largest_block_params(m: ModelSpec, ep: int = 1) -> int:
    """Parameters of the largest decoder block, one FSDP unit, with its routed experts 1/``ep`` of them (each EP rank
    holds its share of a block's experts; calc.model.params.layer_kinds, component "experts"): what
    ``fsdp_in_flight_bytes`` gathers and ``unit_gradient_bytes`` reduce-scatters per unit."""
    return max(sum(t.params // (ep if t.component == "experts" else 1) for t in ts) for _k, _c, ts in layer_kinds(m))


def fsdp_in_flight_bytes(m: ModelSpec, tp: int, layers: int = DEFAULT_FSDP_LAYERS_IN_FLIGHT, separate_embeddings: bool = False,
                         trains: bool = True, block_bytes: Callable[[int], int] | None = None,
                         root_resident: bool = False, reduce_bytes: int = FSDP_REDUCE_BYTES, gathered_bytes: int = 2,
                         ep: int = 1) -> int:
    """ZeRO-3 / FSDP full shard: unsharded units alive at once: ``layers`` blocks (the one computing + the one
    prefetched), or the root unit (embedding + output head + final norm, gathered together unless sharded as
    their own units, as torchtune's custom_sharded_layers does) at the loss, whichever is larger; bf16 weights
    (``block_bytes`` maps a block's parameters to its stored bytes: NF4 for QLoRA, FSDP2 all-gathers the
    quantised shards) plus, when they train, their unreduced gradients (``reduce_bytes``: fp32 reduce buffer, 4 B, FSDP2
    MixedPrecisionPolicy reduce_dtype=float32 as in torchtitan; Megatron-FSDP keeps them in the parameter dtype, 2 B,
    unless grad_reduce_in_fp32, which Megatron-Core's DistributedDataParallelConfig leaves False).
    ``root_resident``: FSDP1 keeps the root unit
    unsharded from its forward to its backward ("Do not free the root's parameters in the post-forward for
    FULL_SHARD", torch/distributed/fsdp/_runtime_utils.py _post_forward_reshard), so it adds to the blocks.
    ``gathered_bytes``: bytes per gathered weight in the compute dtype (2: bf16 param_dtype; 4 for an fp32 run).
    ``ep``: under expert parallelism a block's routed experts are not gathered whole: each EP rank gathers only its
    1/EP of them (torchtitan apply_fsdp shards ``transformer_block.moe.experts`` as a unit of its own over the
    data-parallel ranks left beside EP, dp_shard_mod_ep; NeMo AutoModel's moe/parallelizer.py passes the experts as
    ``ignored_params`` of the block's fully_shard and keeps them EP-sharded), so a block unit holds its other
    parameters plus experts / EP."""
    def unit(params: int, count: int, stored: Callable[[int], int]) -> int:
        params //= tp
        return count * stored(params) + (params * reduce_bytes if trains else 0)

    block = largest_block_params(m, ep)
    outside = [t.params for t in model_tensors(m)]
    root = max(outside) if separate_embeddings else sum(outside)
    blocks = unit(block, layers, block_bytes or (lambda n: gathered_bytes * n))
    root_unit = unit(root, 1, lambda n: gathered_bytes * n)
    return blocks + root_unit if root_resident else max(blocks, root_unit)


def assemble_peak(states: dict[str, int], *, gradients: int, gradients_persist: bool, activations: int, fsdp: int = 0,
                  transients: dict[str, int] | None = None, fragmentation: float = DEFAULT_FRAGMENTATION,
                  cuda_context: int = int(DEFAULT_CUDA_CONTEXT_GIB * GIB),
                  cached: dict[str, int] | None = None) -> dict[str, int]:
    """The peak of one training step per GPU, by named part (the values sum to the peak); the one place the
    allocator overhead and the CUDA context are counted, for training and fine-tuning alike:

        allocated = states + FSDP units in flight + max(forward end, backward end) + transients
        forward end  = saved activations + max(logits/loss, backward workspace)   (no gradient exists yet:
                       zero_grad(set_to_none=True))
        backward end = gradients (every activation freed by then; between the two ends the sum moves
                       linearly, so the larger end is the peak): the part "gradients" is then max(0, gradients - activations)
        gradients persist across micro-batches (gradient accumulation, Megatron's grad buffer): added whole
        peak = allocated x (1 + fragmentation) + CUDA context
    ``fragmentation``: torch.cuda.max_memory_reserved / max_memory_allocated - 1 of the caching allocator;
    ``cached``: blocks the caching allocator keeps reserved at the peak that no allocation of the peak can reuse
    (``caching_allocator_cached``), added after the fragmentation, each under a name starting "allocator";
    the CUDA context (with cuBLAS/NCCL workspaces) lives outside PyTorch's counters."""
    out = dict(states)
    if gradients_persist:
        out["gradients"] = gradients
        out["activations"] = activations
    else:
        out["activations"] = activations
        # one key whatever the case (stable JSON): the gradients' share of the peak, here what they add at the backward's
        # end beyond the activations freed by then (the assumptions say "gradients at the backward's end")
        out["gradients"] = max(gradients - activations, 0)
    out["FSDP unsharded layers"] = fsdp
    out.update(transients or {})
    allocated = sum(out.values())
    out["allocator fragmentation"] = math.ceil(allocated * fragmentation)
    out.update(cached or {})
    out["CUDA context"] = cuda_context
    return out


ALLOCATOR_PREFIX = "allocator"  # parts of a peak that torch.cuda.max_memory_reserved counts and max_memory_allocated does not
CUDA_CONTEXT = "CUDA context"
PEAK_METRICS = ("device", "reserved", "allocated")


def peak_by_metric(parts: dict[str, int], metric: str) -> int:
    """One peak read as a metric reads it: "device" every part (what must fit on the card); "reserved"
    (torch.cuda.max_memory_reserved, torchtitan's logged "memory") without the CUDA context, which lives outside
    PyTorch's allocator; "allocated" (max_memory_allocated / active bytes) also without the allocator's parts
    (fragmentation and the cached blocks of ``caching_allocator_cached``)."""
    if metric not in PEAK_METRICS:
        raise ValueError(f"metric {metric!r}: one of {', '.join(PEAK_METRICS)}")
    drop = (lambda k: False) if metric == "device" else (
        (lambda k: k == CUDA_CONTEXT) if metric == "reserved" else (lambda k: k == CUDA_CONTEXT or k.startswith(ALLOCATOR_PREFIX)))
    return sum(v for k, v in parts.items() if not drop(k))


def caching_allocator_cached(*, freed_logits: int, sharded_grads: int) -> dict[str, int]:
    """Bytes PyTorch's caching allocator holds reserved at a torch (FSDP2) training step's peak beyond the live tensors,
    from its two rules (c10/cuda/CUDACachingAllocator.cpp, header comment: "Allocations are associated with a stream.
    Once freed, blocks can be re-allocated on the same stream, but not on any other stream. - The allocator attempts
    to find the smallest cached block that will fit the requested size. [...] If no block is found, the allocator
    will delegate to cudaMalloc"; an expandable segment, torchtitan's run_llama_train.sh
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True, grows at its end under the same best fit). max_memory_reserved
    counts every cached block, so both are in the figure torchtitan logs and not in max_memory_allocated:

      freed logits   eager torch cross_entropy on logits.float() (loss "fp32"; torchtitan's loss_fn at 9dec370):
                     the forward lays out the bf16 logits, their fp32 copy and the fp32 log-softmax,
                     then frees the first two (train.py ``del pred``) into one hole of 2 + 4 = 6 B per logit; the
                     backward's first fp32 buffer (nll_loss's gradient, 4 B) takes the smallest block that fits, that
                     hole, leaving 2 B per logit that no later 4 B buffer of the loss fits, so the next one extends
                     the segment: the bf16 logits' bytes stay reserved through the loss backward
                     (loss_parallel's decomposed backward, lm_head_buffers, leaves the same 2 B: its zeros and exp
                     fill the 2 + 4 + 4 B hole, the sum extends, the product reuses exp's block):
                         ``freed_logits`` = logits per rank x 2 B (what it adds to the fullest stage)
      RS stream pool FSDP2 allocates each reduce-scatter output, the sharded gradient the optimizer reads, on its
                     reduce-scatter stream (torch/distributed/_composable/fsdp/_fsdp_collectives.py
                     foreach_reduce(_scatter): "The RS output is allocated in the RS stream and used in the default
                     stream (for optimizer)"); zero_grad frees them before the next forward, into that stream's
                     pool, which the default stream's activations cannot reuse: the step's ``sharded_grads``
                     (fp32, 4 B x the rank's parameters / d) stay reserved beside the activation peak.
    Worked (llama3.1-8b, 2 x 8192 tokens, FSDP 8, bf16 logits): 16,384 x 128,256 x 2 = 4,202,692,608 B of freed
    logits; 8,030,261,248 x 4 / 8 = 4,015,130,624 B of sharded gradients."""
    out = {}
    if freed_logits:
        out[f"{ALLOCATOR_PREFIX}: freed bf16 logits (best fit, loss backward)"] = freed_logits
    if sharded_grads:
        out[f"{ALLOCATOR_PREFIX}: reduce-scatter stream pool (sharded fp32 gradients)"] = sharded_grads
    return out


def shard_states(dense: tuple[float, float, float], experts: tuple[float, float, float], *, tp: int, pp: int, dp: int,
                 ep: int, zero: int, etp: int | None = None) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per GPU from their totals before sharding, (dense, routed experts).

    Dense tensors split by t*p (the totals a caller passes are p x one rank's own under PP, so the split gives that
    rank's: training_bytes_per_gpu, calc.memory.pipeline.stage_params), routed experts by u*p*e (expert parallelism
    holds E/e experts per rank, expert tensor
    parallelism u = ``etp`` a 1/u slice of each; None: u = t, Megatron's default). ZeRO over the d (= DP x CP) ranks:
    stage >= 1 shards optimizer state (and fp32 master), >= 2 gradients, 3 weights. Experts shard over the
    expert-data-parallel group EDP = t*d / (u*e) (megatron/core/parallel_state.py: expert_data_parallel_size =
    world / (ETP x EP x PP); the distributed optimizer shards each expert's states over its EDP group,
    megatron/core/optimizer/__init__.py builds the expert optimizer on the expert-DP group)."""
    etp = tp if etp is None else etp
    edp = max(tp * dp // (etp * ep), 1)

    def split(i: int, stage: int) -> int:
        return math.ceil(dense[i] / (tp * pp) / (dp if zero >= stage else 1)
                         + experts[i] / (etp * pp * ep) / (edp if zero >= stage else 1))

    return split(0, 3), split(1, 2), split(2, 1)


def fsdp_pp_states(dense: float, experts: float, *, w: int, o: int, tp: int, pp: int, dp: int, ep: int,
                   etp: int | None = None, sharded_params: int = 0) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per GPU of torchtitan's FSDP2 with pipeline parallelism, from the
    parameter counts (``dense``, routed ``experts``: p x the rank's own, so that N/p is the rank's; training_bytes_per_gpu),
    ``w``/``o`` the recipe's bytes per parameter.

    torchtitan wraps each pipeline stage's blocks with ``fully_shard(..., reshard_after_forward=False)`` when PP is on
    ("For PP, do not reshard after forward to avoid per-microbatch all-gathers", torchtitan/parallelisms/
    parallelize_llama.py apply_fsdp at 9dec370; later torchtitan/distributed/utils.py, reshard_after_forward_policy
    "default": False with PP), and torch's pipeline stage runs every backward but the last with
    ``set_reshard_after_backward(False)`` and ``set_requires_gradient_sync(False)``, calling FSDP's post-backward
    (the reduce-scatter) once after the last micro-batch (torch/distributed/pipelining/stage.py
    _PipelineStageBase.backward_maybe_with_nosync). FSDP2 accumulates those unsynced gradients unsharded in the
    reduce dtype (torch/distributed/_composable/fsdp/_fsdp_param.py FSDPParam.to_accumulated_grad_if_needed:
    ``self.unsharded_accumulated_grad = unsharded_grad.to(self.reduce_dtype)``), fp32 in torchtitan. So each GPU holds,
    for its stage's N/(t p) parameters (experts N_e/(t p e), sharded over d/e):
        weights    = w x N/(t p)               the bf16 all-gathered parameters, alive the whole step (unsharded)
        gradients  = 4 x N/(t p)               fp32 accumulated unsharded gradients (FSDP_REDUCE_BYTES)
        optimizer  = o x N/(t p d)             fp32 sharded parameters (the master) + Adam m, v, sharded over DP
    i.e. ZeRO-1's placement (``shard_states`` at stage 1) with fp32 gradients; the fp32 sharded gradients the final
    reduce-scatter writes (4 N/(t p d)) replace the unsharded ones as they are freed and are not added.
    Worked: 8e9 parameters, t = 2, p = 4, d = 8, bf16-adam (w 2, o 12): 1e9 per stage-rank -> weights 2 GB,
    gradients 4 GB, optimizer 12e9 / 8 = 1.5 GB. A recipe without a master in o (fp32-adam, sgd-momentum, bf16 states)
    keeps its sharded parameters beside the gathered copy: ``sharded_params`` (its w) more per parameter, sharded over d
    with the states (FSDP2's DTensor shard is not the all-gather buffer)."""
    o = o + sharded_params
    return shard_states((dense * w, dense * FSDP_REDUCE_BYTES, dense * o),
                        (experts * w, experts * FSDP_REDUCE_BYTES, experts * o), tp=tp, pp=pp, dp=dp, ep=ep, zero=1,
                        etp=etp)


def fsdp2_states(dense: float, experts: float, *, o: int, tp: int, pp: int, dp: int, ep: int,
                 etp: int | None = None) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per GPU of PyTorch FSDP2's ZeRO-3 under mixed precision, from the
    parameter counts (``dense``, routed ``experts``), ``o`` the recipe's optimizer bytes per parameter (fp32 master 4 +
    Adam m 4 + v 4 = 12 under bf16-adam).

    ``fully_shard(module, mp_policy=MixedPrecisionPolicy(param_dtype=bfloat16, reduce_dtype=float32))`` on an fp32
    model (torchtitan: the model is built and initialised in fp32, training.mixed_precision_param bf16) keeps one
    sharded parameter per rank, the fp32 DTensor shard the optimizer steps: it is the master. The bf16 copy exists
    only in flight: each all-gather casts the shard to the param dtype into its input buffer
    (torch/distributed/_composable/fsdp/_fsdp_param.py FSDPParam.all_gather_inputs: ``sharded_param_data.to(
    self.param_dtype)``) and the gathered unit is freed at reshard (counted as the FSDP units in flight,
    ``fsdp_in_flight_bytes``). Gradients are reduce-scattered in the reduce dtype and kept in the sharded
    parameter's dtype, fp32 (_fsdp_collectives.py foreach_reduce: the reduce-scatter output is cast to ``orig_dtype``,
    the shard's). So, per GPU, over the d = DP x CP ranks of its N/(t p) parameters (experts N_e/(u p e) over EDP):

        weights    = 0                     no 16-bit shard persists (the gathered units are in flight)
        gradients  = 4 x N/(t p d)         the fp32 sharded gradients (FSDP_REDUCE_BYTES)
        optimizer  = o x N/(t p d)         the fp32 sharded parameters (the master) + Adam m, v

    16 B per parameter under bf16-adam, as DeepSpeed's ZeRO-3 (2 + 2 + 12) but placed differently: no bf16 weight or
    gradient shard beside the fp32 ones. The fp32 gradients live in the reduce-scatter stream's pool
    (``caching_allocator_cached``), which they fill while micro-batches accumulate; the caller counts them once.
    Worked: 8,030,261,248 parameters, t = p = 1, d = 8, o = 12: weights 0, gradients 4,015,130,624 B, optimizer
    12,045,391,872 B.

    >>> fsdp2_states(8_030_261_248, 0, o=12, tp=1, pp=1, dp=8, ep=1)
    (0, 4015130624, 12045391872)
    """
    return shard_states((0, dense * FSDP_REDUCE_BYTES, dense * o), (0, experts * FSDP_REDUCE_BYTES, experts * o),
                        tp=tp, pp=pp, dp=dp, ep=ep, zero=2, etp=etp)


def zero2_pp_states(dense: float, experts: float, *, w: int, o: int, tp: int, pp: int, dp: int, ep: int,
                    etp: int | None = None) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per GPU of Llama 3's FSDP under pipeline parallelism (``ZERO2_PP``), from
    the parameter counts (``dense``, routed ``experts``: p x the rank's own, so that N/p is the rank's), ``w``/``o`` the
    recipe's bytes per parameter.

    The Llama 3 paper (arXiv 2407.21783 sec. 3.3.2, "Pipeline parallelism ... improvements"): "Our use of FSDP for Llama
    3 shards optimizer states and gradients, but for model shards we do not reshard after forward computation to avoid
    an extra all-gather communication during backward passes", and ("Numerical stability") "we use FP32 gradient
    accumulation during backward computation over multiple micro-batches and also reduce-scatter gradients in FP32
    across data parallel workers in FSDP". Gradients that are sharded while micro-batches accumulate are reduce-scattered
    after every micro-batch's backward and added into an fp32 shard (unlike torchtitan's FSDP2 + PP, ``fsdp_pp_states``,
    which accumulates them unsharded and reduce-scatters once). So each GPU holds, for its stage's N/(t p) parameters
    (experts N_e/(u p e), sharded over EDP):
        weights    = w x N/(t p)          the 16-bit stage weights, whole on every DP rank (never resharded)
        gradients  = 4 x N/(t p d)        the fp32 accumulated gradient shard (FSDP_REDUCE_BYTES)
        optimizer  = o x N/(t p d)        fp32 master + Adam m, v, sharded over DP
    i.e. ZeRO-2's placement (``shard_states`` at stage 2) with fp32 gradients; the unit whose gradient is being
    reduce-scattered holds it unsharded meanwhile (``unit_gradient_bytes``, counted by ``training_bytes_per_gpu``).
    Worked (Llama 3 405B, 405,853,388,800 parameters, t = 8, p = 16, d = 64, bf16-adam w 2, o 12): 3.171e9 per
    stage-rank -> weights 6.34 GB, gradients 4 x 3.171e9 / 64 = 0.198 GB, optimizer 12 x 3.171e9 / 64 = 0.594 GB."""
    return shard_states((dense * w, dense * FSDP_REDUCE_BYTES, dense * o),
                        (experts * w, experts * FSDP_REDUCE_BYTES, experts * o), tp=tp, pp=pp, dp=dp, ep=ep, zero=2,
                        etp=etp)


def unit_gradient_bytes(m: ModelSpec, tp: int, *, ep: int = 1, reduce_bytes: int = FSDP_REDUCE_BYTES,
                        outside_blocks: bool = True) -> int:
    """One FSDP unit's unsharded gradient while it is reduce-scattered, in the reduce dtype: the largest decoder block
    (its routed experts 1/``ep`` of them) or, on a rank holding them (``outside_blocks``: without PP, or the first and
    last pipeline ranks), the largest tensor outside the blocks (embedding, output head), split t ways, x
    ``reduce_bytes`` (4: fp32, as Llama 3 reduce-scatters, arXiv 2407.21783 sec. 3.3.2). Llama 3 405B at t = 8:
    a block's 3,187,703,808 parameters / 8 x 4 B = 1,593,851,904 B."""
    outside = max((t.params for t in model_tensors(m)), default=0) if outside_blocks else 0
    return math.ceil(max(largest_block_params(m, ep), outside) / tp) * reduce_bytes


def training_setup(*, tp: int, sp: bool, flash: bool, fused: bool, dropout: float, recompute_modules: frozenset[str],
                   gemm_input_bytes: float, offload_modules: frozenset[str], act_bytes: int) -> LayerSetup:
    """What a full-training block keeps (every weight trains): the LayerSetup of ``training_bytes_per_gpu`` and
    ``host_offload_bytes``."""
    return LayerSetup(full=True, attention="flash" if flash else "eager", fused=fused, tp=tp, sp=sp, dropout=dropout,
                      recompute_modules=recompute_modules, gemm_input_bytes=gemm_input_bytes,
                      offload_modules=offload_modules, act_bytes=act_bytes)


def host_offload_bytes(m: ModelSpec, *, micro_batch: int, s_local: int, stage_layers: int, offloaded_layers: int,
                       recompute: Recompute, setup: LayerSetup) -> int:
    """Bytes one micro-batch moves to host memory in its forward on one GPU of a stage (and back in its backward)
    under activation offloading: the saved tensors of the ``offloaded_layers`` layers Megatron-Core's CPU offloading
    sends whole (--cpu-offloading-num-layers N, calc.training.layout.offloaded_stage_layers), plus, on every one of
    the stage's ``stage_layers`` layers, the module inputs its fine-grained offloading sends (``setup.offload_modules``,
    calc.memory.activations.offloaded_layer_bytes):
        bytes = N x one layer's saved tensors + layers x one layer's offloaded module inputs
    The same tensors the memory engine leaves off the GPU (``stage_activations``): the memory a flag saves is these
    bytes, less one layer's module inputs reloaded during its backward, which the memory engine counts in the backward
    workspace (so where that workspace is the larger end, the saving is one layer's reload short of the transfer).
    E.g. Llama-2-7B, b 1, s 4,096, t 1, N 31: 31 x one layer's saved tensors."""
    whole = 0
    if offloaded_layers:
        whole = offloaded_layers * stage_activations(m, micro_batch, s_local, setup, recompute, 1, 1).saved
    return whole + stage_layers * offloaded_layer_bytes(m, micro_batch, s_local, setup)


def training_bytes_per_gpu(
    m: ModelSpec, *, params: int, expert_params: int = 0, tp: int, pp: int, dp: int, cp: int = 1, ep: int = 1,
    etp: int | None = None, sp: bool = False, recipe: str = "bf16-adam", zero: int = 0, micro_batch: int = 1, seq: int = 2048,
    recompute: Recompute = "none", flash: bool = True, reserve_bytes: int | None = None, in_flight: float | None = None,
    activations_model: str = "per-tensor", dropout: float = 0.0, cache: dict | None = None, fused: bool = True,
    grad_accum: int = 1, fragmentation: float = DEFAULT_FRAGMENTATION, states: dict[str, int] | None = None,
    gradients: int | None = None, setup: LayerSetup | None = None, loss: str = "fp32", loss_chunks: int = 8,
    lm_head_trains: bool = True, offload_layers: int | None = None, fsdp: int | None = None,
    transients: dict[str, int] | None = None, grad_buffer: bool = False, sharding: str = ZERO_SHARDING,
    recompute_modules: frozenset[str] = frozenset(), gemm_input_bytes: float = 0.0,
    fsdp_reduce_bytes: int = FSDP_REDUCE_BYTES, offload_modules: frozenset[str] = frozenset(),
    caching_allocator: bool = False, act_bytes: int = 2, held_layers: tuple[int, int] | None = None,
    fp32_shards: bool = False, pp_split: StageSplit = CONTIGUOUS, rank_held: tuple[int, ...] | None = None,
    rank_peaks: list[int] | None = None, state_shares: Sequence[Mapping[str, float]] | None = None,
) -> dict[str, int]:
    """Bytes per GPU on the fullest pipeline stage, by named part summing to the peak: the one training-memory
    engine (``training_memory``, train-step, train-plan, report and ``finetune_memory``, full or adapters).

    states: the recipe's bytes per parameter (``RECIPES``) sharded by ``shard_states``; with PP rank by rank: each
    rank's own parameters (``pp_split`` places them, calc.memory.pipeline.stage_params: the embedding on the first
    rank, the head on the last) in place of N/p, beside that rank's own activations (``rank_held``: the schedule's
    layer-micro-batches on each rank, calc.memory.pipeline.held_by_rank, by default 1F1B's over ``in_flight``;
    ``rank_activation_bytes``, or Korthikanti's layer x the rank's count), the peak the largest rank's (``rank_peaks``,
    when given, receives every rank's total); or the caller's own per-GPU
    ``states`` and ``gradients`` (N/p figures; with PP scaled rank by rank: by ``state_shares``, each rank's factor per
    part (the keys of ``states`` and "gradients"), as fine-tuning works them out for a frozen base beside adapters, else
    by the rank's share of the parameters, exact for a full fine-tune, whose every state is per parameter)
    (fine-tuning: frozen/NF4 base, adapters, offload, paged optimizers). Activations at s/c tokens per rank with
    ``in_flight`` micro-batches on the first stage
    (default p; ``held_layers``: the schedule's layer-micro-batches on the fullest and the last rank,
    stage_activation_bytes; by default 1F1B's over ``in_flight`` micro-batches when that is whole, as a caller without
    an interleaved schedule passes it): per-tensor (``layer_activations`` + ``stage_activation_bytes``, default) or Korthikanti's GPT
    formula ("textbook"). ZeRO-3 with d > 1 adds the FSDP units in flight (``fsdp_in_flight_bytes``).
    ``sharding`` FSDP_PP: torchtitan's FSDP2 with PP (``fsdp_pp_states``): the stage's weights stay gathered and
    its fp32 gradients accumulate unsharded from the first backward, beside the micro-batches still in flight
    (persisting), no FSDP units in flight beyond them. ZERO2_PP: Llama 3's (``zero2_pp_states``): weights whole,
    the fp32 gradient shard persisting, and one unit's unsharded gradient in flight (``unit_gradient_bytes``). The
    peak is assembled by ``assemble_peak`` (gradients persist as ``gradients_persist`` says), ``reserve_bytes``
    being the CUDA context (default 0.5 GiB). ``cache``: a dict the caller keeps (one per model) for the
    per-layer figures of each (b, s/c, t, SP, recompute, attention, dropout, fused). ``recompute_modules``: Megatron's
    ``--recompute-modules`` under ``recompute`` "selective" (calc.memory.activations.module_buffers);
    ``gemm_input_bytes``: saved GEMM inputs kept quantized (fp8 through Transformer Engine; LayerSetup);
    ``fsdp_reduce_bytes``: bytes per element of an unsharded unit's gradient (``fsdp_in_flight_bytes``);
    ``offload_modules``: Megatron's fine-grained activation offloading (calc.memory.activations.offloaded_buffers);
    ``act_bytes``: bytes per saved activation element (2 under bf16 / fp16 autocast; 4 when the run computes in fp32 /
    TF32, --dtype fp32); ``caching_allocator``: PyTorch's caching allocator without Megatron's buffers (torchtitan / FSDP2 stacks): the
    blocks it keeps reserved beyond the live tensors (``caching_allocator_cached``: the freed logits on the stage
    holding the loss when it is the fullest, FSDP2's reduce-scatter stream pool under ZeRO-3 / FSDP_PP, for every
    weight when every weight trains: the recipe's states, or a caller's own states with ``lm_head_trains``, a full
    fine-tune)); ``fp32_shards``: ZeRO-3 is FSDP2 mixed precision (``fsdp2_states``): a recipe with an fp32 master
    keeps no 16-bit shard and fp32 sharded gradients (a caller's own states say so by passing it), which, while
    micro-batches accumulate into them, are the reduce-scatter stream pool's blocks: counted once, as gradients."""
    s_local = seq // cp
    in_flight = pp if in_flight is None else in_flight
    if held_layers is None and float(in_flight).is_integer():  # 1F1B over Megatron-Core's split, min(p, m) in flight
        held_layers = held_stage_layers(m.num_layers, pp, int(in_flight))
    recipe_states = states is None  # the recipe's states (fine-tuning passes its own)
    shares = stage_params(m, pp, pp_split) if pp > 1 else None
    if recipe_states:
        w, g, o = recipe_bytes(recipe)
        fp32_shards = fp32_shards and zero == 3 and recipe in MASTER_RECIPES and sharding == ZERO_SHARDING

        def recipe_states_of(dense: float, experts: float) -> tuple[int, int, int]:
            # (weights, gradients, optimizer) per GPU for a rank holding dense / experts parameters out of every p
            if sharding == FSDP_PP:
                return fsdp_pp_states(dense, experts, w=w, o=o, tp=tp, pp=pp, dp=dp, ep=ep, etp=etp,
                                      sharded_params=0 if recipe in MASTER_RECIPES else w)
            if sharding == ZERO2_PP:
                return zero2_pp_states(dense, experts, w=w, o=o, tp=tp, pp=pp, dp=dp, ep=ep, etp=etp)
            if fp32_shards:
                return fsdp2_states(dense, experts, o=o, tp=tp, pp=pp, dp=dp, ep=ep, etp=etp)
            return shard_states((dense * w, dense * g, dense * o), (experts * w, experts * g, experts * o),
                                tp=tp, pp=pp, dp=dp, ep=ep, zero=zero, etp=etp)

    per: LayerActivations | None = None
    if activations_model == "textbook":
        ends = (textbook_activation_bytes(m, micro_batch, s_local, tp, pp, sp, recompute, flash, in_flight,
                                          None if held_layers is None or offload_layers else held_layers[0]),) * 2
    else:
        if setup is None:
            setup = training_setup(tp=tp, sp=sp, flash=flash, fused=fused, dropout=dropout,
                                   recompute_modules=recompute_modules, gemm_input_bytes=gemm_input_bytes,
                                   offload_modules=offload_modules, act_bytes=act_bytes)
        key = (micro_batch, s_local, setup, recompute, loss, loss_chunks, lm_head_trains)
        per = cache.get(key) if cache is not None else None
        if per is None:
            per = layer_activations(m, micro_batch, s_local, tp, sp, recompute, flash, setup=setup, loss=loss,
                                    loss_chunks=loss_chunks, lm_head_trains=lm_head_trains)
            if cache is not None:
                cache[key] = per
        ends = stage_activation_ends(per, m.num_layers, pp, in_flight, offload_layers, held_layers)
    persist = sharding in (FSDP_PP, ZERO2_PP) or gradients_persist(grad_accum, grad_buffer, zero)
    # an eager fp32 loss frees its fp32 logits block; a compiled one writes none (lm_head_buffers): the rank holding
    # the loss keeps that hole reserved beside its head (caching_allocator_cached)
    hole = (math.ceil(micro_batch * s_local * m.vocab_size / tp) * setup.act_bytes
            if caching_allocator and per is not None and setup is not None and priced_loss(loss, tp) == "fp32" else 0)
    unit_by_rank = fsdp is None and sharding == ZERO2_PP and dp > 1  # the unit in flight: that rank's largest
    if fsdp is None and sharding == ZERO2_PP:
        fsdp = unit_gradient_bytes(m, tp, ep=ep) if dp > 1 else 0
    if fsdp is None:
        fsdp = (fsdp_in_flight_bytes(m, tp, reduce_bytes=max(fsdp_reduce_bytes, act_bytes), gathered_bytes=act_bytes, ep=ep)
                if zero == 3 and dp > 1 and sharding != FSDP_PP else 0)
    fsdp_sharded = sharding == FSDP_PP or (zero == 3 and dp > 1)
    context = int(DEFAULT_CUDA_CONTEXT_GIB * GIB) if reserve_bytes is None else reserve_bytes

    def peak(held_states: dict[str, int], grads: int, dense: float, experts: float, activations: int,
             freed: int, unit: int | None = None) -> dict[str, int]:
        cached: dict[str, int] = {}
        if caching_allocator:
            sharded_grads = shard_states((0, dense * FSDP_REDUCE_BYTES, 0), (0, experts * FSDP_REDUCE_BYTES, 0), tp=tp,
                                         pp=pp, dp=dp, ep=ep, zero=2,
                                         etp=etp)[1] if fsdp_sharded and (recipe_states or lm_head_trains) else 0
            if fp32_shards and zero == 3 and sharding == ZERO_SHARDING:
                # the pool's blocks are the fp32 gradients themselves. Accumulating, they are live: counted as
                # gradients, not again here. Else the peak is max(forward end: activations + the pool zero_grad left,
                # backward end: the gradients), i.e. activations + gradients reserved and max(activations, gradients)
                # allocated: with the part "gradients" = max(g - a, 0) (assemble_peak), the pool adds min(g, a)
                sharded_grads = 0 if persist else min(sharded_grads, activations)
            cached = caching_allocator_cached(freed_logits=freed, sharded_grads=sharded_grads)
        return assemble_peak(held_states, gradients=grads, gradients_persist=persist, activations=activations,
                             fsdp=fsdp if unit is None else unit,
                             transients=transients, fragmentation=fragmentation, cached=cached, cuda_context=context)

    if shares is not None:
        model_dense = total_params(m) - routed_expert_params(m)
        scale_d = (params - expert_params) / model_dense if model_dense else 0.0
        scale_e = expert_params / routed_expert_params(m) if expert_params else 0.0
        own = [(d * pp * scale_d, e * pp * scale_e) for d, e in shares]  # each rank's, in the sharding functions' N/p form

        def rank_states(r: int) -> tuple[dict[str, int], int]:
            # the recipe's states of rank r's own parameters; a caller's own (per-GPU figures of N/p, fine-tuning)
            # scaled by the rank's share of the parameters
            if recipe_states:
                weights, grads, optimizer = recipe_states_of(*own[r])
                return {"weights": weights, "optimizer": optimizer}, grads
            assert states is not None
            f = sum(shares[r]) * pp / total_params(m)  # the rank's share of all the model's parameters
            by = state_shares[r] if state_shares is not None else {}
            return ({k: math.ceil(v * by.get(k, f)) for k, v in states.items()},
                    math.ceil((gradients or 0) * by.get("gradients", f)))

        if rank_held is None and not offload_layers and float(in_flight).is_integer():
            rank_held = held_by_rank(m.num_layers, pp, int(in_flight), pp_split.vpp, None, pp_split.embedding, pp_split.loss)
        layers = rank_layers(m.num_layers, pp, pp_split)
        if layers is not None and (rank_held is not None or offload_layers):
            # rank by rank: each rank's own states beside its own activations, the largest sum the peak
            if per is None:  # Korthikanti's layer, the embedding's dropout mask on the first rank (textbook_activation_bytes)
                layer = korthikanti_layer_bytes(s_local, micro_batch, m.hidden_size, m.num_heads, tp, sp, recompute, flash)
                embed = s_local * micro_batch * m.hidden_size * in_flight / (tp if sp else 1)
            peaks = []
            for r, (dense, experts) in enumerate(own):
                held = (min(len(layers[r]), offload_layers) * min(in_flight, pp - r) if offload_layers
                        else rank_held[r])  # type: ignore[index]
                activations = (rank_activation_bytes(per, r, pp, held, in_flight) if per is not None
                               else math.ceil(held * layer + (embed if r == 0 else 0)))
                unit = unit_gradient_bytes(m, tp, ep=ep, outside_blocks=r in (0, pp - 1)) if unit_by_rank else None
                peaks.append(peak(*rank_states(r), dense, experts, activations, hole if r == pp - 1 else 0, unit))
            totals = [sum(parts.values()) for parts in peaks]
            if rank_peaks is not None:
                rank_peaks[:] = totals
            return peaks[totals.index(max(totals))]
        # no per-rank schedule: the first rank's own states beside the fuller end
        return peak(*rank_states(0), *own[0], max(ends), 0)
    # one rank priced: the stage-averaged states N/p (or a caller's own) beside the fuller end's activations
    dense, experts = params - expert_params, expert_params
    if recipe_states:
        weights, grads, optimizer = recipe_states_of(dense, experts)
        states, gradients = {"weights": weights, "optimizer": optimizer}, grads
    freed = 0
    if hole and per is not None:
        bigger = LayerActivations(per.saved, per.embed, per.head_saved + hole, per.logits, per.workspace)
        freed = max(stage_activation_ends(bigger, m.num_layers, pp, in_flight, offload_layers, held_layers)) - max(ends)
    assert states is not None
    return peak(states, gradients or 0, dense, experts, max(ends), freed)


def rank_activation_bytes(per: LayerActivations, rank: int, pp: int, held: float, in_flight: float) -> int:
    """Activations of pipeline rank ``rank`` of ``pp`` (> 1) holding ``held`` layer-micro-batches at its fullest
    (calc.memory.pipeline.held_by_rank): the first also the embedding masks of its ``in_flight`` micro-batches, every
    rank but the last the backward workspace, the last the head (``stage_activation_ends``' two ends, rank by rank):
        rank 0       held * layer + in_flight * embed + workspace
        0 < r < p-1  held * layer + workspace
        rank p-1     held * layer + head inputs + max(logits/loss, workspace)"""
    saved = held * per.saved
    if rank == pp - 1:
        return math.ceil(saved + per.head_saved + max(per.logits, per.workspace))
    return math.ceil(saved + (in_flight * per.embed if rank == 0 else 0) + per.workspace)


def _per_tensor_explain(m: ModelSpec, micro_batch: int, s_local: int, plan: Parallelism, recompute: Recompute,
                        setup: LayerSetup, total: int, in_flight: float, loss: str = MEGATRON_LOSS,
                        held: tuple[int, int] | None = None, offload_layers: int | None = None) -> list[str]:
    """--explain lines of the per-tensor figure: the stage formula, then each buffer of one layer, the layer as the
    engine keeps it (``setup``: recomputed or offloaded modules, fp8 GEMM inputs; ``offload_layers``: the layers kept
    under CPU offloading)."""
    flash = setup.attention == "flash"
    per = layer_activations(m, micro_batch, s_local, plan.tp, plan.sequence_parallel, recompute, flash, setup=setup, loss=loss)
    p, n = plan.pp, m.num_layers
    stage = stage_activations(m, micro_batch, s_local, setup, recompute, 1, 1)
    head = f"head inputs {per.head_saved:,} + max(logits/loss {per.logits:,}, backward workspace {per.workspace:,})"
    if p == 1:
        kept = min(n, offload_layers) if offload_layers else n
        layers = f"{kept} layers" if kept == n else f"{kept} of the {n} layers (the other {n - kept} in host memory)"
        formula = f"{layers} x {per.saved:,} B + {head}"
    else:
        first, last = ((f"{math.ceil(n / p)} layers x {in_flight:g} micro-batches in flight", f"{n // p} layers")
                       if held is None else (f"{held[0]} layer-micro-batches in flight", f"{held[1]} layer-micro-batches"))
        formula = (f"the rank the pipeline states line names; the schedule holds on the fullest rank but the last {first} x "
                   f"{per.saved:,} B + workspace {per.workspace:,} (+ the embedding masks on the first), the last "
                   f"{last} x {per.saved:,} B + {head}")
    layer = f" (one layer: {stage.formula})" if stage.recompute else ""
    return [f"per-tensor activations = {total:,} B: {formula}{layer}" if p > 1 else
            f"per-tensor activations = {formula} = {total:,} B{layer}",
            *[f"  {b.name}: {b.formula}" for b in stage.layer]]
