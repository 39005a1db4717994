"""The fastest training layouts that fit: enumerate, prune on memory, rank by predicted step time.

Enumerated (Narayanan et al. 2021 sec. 3 takeaways; Megatron-Core constraints):
  TP   divides the heads (and the KV heads, or is a multiple of them), at most one node unless allowed
  CP   1, 2, 4, ... while s/c >= 1,024 tokens per GPU
  PP   a degree dividing the remaining GPUs whose layers Megatron-Core can place: L/p each, or its uneven form (equal
       middle stages of ceil(L/p), fewer layers first/last: calc.model.parallel.pipeline_stage_layers; Llama 3 405B
       ran 126 layers on PP 16 as 7/8x14/7), stated in the plan string. The step model times the fullest stage, so an
       uneven split pays for its idle layers; between equal step times an even split ranks first
  DP   the rest; EP (MoE only) divides the experts and DP x CP; micro-batch b in 1, 2, 4, 8 with d*b | B
  VPP  interleaving v = 2..8 when every stage keeps >= v layers and p divides the micro-batch count
       (uneven chunks allowed, as Megatron-Core's first/last-stage layer counts allow)
  ZeRO 0 and 1 always, 2 and 3 only without PP (FSDP style); SP whenever TP > 1
  Validity is calc.training.layout.check_training_layout's, the function train-step refuses a layout with: the
  search enumerates exactly the layouts train-step accepts (then narrows TP to a node and CP to >= 4K tokens).
  recompute: for each ZeRO stage the lightest level that fits (recomputation never speeds a step up);
  "selective" is skipped with flash attention, where it saves nothing more than flash already does; MLA models
  try DeepSeek's norm + up-projection recomputation ("deepseek") before "full".
Memory is checked first (cheap); only layouts that fit get a step-time evaluation, in plain floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, computed_field

from calc.errors import LLMCalcError
from calc.model.parallel import check_tp_split, pipeline_stage_layers, sp_splits_sequence
from calc.training.cost import ModelCost
from calc.training.layout import Layout, layout_is_valid, zero_with_pp_problem
from calc.training.stack import SHARDS_KV_HEADS, pp_sharding, stack_key, stack_runs, stack_zero_stages, tp_places_kv_heads
from calc.training.step import TrainStepResult, memory_per_gpu, step_terms, train_step
from calc.units import abbrev

MICRO_BATCHES = (1, 2, 4, 8)
MIN_TOKENS_PER_CP_RANK = 4096
MAX_VPP = 8


@dataclass(frozen=True)
class SearchSpace:
    """What the search may vary (all named, all overridable)."""

    cross_node_tp: bool = False
    micro_batches: tuple[int, ...] = MICRO_BATCHES
    zero_stages: tuple[int, ...] = (0, 1, 2, 3)
    max_cp: int = 32
    max_vpp: int = MAX_VPP
    fixed: tuple[tuple[str, Any], ...] = ()  # e.g. (("tp", 8), ("recompute", "full")): what the user pinned


class PlanSearchResult(BaseModel):
    model: str
    gpu: str
    system: str
    num_gpus: int
    global_batch: int
    seq: int
    layouts_considered: int
    layouts_fitting: int
    layouts_timed: int
    plans: list[TrainStepResult]
    verdict: str
    assumptions: list[str]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def explain(self) -> list[str]:
        """What --explain prints, as train-step's ``explain``: the search's assumptions, then the best plan's
        derivation (its own assumption lines are the search's, not repeated)."""
        best = self.plans[0].explain if self.plans else []
        return [f"assumption: {a}" for a in self.assumptions] + [
            f"best plan: {line}" for line in best if not line.startswith("assumption:")]


def _divisors(n: int) -> list[int]:
    """Divisors of n in increasing order, found up to sqrt(n) (a million GPUs took 0.25 s by trial of every k)."""
    small = [k for k in range(1, math.isqrt(n) + 1) if n % k == 0]
    return small + [n // k for k in reversed(small) if k * k != n]


def _tp_choices(cost: ModelCost, n: int, space: SearchSpace) -> list[int]:
    m = cost.m
    limit = n if space.cross_node_tp else min(n, cost.system.gpus_per_node)
    out = []
    for tp in _divisors(n):
        if tp > limit or m.num_heads % tp:
            continue
        if not tp_places_kv_heads(cost.eff.stack, m, tp):
            continue
        out.append(tp)
    return out


def _pinned(space: SearchSpace, name: str, choices: list[Any]) -> list[Any]:
    pins = dict(space.fixed)
    return [c for c in choices if c == pins[name]] if name in pins else choices


def _recompute_levels(cost: ModelCost, space: SearchSpace) -> list[str]:
    """Lightest first. An MLA model (DeepSeek-V2/V3) also tries DeepSeek's own recomputation of the norms and MLA
    up-projections (calc.memory.activations.norm_up_layer_buffers) before full recomputation."""
    levels = ["none", "full"] if cost.eff.flash else ["none", "selective", "full"]
    if cost.m.mla and cost.lora is None:  # a LoRA step prices none / selective / full (calc.training.adapters)
        levels.insert(-1, "deepseek")
    pins = dict(space.fixed)
    return [pins["recompute"]] if "recompute" in pins else levels


def _cp_choices(cost: ModelCost, n: int, space: SearchSpace) -> list[int]:
    pinned = "cp" in dict(space.fixed)
    out = []
    for c in _divisors(n):
        if c > 1 and (cost.seq % (2 * c) or (not pinned and (c > space.max_cp or c & (c - 1)
                                                            or cost.seq // c < MIN_TOKENS_PER_CP_RANK))):
            continue
        out.append(c)
    return out


def searches_cp(cost: ModelCost, n: int, space: SearchSpace) -> bool:
    """Whether the search tries any context-parallel degree above 1 (train-plan refuses --cp-comm otherwise: with no
    CP layout among the candidates it could change nothing)."""
    return any(c > 1 for tp in _pinned(space, "tp", _tp_choices(cost, n, space))
               for c in _pinned(space, "cp", _cp_choices(cost, n // tp, space)))


def check_pins(cost: ModelCost, n: int, space: SearchSpace) -> None:
    """A pinned degree the model or the GPU count cannot take is refused with its reason (not 'nothing fits')."""
    m, pins = cost.m, dict(space.fixed)
    tp, cp, ep = pins.get("tp"), pins.get("cp"), pins.get("ep")
    if tp is not None:
        check_tp_split(m, tp)  # heads, KV heads and FFN width, with the degrees that pass
        if n % tp or m.num_heads % tp or not tp_places_kv_heads(cost.eff.stack, m, tp):
            kv = ("divide" if stack_key(cost.eff.stack) in SHARDS_KV_HEADS and not m.mla else "divide or be a multiple of")
            raise LLMCalcError("--tp", f"{tp} must divide the {n} GPUs and the {m.num_heads} heads of {m.name} "
                               f"(and {kv} its {m.kv_heads} KV heads); TP choices: "
                               f"{', '.join(map(str, _tp_choices(cost, n, SearchSpace(cross_node_tp=True))))}")
        if tp > cost.system.gpus_per_node and not space.cross_node_tp:
            raise LLMCalcError("--tp", f"{tp} spans nodes of {cost.system.gpus_per_node} GPUs; `train-plan --cross-node-tp` "
                               "allows it, `train-step --tp` times it")
    if cp is not None and (n % cp or (cp > 1 and cost.seq % (2 * cp))):
        raise LLMCalcError("--cp", f"{cp} must divide the {n} GPUs, and 2 x {cp} the sequence {cost.seq}")
    if ep is not None and ep > 1 and (not m.moe or m.moe.num_experts % ep):
        raise LLMCalcError("--ep", f"{ep} must divide the experts of a MoE model ({m.name}: "
                           f"{m.moe.num_experts if m.moe else 'no'} experts)")
    problem = zero_with_pp_problem(pins.get("zero", 0), pins.get("pp", 1),
                                   pp_sharding(cost.eff.stack, pins.get("zero", 0), pins.get("pp", 1)))
    if problem:
        raise LLMCalcError("--zero", problem)
    if "pp" in pins and pins["pp"] > m.num_layers:
        raise LLMCalcError("--pp", f"{pins['pp']} stages exceed the {m.num_layers} layers of {m.name}")
    product = (tp or 1) * (cp or 1) * pins.get("pp", 1)
    if n % product:
        raise LLMCalcError("--pp" if "pp" in pins else "--cp", f"TP {tp or 1} x PP {pins.get('pp', 1)} x CP {cp or 1} = {product} "
                           f"does not divide the {n} GPUs")


def enumerate_fitting(cost: ModelCost, n: int, global_batch: int,
                      space: SearchSpace) -> tuple[int, list[tuple[Layout, int, int]]]:
    """(layouts considered, [(layout, micro-batches, peak bytes per GPU)] that fit in memory)."""
    m = cost.m
    capacity = cost.gpu.cuda_total_bytes
    experts = m.moe.num_experts if m.moe else 1
    considered, fitting = 0, []
    for tp in _pinned(space, "tp", _tp_choices(cost, n, space)):
        for cp in _pinned(space, "cp", _cp_choices(cost, n // tp, space)):
            rest = n // (tp * cp)
            pps = [p for p in _divisors(rest) if pipeline_stage_layers(m.num_layers, p) is not None
                   and (p == 1 or stack_runs(cost.eff.stack, "pp"))]
            for pp in _pinned(space, "pp", pps):
                dp = rest // pp
                # a LoRA step places no experts by EP (its memory is the fine-tuning engine's, calc.training.adapters)
                eps = [e for e in _divisors(experts) if (dp * cp) % e == 0] if m.moe and cost.lora is None else [1]
                for ep in _pinned(space, "ep", eps):
                    pinned_b = dict(space.fixed).get("micro_batch")  # a pin outside 1, 2, 4, 8 is searched too
                    for b in _pinned(space, "micro_batch", sorted({*space.micro_batches, *([pinned_b] if pinned_b else [])})):
                        if global_batch % (dp * b):
                            continue
                        micro = global_batch // (dp * b)
                        zeros = list(space.zero_stages)
                        if "zero" not in dict(space.fixed):
                            zeros = [z for z in zeros if z in stack_zero_stages(cost.eff.stack)]
                        if dp * cp == 1 and "zero" not in dict(space.fixed):
                            zeros = zeros[:1]  # nothing to shard over: every stage is ZeRO-0 (was a duplicate row)
                        for zero in _pinned(space, "zero", zeros):
                            for recompute in _recompute_levels(cost, space):
                                # SP where it splits the tokens whole; TP without it otherwise
                                layout = Layout(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep,
                                                sp=tp > 1 and sp_splits_sequence(cost.seq, tp, cp), micro_batch=b, zero=zero,
                                                recompute=recompute,  # type: ignore[arg-type]
                                                sharding=pp_sharding(cost.eff.stack, zero, pp))
                                if not layout_is_valid(m, layout, global_batch, cost.seq):
                                    continue  # what train-step would refuse (calc.training.layout), e.g. ZeRO-3 with PP
                                considered += 1
                                if (peak := sum(memory_per_gpu(cost, layout, micro).values())) <= capacity:
                                    fitting.append((layout, micro, peak))
                                    break  # heavier recomputation only slows a fitting layout down
    return considered, fitting


def _interleavings(cost: ModelCost, layout: Layout, micro: int, space: SearchSpace) -> list[int]:
    if layout.pp == 1:
        return [1]
    candidates = range(1, space.max_vpp + 1 if stack_runs(cost.eff.stack, "vpp") else 2)
    return _pinned(space, "vpp", [v for v in candidates
                                  if v == 1 or layout_is_valid(cost.m, layout.with_(vpp=v), micro * layout.dp * layout.micro_batch,
                                                               cost.seq)])


def search_plans(
    cost: ModelCost, num_gpus: int, global_batch: int, *, top: int = 10, space: SearchSpace | None = None,
    suggest: bool = True,
) -> PlanSearchResult:
    """Every valid layout of ``num_gpus`` GPUs for this model, batch and sequence; the ``top`` fastest that fit.
    ``suggest`` False: a verdict of nothing fitting leaves out what would fit (what_would_fit, further searches), for a
    caller that only asks whether something fits (a GPU-count search)."""
    space = space or SearchSpace()
    if num_gpus < 1:
        raise LLMCalcError("--num-gpus", f"must be >= 1, got {num_gpus}")
    if top < 1:
        raise LLMCalcError("--top", f"must be >= 1, got {top}")
    if global_batch < 1:
        raise LLMCalcError("--global-batch", f"must be >= 1, got {global_batch}")
    check_pins(cost, num_gpus, space)
    considered, fitting = enumerate_fitting(cost, num_gpus, global_batch, space)
    if considered == 0:
        pins = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in space.fixed)
        raise LLMCalcError("--global-batch", f"no layout of {num_gpus} GPUs has DP x micro-batch dividing {global_batch}"
                           + (f" with {pins}" if pins else "") + "; change --global-batch or the pinned degrees")
    timed: list[tuple[float, bool, float, Layout]] = []
    for layout, micro, flat_peak in fitting:
        for v in _interleavings(cost, layout, micro, space):
            candidate = layout if v == 1 else layout.with_(vpp=v)
            peak = flat_peak if v == 1 else sum(memory_per_gpu(cost, candidate, micro).values())
            if peak > cost.gpu.cuda_total_bytes:
                continue  # interleaving keeps more micro-batches' activations on the first stage
            uneven = cost.m.num_layers % candidate.pp != 0
            timed.append((step_terms(cost, candidate, global_batch, micro).step_time_s, uneven, peak, candidate))
    timed.sort(key=lambda item: item[:3])  # fastest; at equal time an even split, then the most memory to spare
    plans = [train_step(cost, layout, global_batch=global_batch) for *_, layout in timed[:top]]
    if plans:
        best = plans[0]
        verdict = (f"fastest of {len(timed)} fitting layouts and interleavings: {best.layout}: "
                   f"{best.step_time_s:.3f} s/step, MFU {best.mfu:.1%}, "
                   f"{best.memory_per_gpu_bytes / 2**30:.1f} GiB per GPU")
    else:
        verdict = (f"does not fit: no layout of {cost.m.name} fits on {num_gpus} x {cost.gpu.name} with global batch "
                   f"{global_batch}{what_would_fit(cost, num_gpus, global_batch, space) if suggest else ''}")
    return PlanSearchResult(
        model=cost.m.name, gpu=cost.gpu.name, system=cost.system.name, num_gpus=num_gpus, global_batch=global_batch,
        seq=cost.seq, layouts_considered=considered, layouts_fitting=len(fitting), layouts_timed=len(timed), plans=plans,
        verdict=verdict, assumptions=cost.eff.describe(moe=cost.m.moe is not None, cp=any(p.cp > 1 for p in plans),
                                                       fp8=cost.dtype.startswith("fp8")) + [
            f"TP within a node ({cost.system.gpus_per_node} GPUs)" if not space.cross_node_tp else "TP may cross nodes",
            f"micro-batches tried: {', '.join(map(str, space.micro_batches))}; ZeRO 2/3 only without PP; SP whenever TP > 1",
        ],
    )


RELAXATIONS = (("recompute", "full", "--recompute full"), ("zero", None, "ZeRO searched (drop --zero)"),
               ("micro_batch", 1, "--micro-batch 1"), ("tp", None, "TP searched (drop --tp)"),
               ("pp", None, "PP searched (drop --pp)"), ("cp", None, "CP searched (drop --cp)"),
               ("ep", None, "EP searched (drop --ep)"))


def what_would_fit(cost: ModelCost, num_gpus: int, global_batch: int, space: SearchSpace) -> str:
    """The '; ...' tail of a 'nothing fits' verdict: the first pin whose relaxation fits on these GPUs (heavier
    recomputation, then the ZeRO stage, micro-batch 1, then each degree searched), then the smallest GPU count
    that fits as pinned (memory checks only). Unpinned, the search already tried ZeRO 0-3 and every recomputation."""
    pins = dict(space.fixed)
    for name, value, label in RELAXATIONS:
        if name not in pins or pins[name] == value:
            continue
        fixed = tuple((k, v) for k, v in space.fixed if k != name) + (((name, value),) if value is not None else ())
        try:
            fits = enumerate_fitting(cost, num_gpus, global_batch, replace(space, fixed=fixed))[1]
        except LLMCalcError:
            fits = []
        if fits:
            return f"; fits with {label} (e.g. {fits[0][0].label()})"
    levels = "/".join(_recompute_levels(cost, SearchSpace()))
    stages = ", ".join(map(str, stack_zero_stages(cost.eff.stack)))
    tried = "" if {"zero", "recompute"} & pins.keys() else f" (ZeRO {stages} and recompute {levels} tried)"
    more = smallest_fitting_gpu_count(cost, num_gpus, global_batch, space)
    return tried + (f"; fits on {more} GPUs" if more else "; none up to 64x as many GPUs fits either: "
                    "shorten --seq or use GPUs with more memory")


def smallest_fitting_gpu_count(cost: ModelCost, num_gpus: int, global_batch: int, space: SearchSpace) -> int | None:
    """Doubling the GPU count (memory check only) until some layout fits; None past 64x."""
    n = num_gpus * 2
    while n <= num_gpus * 64:
        if enumerate_fitting(cost, n, global_batch, space)[1]:
            return n
        n *= 2
    return None


DEFAULT_BATCH_TOKENS = 2**22  # 4M tokens per step (Llama 2: 4M; GPT-3 175B: 3.2M) when no --global-batch is given
GPUS_PER_SEQUENCE = 8  # ... and one sequence per 8 GPUs past 8x that batch (Llama 3 405B: 2,048 x 8K on 16,384 H100s)


# The largest published pre-training batches: Llama 3 405B 16M tokens (arXiv 2407.21783 sec. 3.4.1); DeepSeek-V3
# 15,360 sequences x 4K = 63M tokens (arXiv 2412.19437 sec. 4.2). Past 64M tokens per step a batch is more likely
# a unit slip (tokens typed where sequences are meant) than a run.
LARGEST_PUBLISHED_BATCH_TOKENS = 64 * 2**20


# The shortest learning-rate warm-up of the published pre-training recipes: Llama 2, 2,000 steps (arXiv 2307.09288
# sec. 2.2); Llama 3 405B warms up over 8,000 (arXiv 2407.21783 sec. 3.4.1). A run with fewer optimizer steps in all
# ends before its warm-up would.
SHORTEST_WARMUP_STEPS = 2000


def short_run_warning(tokens: float, global_batch: int, seq: int, num_gpus: int, flag: str) -> str | None:
    """A warning (field: message) when a GPU count searched for ``flag`` (--days / --budget) leaves the run fewer
    optimizer steps, D / (B x s), than the shortest published warm-up (SHORTEST_WARMUP_STEPS): the search bought
    speed with a batch the token budget cannot fill; None otherwise.

    >>> short_run_warning(1e9, 16384, 4096, 131072, "--budget").split(":")[0]
    '--budget'
    >>> short_run_warning(15e12, 1024, 4096, 1024, "--days") is None
    True
    """
    steps = tokens / (global_batch * seq)
    if steps >= SHORTEST_WARMUP_STEPS:
        return None
    return (f"{flag}: the {num_gpus:,} GPUs it found train {abbrev(tokens)} tokens in {steps:,.0f} optimizer steps of "
            f"{global_batch:,} x {seq:,} tokens, fewer than the shortest published learning-rate warm-up "
            f"({SHORTEST_WARMUP_STEPS:,} steps, Llama 2); pin --num-gpus or --global-batch for a real schedule")


def scale_warnings(num_gpus: int | None, global_batch: int | None, seq: int, gpus_per_node: int | None,
                   batch_flag: str = "--global-batch") -> list[str]:
    """Warnings (field: message) for a training job's scale: a global batch x seq beyond any published run, a GPU
    count past any cluster built (calc.sanity.SUSPICIOUS_GPUS), and a GPU count that leaves a node part-filled (each
    rank group then straddles nodes). ``batch_flag``: the form the user gave the batch in (--global-batch in sequences,
    or --global-batch-tokens)."""
    out = []
    if global_batch is not None and global_batch * seq > LARGEST_PUBLISHED_BATCH_TOKENS:
        size = (f"{global_batch:,} sequences (the batch is in sequences, not tokens) x {seq:,} = "
                f"{abbrev(global_batch * seq)} tokens per step" if batch_flag == "--global-batch"
                else f"{abbrev(global_batch * seq)} tokens per step ({global_batch:,} sequences of {seq:,})")
        out.append(f"{batch_flag}: {size}, beyond the largest published pre-training batch "
                   "(~63M tokens: DeepSeek-V3 15,360 x 4K; Llama 3 405B: 16M)")
    from calc.sanity import check_gpus_needed

    out += check_gpus_needed(num_gpus, "--num-gpus", verb="", what="the count")  # as serve flags a traffic that needs that many
    if num_gpus is not None and gpus_per_node and num_gpus > gpus_per_node and num_gpus % gpus_per_node:
        out.append(f"--num-gpus: {num_gpus:,} is not a multiple of the {gpus_per_node} GPUs per node: the last node is "
                   "part-filled; the model assumes whole nodes")
    return out


def default_global_batch(seq: int, num_gpus: int = 1) -> int:
    """Sequences per step when none is given: B0 = 4M tokens / s rounded up to a multiple of N,
        B = N x ceil(B0 / N)                       while N <= 8 B0 (at most 8x the 4M-token base batch),
        B = ceil(N / 8)                            past it (one sequence per 8 GPUs: Llama 3 405B, 2,048 x 8K on 16K).
    A multiple of N lets every GPU count split the batch over pure data parallelism, as a planner sizes the batch
    to the cluster (global batch = DP x micro-batch x accumulation in Megatron/DeepSpeed): a fixed 1,024 sequences
    on 264 GPUs (8 x 33) left only layouts with 11 or 33 pipeline stages and made MFU jump with N. B is within
    [B0, 2 B0) up to N = B0, then N sequences (one per GPU) up to 8 B0. The two regimes are default_batch_piece's."""
    per_gpu = default_batch_piece(seq, num_gpus)
    return num_gpus * per_gpu if per_gpu else -(-num_gpus // GPUS_PER_SEQUENCE)


def default_batch_piece(seq: int, num_gpus: int) -> int:
    """Which piece of default_global_batch a GPU count is in: the sequences each GPU runs per step, ceil(B0 / N), while
    the batch is a multiple of N; 0 past N = 8 B0, where the batch is one sequence per 8 GPUs whatever N. Counts of one
    piece give each GPU the same work (calc.training.sizing.smallest_over_batch_pieces).

    >>> default_batch_piece(4096, 1000), default_batch_piece(4096, 1024), default_batch_piece(4096, 400), default_batch_piece(4096, 9000)
    (2, 1, 3, 0)
    """
    base = default_base_batch(seq)
    return 0 if num_gpus > GPUS_PER_SEQUENCE * base else -(-base // num_gpus)


def default_base_batch(seq: int) -> int:
    """B0, the default batch's base in sequences: 4M tokens / s (DEFAULT_BATCH_TOKENS), at least one sequence.

    >>> default_base_batch(4096), default_base_batch(8192), default_base_batch(8 * 2**20)
    (1024, 512, 1)
    """
    return max(DEFAULT_BATCH_TOKENS // seq, 1)


def default_batch_drop_warning(seq: int, num_gpus: int) -> str | None:
    """A warning (field: message) when the default global batch is in its last piece (default_global_batch: one
    sequence per GPUS_PER_SEQUENCE GPUs past N = 8 B0, B0 = 4M tokens / s), where it falls below the batch of the
    count at that edge: 8 B0 sequences on N = 8 B0 GPUs, one per GPU, against ceil(N / 8) just past it, so a few GPUs
    more can split every sequence over 8 GPUs and train slower (Llama 3 8B at 8K: 4,096 GPUs run 4,096 sequences,
    4,200 GPUs run 525). None while the batch is at or above that edge's.

    >>> default_batch_drop_warning(8192, 4200).split(":")[0]
    '--global-batch'
    >>> default_batch_drop_warning(8192, 4096) is None, default_batch_drop_warning(8192, 32768) is None
    (True, True)
    """
    edge = GPUS_PER_SEQUENCE * default_base_batch(seq)
    batch = default_global_batch(seq, num_gpus)
    if default_batch_piece(seq, num_gpus) or batch >= edge:
        return None
    return (f"--global-batch: the default is {batch:,} sequences here (one per {GPUS_PER_SEQUENCE} GPUs past {edge:,} GPUs at "
            f"--seq {seq:,}), below the {edge:,} it is on {edge:,} GPUs (one per GPU): each sequence is split over more "
            f"GPUs and the MFU falls with the batch, so more GPUs can train slower; give --global-batch (or "
            f"--global-batch-tokens) to compare GPU counts at one batch")


def best_plan(cost: ModelCost, num_gpus: int, global_batch: int | None = None, space: SearchSpace | None = None,
              suggest: bool = True) -> TrainStepResult:
    """The fastest fitting layout (what train-time and report --mode train use instead of an assumed MFU);
    ``suggest`` as search_plans'."""
    batch = global_batch or default_global_batch(cost.seq, num_gpus)
    result = search_plans(cost, num_gpus, batch, top=1, space=space, suggest=suggest)
    if not result.plans:
        raise LLMCalcError("--num-gpus", result.verdict + "; give --mfu to assume one instead")
    return result.plans[0]
