"""The cheapest change that makes a training plan fit on its GPU count: what `train-step` and `memory --mode train`
name when a plan does not fit, instead of a list of flags to try.

The changes keep the GPU count, TP, PP, CP and EP (a new layout is train-plan's question) and are ranked by what
they cost a step on a Megatron-class stack, cheapest first:

    rung                     cost to the step                                            rank
    --zero 1                 none: the distributed optimizer reduce-scatters the          1
                             gradients and all-gathers the weights, the all-reduce's
                             own volume (Rajbhandari et al. 2020, ZeRO, sec. 7.2.1)
    --zero 2                 none (refused with PP: layout.zero_with_pp_problem)         2
    --recompute selective    the attention core again, a few percent of a step           3
                             (Korthikanti et al. 2022, sec. 5: selective recomputation's
                             overhead is a few percent, full recomputation's about a third)
    --micro-batch halved     smaller GEMMs and, under PP, more micro-batches per step     4 per halving
    --recompute full         one more forward of every layer (~+33% of the FLOPs)          8
    --zero 3                 every weight all-gathered per micro-batch, forward and       10
                             backward (1.5x the data-parallel traffic: ZeRO sec. 7.2.2)

The answer is the combination of the lowest summed rank whose peak fits (ties: fewer changes), so two commands
that price the same memory name the same change; the figure beside it is the peak per GPU with the change."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import product

from calc.errors import LLMCalcError
from calc.specs import ModelSpec
from calc.training.layout import Layout, check_training_layout

# the ranks of the docstring's table
ZERO_RANK = {1: 1, 2: 2, 3: 10}
RECOMPUTE_RANK = {"selective": 3, "full": 8}
HALVING_RANK = 4


@dataclass(frozen=True)
class Fix:
    """A change of flags (``flags``, as the command line writes them), its layout, the micro-batches per DP rank it runs
    (check_training_layout's count) and the peak per GPU it gives."""

    flags: str
    layout: Layout
    micro: int
    per_gpu_bytes: int


def _candidates(layout: Layout) -> list[tuple[int, list[str], Layout]]:
    """(summed rank, flags, layout) of every combination of the rungs above the layout's own settings."""
    zeros = [layout.zero] + [z for z in (1, 2, 3) if z > layout.zero]
    order = ("none", "selective", "full")
    here = layout.recompute
    if here in order:
        recomputes = list(order[order.index(here):])
    else:  # sac / deepseek: only full recomputes more
        recomputes = [here, "full"]
    if layout.recompute_modules or layout.cpu_offload_layers:  # a named module list or offload: keep it
        recomputes = [here]
    micros, mb = [layout.micro_batch], layout.micro_batch
    while mb > 1 and mb % 2 == 0:
        mb //= 2
        micros.append(mb)
    out = []
    for zero, recompute, micro in product(zeros, recomputes, micros):
        if (zero, recompute, micro) == (layout.zero, here, layout.micro_batch):
            continue
        rank = (ZERO_RANK[zero] if zero != layout.zero else 0) + (RECOMPUTE_RANK.get(recompute, 0) if recompute != here else 0) \
            + HALVING_RANK * (micros.index(micro))
        flags = ([f"--zero {zero}"] if zero != layout.zero else []) \
            + ([f"--recompute {recompute}"] if recompute != here else []) \
            + ([f"--micro-batch {micro}"] if micro != layout.micro_batch else [])
        out.append((rank, flags, layout.with_(zero=zero, recompute=recompute, micro_batch=micro)))
    out.sort(key=lambda c: (c[0], len(c[1])))
    return out


def cheapest_fix(m: ModelSpec, layout: Layout, *, global_batch: int, seq: int, capacity_bytes: int,
                 peak_of: Callable[[Layout, int], int]) -> Fix | None:
    """The cheapest change (module docstring) whose peak per GPU, ``peak_of(layout, micro-batches per DP rank)``, is at
    most ``capacity_bytes``; None when none fits (more GPUs, or another TP x PP, is the answer then). Each candidate is
    checked by train-step's own validity rule (check_training_layout: ZeRO-2/3 with PP, a micro-batch that splits the
    global batch), so the flags named are flags train-step accepts."""
    for _rank, flags, candidate in _candidates(layout):
        try:
            micro = check_training_layout(m, candidate, None, global_batch, seq)
        except LLMCalcError:
            continue
        peak = peak_of(candidate, micro)
        if peak <= capacity_bytes:
            return Fix(flags=" ".join(flags), layout=candidate, micro=micro, per_gpu_bytes=peak)
    return None
