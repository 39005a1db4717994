"""A training layout (how the run is split) and the checks that make it valid for a model and batch.

Ranks are ordered TP fastest, then CP, then DP, then PP outermost, as Megatron-Core orders them (``tp-cp-ep-dp-pp``,
megatron/core/parallel_state.py initialize_model_parallel); so a TP group has stride 1, a CP group stride t, the DP
group stride t*c, pipeline neighbours t*c*d ranks apart.

MoE layers are laid out on their own grid over the same t*c*d ranks of a pipeline stage ("MoE parallel folding",
Liu et al. 2025, arXiv 2504.14960; megatron/core/transformer/moe/README.md "MoE Parallel Folding"):
ETP x EP x EDP = t*c*d, ordered ``tp-ep-dp`` with ETP fastest (parallel_state.py builds a second RankGenerator with
tp=expert_tensor_parallel_size, ep=expert_model_parallel_size, dp=world/(ETP x EP x PP), cp=1). So the EP group is
EP ranks ETP apart: ranks {r0 + j x ETP, j < EP} of ETP x EP consecutive ranks, one node's NVLink when ETP x EP <= GPUs
per node; the expert-DP group (the one the experts' gradients and distributed-optimizer states shard over) is
EDP = t*c*d / (ETP x EP) ranks ETP x EP apart. ETP defaults to TP (megatron/training/arguments.py:
``if args.expert_tensor_parallel_size is None: args.expert_tensor_parallel_size = args.tensor_model_parallel_size``),
which makes EP divide c*d: the classic "EP inside DP" layout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from calc.errors import LLMCalcError
from calc.memory.activations import OFFLOAD_MODULES, RECOMPUTE_MODULES, recompute_problem
from calc.memory.pipeline import StageSplit, held_by_rank
from calc.memory.training import FSDP_PP, SHARDINGS, ZERO2_PP, ZERO_SHARDING
from calc.model.parallel import check_sequence_parallel, check_tp_split, expert_grid_problem, pipeline_stage_layers
from calc.specs import ModelSpec

Recompute = Literal["none", "selective", "full", "sac", "deepseek", "dots"]
RECOMPUTE_CHOICES: tuple[Recompute, ...] = ("none", "selective", "full", "sac", "deepseek", "dots")


@dataclass(frozen=True, slots=True)
class Layout:
    """TP x CP x DP x PP GPUs, the MoE grid ETP x EP x EDP folded over TP x CP x DP, interleaving, micro-batch, ZeRO
    and recomputation. ``etp`` None is Megatron's default, ETP = TP.

    ``sharding``: "zero" (ZeRO stage ``zero``, DeepSpeed / Megatron), "fsdp-pp", torchtitan's FSDP2 under pipeline
    parallelism (``zero`` 3 and ``pp`` > 1; calc.memory.training.fsdp_pp_states), or "zero2-pp", Llama 3's FSDP under
    pipeline parallelism (``zero`` 2 and ``pp`` > 1: gradients reduce-scattered every micro-batch;
    calc.memory.training.zero2_pp_states).

    ``pp_embedding`` / ``pp_loss``: Megatron-Core's ``--account-for-embedding-in-pipeline-split`` /
    ``--account-for-loss-in-pipeline-split``: the embedding (loss) counts as one layer of the first (last) virtual
    stage in the pipeline split (``pipeline_stage_layers``). ``recompute_modules``: Megatron-Core's
    ``--recompute-modules`` with ``recompute`` "selective" (calc.memory.activations.module_buffers).
    ``cpu_offload_layers``: Megatron-Core's ``--cpu-offloading-num-layers`` (activations only): the saved tensors of
    that many of the L layers go to host memory (``offloaded_stage_layers``). ``offload_modules``: Megatron-Core's
    ``--fine-grained-activation-offloading --offload-modules`` (calc.memory.activations.offloaded_buffers).
    ``pp_microbatch_group``: N, the micro-batches an interleaved schedule runs back to back on one model chunk before
    the next (Megatron-Core ``microbatch_group_size_per_vp_stage``, torch ScheduleInterleaved1F1B's
    ``microbatches_per_round``, Llama 3's tunable N, arXiv 2407.21783 sec. 3.3.2 Figure 6); None: PP, the
    depth-first default of both (calc.training.step.in_flight_microbatches)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    vpp: int = 1
    sp: bool = False
    micro_batch: int = 1
    zero: int = 0
    recompute: Recompute = "none"
    etp: int | None = None
    sharding: str = ZERO_SHARDING
    pp_embedding: bool = False
    pp_loss: bool = False
    recompute_modules: frozenset[str] = frozenset()
    cpu_offload_layers: int = 0
    offload_modules: frozenset[str] = frozenset()
    pp_microbatch_group: int | None = None

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def stage_split(self) -> StageSplit:
        """How the layers split over the pipeline ranks (calc.memory.pipeline.StageSplit): chunks, embedding, loss."""
        return StageSplit(self.vpp, self.pp_embedding, self.pp_loss)

    def rank_held(self, num_layers: int, micro: int) -> tuple[int, ...] | None:
        """The layer-micro-batches of saved activations each pipeline rank holds at its fullest over ``micro``
        micro-batches under this schedule (calc.memory.pipeline.held_by_rank); None without a pipeline."""
        return held_by_rank(num_layers, self.pp, micro, self.vpp, self.pp_microbatch_group, self.pp_embedding, self.pp_loss)

    @property
    def expert_tp(self) -> int:
        """ETP: the ranks one expert's weights are split over (Megatron default: TP)."""
        return self.tp if self.etp is None else self.etp

    @property
    def edp(self) -> int:
        """Expert data-parallel size EDP = t*c*d / (ETP x EP) (parallel_state.py expert_data_parallel_size, per stage):
        the ranks holding the same experts, over which their gradients reduce and their optimizer states shard."""
        return max(self.tp * self.cp * self.dp // (self.expert_tp * self.ep), 1)

    def label(self) -> str:
        group = f"N{self.pp_microbatch_group}" if self.pp_microbatch_group is not None else ""
        parts = [f"TP{self.tp}", f"PP{self.pp}" + (f"x{self.vpp}{group}" if self.vpp > 1 else ""), f"DP{self.dp}"]
        parts += [f"CP{self.cp}"] if self.cp > 1 else []
        parts += [f"EP{self.ep}"] if self.ep > 1 else []
        parts += [f"ETP{self.etp}"] if self.etp is not None and self.etp != self.tp else []
        sharding = {FSDP_PP: "FSDP+PP", ZERO2_PP: "ZeRO2+PP"}.get(self.sharding, f"ZeRO{self.zero}")
        rc = self.recompute + (f"({'+'.join(sorted(self.recompute_modules))})" if self.recompute_modules else "")
        parts += [f"mb{self.micro_batch}", sharding, f"rc:{rc}"] + (["SP"] if self.sp else [])
        parts += [f"offload{self.cpu_offload_layers}"] if self.cpu_offload_layers else []
        parts += [f"offload({'+'.join(sorted(self.offload_modules))})"] if self.offload_modules else []
        return " ".join(parts)

    def with_(self, **changes: object) -> Layout:
        return replace(self, **changes)

    def offload_flag(self) -> str | None:
        """The activation-offloading flag this layout was given (--cpu-offload-layers first), None without any."""
        return "--cpu-offload-layers" if self.cpu_offload_layers else "--offload-modules" if self.offload_modules else None


def uneven_stage_note(num_layers: int, pp: int, embedding: bool = False, loss: bool = False, vpp: int = 1) -> str:
    """'' for an even split; else the uneven Megatron-Core split for the plan string, e.g. " first11 last10" for 32
    layers on PP 3 (stages 11/11/10): Megatron-Core's --decoder-first-pipeline-num-layers 11
    --decoder-last-pipeline-num-layers 10, the middle stages taking the rest evenly. With the embedding / loss counted
    in the split (``pipeline_stage_layers``): " +embedding" / " +loss" instead (Megatron's account-for flags).
    With interleaving (``vpp`` v > 1) a stage whose layers do not divide by v adds " layout": Megatron-Core refuses
    those counts with the first/last flags (transformer_config.py "must be divisible by virtual pipeline parallel
    degree") and places them only through --pipeline-model-parallel-layout, chunks of ceil and floor of n/v layers
    (calc.training.step.chunk_share prices the fuller ones).

    >>> uneven_stage_note(32, 3), uneven_stage_note(126, 16, vpp=4), uneven_stage_note(32, 8, vpp=3)
    (' first11 last10', ' first7 last7 layout', ' layout')
    """
    if embedding or loss:
        return (" +embedding" if embedding else "") + (" +loss" if loss else "")
    stages = pipeline_stage_layers(num_layers, pp)
    if stages is None:
        return ""
    note = "" if num_layers % pp == 0 else f" first{stages[0]} last{stages[-1]}"
    return note + (" layout" if vpp > 1 and any(n % vpp for n in stages) else "")


def num_microbatches(layout: Layout, global_batch: int) -> int:
    """m = B / (d x b): micro-batches each pipeline runs per step."""
    per_replica, rest = divmod(global_batch, layout.dp * layout.micro_batch)
    if rest or per_replica < 1:
        raise LLMCalcError(
            "--global-batch",
            f"{global_batch} is not a multiple of DP {layout.dp} x micro-batch {layout.micro_batch} = "
            f"{layout.dp * layout.micro_batch}",
        )
    return per_replica


# The FSDP-with-PP shardings: the ZeRO stage each is, and what it is (zero_with_pp_problem's message)
_PP_SHARDING_ZERO = {FSDP_PP: (3, "FSDP2 (ZeRO-3)"), ZERO2_PP: (2, "Llama 3's FSDP (ZeRO-2)")}


def zero_with_pp_problem(zero: int, pp: int, sharding: str = ZERO_SHARDING) -> str | None:
    """ZeRO-2/3 shard gradients (and weights) that every micro-batch of a pipeline stage accumulates into: DeepSpeed
    refuses them with pipeline parallelism ("ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism",
    deepspeed/runtime/pipe/engine.py) and Megatron-Core's distributed optimizer is ZeRO-1. torchtitan's FSDP2 with PP
    (``sharding`` "fsdp-pp") keeps each stage's weights and gradients unsharded through the step instead, so it is
    allowed, and only with ZeRO-3 (FSDP full shard) and PP > 1; Llama 3's FSDP (``sharding`` "zero2-pp") reduce-scatters
    each micro-batch's gradients into an fp32 shard as its backward runs, so ZeRO-2 with PP > 1 is allowed under it
    (arXiv 2407.21783 sec. 3.3.2). None when allowed. One message for train-step and train-plan (whose search tries
    ZeRO stages only), so it says which commands take --sharding."""
    if sharding not in SHARDINGS:
        return f"unknown sharding {sharding!r}; use one of {', '.join(SHARDINGS)}"
    if sharding in _PP_SHARDING_ZERO:
        need, what = _PP_SHARDING_ZERO[sharding]
        if zero != need or pp < 2:
            return f"sharding {sharding} is {what} under pipeline parallelism: it needs --zero {need} and --pp > 1, " \
                   f"got ZeRO-{zero} and PP {pp}"
        return None
    if zero >= 2 and pp > 1:
        return f"ZeRO-{zero} with PP {pp}: stages 2 and 3 shard the gradients every micro-batch accumulates into; " \
               f"with pipeline parallelism use --zero 0 or 1 (or --pp 1 for FSDP-style ZeRO-3, or --sharding {FSDP_PP}: " \
               f"torchtitan's FSDP2 with PP, or --sharding {ZERO2_PP} with --zero 2: Llama 3's FSDP with PP; train-step " \
               "and memory --mode train take --sharding, the plan search tries ZeRO stages only)"
    return None


def cpu_offload_problem(layout: Layout, num_layers: int) -> str | None:
    """Megatron-Core's rules for --cpu-offloading (megatron/core/transformer/transformer_config.py __post_init__):
    0 <= cpu_offloading_num_layers < num_layers, no pipeline parallelism ("Currently there is no support for Pipeline
    parallelism with CPU offloading") and no activation recomputation ("CPU offloading does not work when activation
    recomputation is enabled"). None when allowed."""
    n = layout.cpu_offload_layers
    if n < 0 or n >= num_layers:
        return f"CPU offloading can be done only for 0 to {num_layers - 1} of the {num_layers} layers, got {n}"
    if layout.pp > 1:
        return f"Megatron-Core has no CPU activation offloading with pipeline parallelism (PP {layout.pp}); use --pp 1"
    if layout.recompute != "none":
        return f"Megatron-Core's CPU offloading does not work with activation recomputation (--recompute {layout.recompute})"
    return None


def offloaded_stage_layers(layout: Layout, num_layers: int) -> int | None:
    """Layers whose saved tensors stay on the GPU under Megatron-Core's CPU offloading, or None without it: L - N.
    Megatron builds Transformer Engine's offload context with (cpu_offloading_num_layers N, num_layers L)
    (megatron/core/transformer/transformer_block.py get_cpu_offload_context); TE's group offload handler
    (transformer_engine/pytorch/cpu_offload.py, num_offload_group N of num_model_group L) copies the saved tensors of
    N layers to pinned host memory as their forward ends and reloads them in backward, the other L - N stay. E.g.
    Llama 3 70B, 80 layers, N = 40 (the Megatron-Bridge GB200 FP8 recipe): 40 layers of activations on the GPU."""
    return num_layers - layout.cpu_offload_layers if layout.cpu_offload_layers else None


def layout_is_valid(m: ModelSpec, layout: Layout, global_batch: int, seq: int) -> bool:
    """``check_training_layout`` as a predicate: what the plan search enumerates is exactly what train-step accepts."""
    try:
        check_training_layout(m, layout, None, global_batch, seq)
    except LLMCalcError:
        return False
    return True


# Megatron-Core recompute module -> the layer component (calc.model.params.layer_kinds) it checkpoints; None: every model
# has it (norms, the attention core)
_MODULE_COMPONENT = {"mla_up_proj": "mla", "moe_act": "experts", "moe": "experts", "mlp": "mlp",
                     "shared_experts": "shared_experts"}


def _has_module(m: ModelSpec, module: str) -> bool:
    """Whether ``m`` has the block a --recompute-modules entry checkpoints (MLA for mla_up_proj, routed experts for
    moe / moe_act, a dense MLP layer for mlp, shared experts for shared_experts)."""
    need = _MODULE_COMPONENT.get(module)
    if need is None:
        return True
    if need == "mla":
        return m.mla is not None
    from calc.model.params import layer_kinds

    return any(t.component == need for _kind, _count, tensors in layer_kinds(m) for t in tensors)


def check_training_layout(m: ModelSpec, layout: Layout, num_gpus: int | None, global_batch: int, seq: int) -> int:
    """Refuse a layout the model, the GPU count or the batch cannot take; return the micro-batch count.

    The one validity rule of train-step and train-plan (which enumerates only layouts this accepts). Interleaving
    (VPP v) needs p x v <= L and the micro-batch count a multiple of p (Megatron-LM's interleaved schedule);
    L need not divide by p x v: the stages' chunks are then uneven (ceil / floor of L / (p v) layers), as
    Megatron-Core allows with its first/last-stage layer counts, and the step model times the fullest stage. With the
    embedding / loss counted in the split (``layout.pp_embedding`` / ``pp_loss``) Megatron-Core's own rule applies
    instead (megatron/core/transformer/transformer_config.py __post_init__): L + e + l divisible by p, and the
    per-stage count by v, i.e. by p x v; e.g. 126 + 2 = 128 layers on PP 16 x VPP 8, one per virtual stage."""
    for flag, value in (("--tp", layout.tp), ("--pp", layout.pp), ("--dp", layout.dp), ("--cp", layout.cp),
                        ("--ep", layout.ep), ("--etp", layout.expert_tp),
                        ("--vpp", layout.vpp), ("--micro-batch", layout.micro_batch), ("--seq", seq)):
        if value < 1:
            raise LLMCalcError(flag, f"must be >= 1, got {value}")
    if num_gpus is not None and layout.num_gpus != num_gpus:
        raise LLMCalcError(
            "--num-gpus", f"{num_gpus} GPUs != TP {layout.tp} x PP {layout.pp} x DP {layout.dp} x CP {layout.cp} = {layout.num_gpus}"
        )
    check_tp_split(m, layout.tp)
    if layout.vpp > 1 and layout.pp == 1:
        raise LLMCalcError("--vpp", f"interleaving splits each pipeline stage into VPP chunks; VPP {layout.vpp} needs --pp > 1")
    accounted = layout.pp_embedding or layout.pp_loss
    if accounted:
        total = m.num_layers + layout.pp_embedding + layout.pp_loss
        if total % (layout.pp * layout.vpp):
            raise LLMCalcError("--pp", f"with the embedding/loss counted in the pipeline split, the {m.num_layers} layers "
                               f"of {m.name} (+{int(layout.pp_embedding)} embedding, +{int(layout.pp_loss)} loss = {total} "
                               f"slots) must divide by PP {layout.pp} x VPP {layout.vpp} (Megatron-Core's rule)")
    elif layout.pp * layout.vpp > m.num_layers:
        slots = layout.pp * layout.vpp  # Megatron-Core's embedding / loss slots (Llama 3 405B: 126 + 2 = 128 = 16 x 8)
        hint = ("; --pp-embedding --pp-loss count the embedding and the loss as layers: "
                f"{m.num_layers} + 2 = {m.num_layers + 2} slots" if (m.num_layers + 2) % slots == 0 else
                f"; --pp-embedding counts the embedding as a layer: {m.num_layers} + 1 = {m.num_layers + 1} slots"
                if (m.num_layers + 1) % slots == 0 else "")
        raise LLMCalcError("--pp", f"PP {layout.pp} x VPP {layout.vpp} exceeds the {m.num_layers} layers of {m.name}{hint}")
    if not accounted and pipeline_stage_layers(m.num_layers, layout.pp) is None:
        raise LLMCalcError("--pp", f"{layout.pp} stages cannot hold the {m.num_layers} layers of {m.name} as Megatron-Core "
                           f"splits them (equal middle stages of ceil(L/p) layers, fewer on the first/last); use a PP "
                           f"dividing {m.num_layers} or one with (p - 2) x ceil(L/p) <= L - 2")
    if seq % (2 * layout.cp if layout.cp > 1 else 1):
        raise LLMCalcError("--cp", f"context parallel {layout.cp} needs the sequence {seq} divisible by 2 x CP (load-balanced chunks)")
    problem = expert_grid_problem(m, layout.tp, layout.cp, layout.dp, layout.ep, layout.etp)
    if problem:
        raise LLMCalcError(*problem)
    if layout.zero not in (0, 1, 2, 3):
        raise LLMCalcError("--zero", f"ZeRO stage must be 0, 1, 2 or 3, got {layout.zero}")
    problem = zero_with_pp_problem(layout.zero, layout.pp, layout.sharding)
    if problem:
        raise LLMCalcError("--zero" if layout.sharding == ZERO_SHARDING else "--sharding", problem)
    if layout.recompute not in RECOMPUTE_CHOICES:
        raise LLMCalcError("--recompute", f"use one of {', '.join(RECOMPUTE_CHOICES)}")
    if (why := recompute_problem(m, layout.recompute)) is not None:
        raise LLMCalcError("--recompute", f"{why}; give --recompute selective --recompute-modules layernorm (its norm "
                                          "half)")
    if layout.recompute_modules and layout.recompute != "selective":
        raise LLMCalcError("--recompute-modules", f"Megatron recomputes named modules under --recompute selective, "
                           f"not {layout.recompute}")
    if layout.cpu_offload_layers:
        problem = cpu_offload_problem(layout, m.num_layers)
        if problem:
            raise LLMCalcError("--cpu-offload-layers", problem)
    unknown = sorted(set(layout.offload_modules) - set(OFFLOAD_MODULES))
    if unknown:
        raise LLMCalcError("--offload-modules", f"unknown module {', '.join(unknown)}; use {', '.join(OFFLOAD_MODULES)}")
    if "attn_proj" in layout.offload_modules and "core_attn" not in layout.offload_modules:
        raise LLMCalcError("--offload-modules", "attn_proj cannot be offloaded without core_attn (Megatron-Core's rule)")
    if layout.offload_modules and layout.recompute == "full":
        raise LLMCalcError("--offload-modules", "under --recompute full each layer keeps only its input, which no module "
                                                "offload moves (it changes nothing); drop it or recompute less")
    expert_only = sorted(mod for mod in layout.offload_modules if mod in ("moe_act", "expert_fc1"))
    if expert_only and not m.moe:
        raise LLMCalcError("--offload-modules", f"{m.name} has no routed experts for {', '.join(expert_only)} (it would "
                                                "offload nothing); drop it")
    unknown = sorted(set(layout.recompute_modules) - set(RECOMPUTE_MODULES))
    if unknown:
        raise LLMCalcError("--recompute-modules", f"unknown module {', '.join(unknown)}; use {', '.join(RECOMPUTE_MODULES)}")
    absent = sorted(mod for mod in layout.recompute_modules if not _has_module(m, mod))
    if absent:
        raise LLMCalcError("--recompute-modules", f"{m.name} has no {', '.join(absent)} (a module it lacks recomputes "
                                                  "nothing); drop it")
    if layout.sp and layout.tp == 1:
        raise LLMCalcError("--sp", "sequence parallelism splits along the TP group; it needs --tp > 1")
    check_sequence_parallel(layout.sp, seq, layout.tp, layout.cp)
    micro = num_microbatches(layout, global_batch)
    if layout.vpp > 1 and micro % layout.pp:
        raise LLMCalcError("--vpp", f"the interleaved schedule needs the {micro} micro-batches to be a multiple of PP {layout.pp}")
    if layout.pp_microbatch_group is not None:
        problem = microbatch_group_problem(layout, micro)
        if problem:
            raise LLMCalcError("--pp-microbatch-group", problem)
    return micro


def microbatch_group_problem(layout: Layout, micro: int) -> str | None:
    """Why N = ``layout.pp_microbatch_group`` cannot run, or None. Llama 3 (arXiv 2407.21783 sec. 3.3.2) places its
    tunable N between the depth-first schedule, "N = PP", and the breadth-first one, "N = M" (PP <= N <= M); both
    Megatron-Core (micro-batches a multiple of microbatch_group_size_per_vp_stage) and torch (n_microbatches a
    multiple of the rounds) run the micro-batches in whole groups of N. Below PP the first rank waits for its own
    chunk-0 outputs to come round the pipeline, a stall the (p - 1)/v bubble term does not price: refused."""
    n = layout.pp_microbatch_group
    if n is None:
        return None
    if layout.vpp == 1:
        return "groups micro-batches per model chunk of an interleaved schedule; it needs --vpp > 1"
    if not layout.pp <= n <= micro:
        return (f"N = {n} must lie between PP {layout.pp} (depth-first) and the {micro} micro-batches (breadth-first), "
                "as Llama 3's tunable schedule does (arXiv 2407.21783 sec. 3.3.2)")
    if micro % n:
        return f"the {micro} micro-batches must be a multiple of N = {n} (whole groups, as Megatron-Core and torch run them)"
    return None
