"""The fastest training layouts that fit: enumerate, prune on memory, rank by predicted step time.

Enumerated (Narayanan et al. 2021 sec. 3 takeaways; Megatron-Core constraints):
  TP   divides the heads (and the KV heads, or is a multiple of them), at most one node unless allowed
  CP   1, 2, 4, ... while s/c >= 1,024 tokens per GPU
  PP   any degree dividing the remaining GPUs with at least one layer per stage (uneven stages allowed)
  DP   the rest; EP (MoE only) divides the experts and DP x CP; micro-batch b in 1, 2, 4, 8 with d*b | B
  VPP  interleaving v > 1 when p*v divides L and p divides the micro-batch count
  ZeRO 0 and 1 always, 2 and 3 only without PP (FSDP style); SP whenever TP > 1
  recompute: for each ZeRO stage the lightest level that fits (recomputation never speeds a step up);
  "selective" is skipped with flash attention, where it saves nothing more than flash already does.
Memory is checked first (cheap); only layouts that fit get a step-time evaluation, in plain floats.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.training.cost import ModelCost
from calc.training.layout import Layout
from calc.training.step import TrainStepResult, memory_per_gpu, step_terms, train_step

MICRO_BATCHES = (1, 2, 4, 8)
MIN_TOKENS_PER_CP_RANK = 1024
MAX_VPP = 8


@dataclass(frozen=True)
class SearchSpace:
    """What the search may vary (all named, all overridable)."""

    cross_node_tp: bool = False
    micro_batches: tuple[int, ...] = MICRO_BATCHES
    zero_stages: tuple[int, ...] = (0, 1, 2, 3)
    max_cp: int = 32
    max_vpp: int = MAX_VPP
    fixed: tuple[tuple[str, int], ...] = ()  # e.g. (("tp", 8),): degrees the user pinned


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


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def _tp_choices(cost: ModelCost, n: int, space: SearchSpace) -> list[int]:
    m = cost.m
    limit = n if space.cross_node_tp else min(n, cost.system.gpus_per_node)
    out = []
    for tp in _divisors(n):
        if tp > limit or m.num_heads % tp:
            continue
        if not m.mla and m.kv_heads % tp and tp % m.kv_heads:
            continue
        out.append(tp)
    return out


def _pinned(space: SearchSpace, name: str, choices: list[int]) -> list[int]:
    pins = dict(space.fixed)
    return [c for c in choices if c == pins[name]] if name in pins else choices


def _recompute_levels(cost: ModelCost) -> tuple[str, ...]:
    return ("none", "full") if cost.eff.flash else ("none", "selective", "full")


def enumerate_fitting(cost: ModelCost, n: int, global_batch: int, space: SearchSpace) -> tuple[int, list[tuple[Layout, int]]]:
    """(layouts considered, [(layout, micro-batches)] that fit in memory)."""
    m = cost.m
    capacity = cost.gpu.memory_bytes
    experts = m.moe.num_experts if m.moe else 1
    considered, fitting = 0, []
    for tp in _pinned(space, "tp", _tp_choices(cost, n, space)):
        cps = [c for c in _divisors(n // tp) if c <= space.max_cp and (c == 1 or cost.seq // c >= MIN_TOKENS_PER_CP_RANK)]
        cps = [c for c in cps if c & (c - 1) == 0 and cost.seq % (2 * c if c > 1 else 1) == 0]
        for cp in _pinned(space, "cp", cps):
            rest = n // (tp * cp)
            for pp in _pinned(space, "pp", [p for p in _divisors(rest) if p <= m.num_layers]):
                dp = rest // pp
                eps = [e for e in _divisors(experts) if (dp * cp) % e == 0] if m.moe else [1]
                for ep in _pinned(space, "ep", eps):
                    for b in _pinned(space, "micro_batch", list(space.micro_batches)):
                        if global_batch % (dp * b):
                            continue
                        micro = global_batch // (dp * b)
                        zeros = [z for z in space.zero_stages if z <= 1 or pp == 1]
                        for zero in _pinned(space, "zero", zeros):
                            for recompute in _recompute_levels(cost):
                                considered += 1
                                layout = Layout(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, sp=tp > 1, micro_batch=b, zero=zero,
                                                recompute=recompute)  # type: ignore[arg-type]
                                if sum(memory_per_gpu(cost, layout, micro).values()) <= capacity:
                                    fitting.append((layout, micro))
                                    break  # heavier recomputation only slows a fitting layout down
    return considered, fitting


def _interleavings(cost: ModelCost, layout: Layout, micro: int, space: SearchSpace) -> list[int]:
    if layout.pp == 1:
        return [1]
    per_stage = cost.m.num_layers // layout.pp if cost.m.num_layers % layout.pp == 0 else 0
    out = [1]
    if per_stage and micro % layout.pp == 0:
        out += [v for v in _divisors(per_stage) if 1 < v <= space.max_vpp]
    return _pinned(space, "vpp", out)


def search_plans(
    cost: ModelCost, num_gpus: int, global_batch: int, *, top: int = 10, space: SearchSpace | None = None
) -> PlanSearchResult:
    """Every valid layout of ``num_gpus`` GPUs for this model, batch and sequence; the ``top`` fastest that fit."""
    space = space or SearchSpace()
    if num_gpus < 1:
        raise LLMCalcError("--num-gpus", f"must be >= 1, got {num_gpus}")
    if global_batch < 1:
        raise LLMCalcError("--global-batch", f"must be >= 1, got {global_batch}")
    considered, fitting = enumerate_fitting(cost, num_gpus, global_batch, space)
    timed: list[tuple[float, Layout]] = []
    for layout, micro in fitting:
        for v in _interleavings(cost, layout, micro, space):
            candidate = layout if v == 1 else layout.with_(vpp=v)
            timed.append((step_terms(cost, candidate, global_batch, micro).step_time_s, candidate))
    timed.sort(key=lambda item: item[0])
    plans = [train_step(cost, layout, global_batch=global_batch) for _, layout in timed[:top]]
    if plans:
        best = plans[0]
        verdict = (f"fastest of {len(timed)} fitting layouts: {best.layout}: {best.step_time_s:.3f} s/step, MFU {best.mfu:.1%}, "
                   f"{best.memory_per_gpu_bytes / 2**30:.1f} GiB per GPU")
    else:
        more = smallest_fitting_gpu_count(cost, num_gpus, global_batch, space)
        hint = f"; the smallest count that fits is {more} GPUs" if more else "; none up to 64x as many GPUs fits either"
        verdict = f"no layout of {cost.m.name} fits on {num_gpus} x {cost.gpu.name} with global batch {global_batch}{hint}"
    return PlanSearchResult(
        model=cost.m.name, gpu=cost.gpu.name, system=cost.system.name, num_gpus=num_gpus, global_batch=global_batch,
        seq=cost.seq, layouts_considered=considered, layouts_fitting=len(fitting), layouts_timed=len(timed), plans=plans,
        verdict=verdict, assumptions=cost.eff.describe() + [
            f"TP within a node ({cost.system.gpus_per_node} GPUs)" if not space.cross_node_tp else "TP may cross nodes",
            f"micro-batches tried: {', '.join(map(str, space.micro_batches))}; ZeRO 2/3 only without PP; SP whenever TP > 1",
        ],
    )


def smallest_fitting_gpu_count(cost: ModelCost, num_gpus: int, global_batch: int, space: SearchSpace) -> int | None:
    """Doubling the GPU count (memory check only) until some layout fits; None past 64x."""
    n = num_gpus * 2
    while n <= num_gpus * 64:
        if enumerate_fitting(cost, n, global_batch, space)[1]:
            return n
        n *= 2
    return None
