"""Parallel layouts (reference section 6; seed 001 section 2.17, seed 002).

DP splits B, context/sequence parallelism splits S, pipeline splits L, tensor parallelism splits
heads and the FFN width. TP must divide the query heads; KV heads are split when TP divides
them and replicated (one per GPU) when TP is a multiple of them (as vLLM and Megatron do).
"""

from __future__ import annotations

import math

from calc.errors import LLMCalcError
from calc.specs import ModelSpec, Parallelism


def _divisors(n: int) -> str:
    return ", ".join(str(k) for k in range(1, n + 1) if n % k == 0 and k <= 128)


def check_layout(m: ModelSpec, plan: Parallelism) -> Parallelism:
    """Reject layouts the model cannot be split into, naming the flag and the valid choices."""
    h, g = m.num_heads, m.kv_heads
    if h % plan.tp:
        raise LLMCalcError("--tp", f"{plan.tp} does not divide the {h} attention heads of {m.name}; try {_divisors(h)}")
    if not m.mla and g % plan.tp and plan.tp % g:
        raise LLMCalcError(
            "--tp", f"{plan.tp} neither divides nor is a multiple of the {g} KV heads of {m.name}"
        )
    if plan.pp > m.num_layers:
        raise LLMCalcError("--pp", f"{plan.pp} pipeline stages exceed the {m.num_layers} layers of {m.name}")
    return plan


def kv_heads_per_gpu(m: ModelSpec, tp: int) -> int:
    """g/t KV heads per GPU, at least 1 (replicated when t > g)."""
    return max(m.kv_heads // tp, 1)


def layers_per_stage(m: ModelSpec, pp: int) -> int:
    """Layers on the busiest pipeline stage: ceil(L/p)."""
    return math.ceil(m.num_layers / pp)


def inference_layout(m: ModelSpec, num_gpus: int) -> Parallelism | None:
    """The layout a serving engine would use on n GPUs: TP = n when n divides the heads, else
    TP 8 x PP n/8 (one 8-GPU node per stage); None when neither applies."""
    for tp, pp in ((num_gpus, 1), (8, num_gpus // 8)):
        if pp >= 1 and tp * pp == num_gpus:
            try:
                return check_layout(m, Parallelism(tp=tp, pp=pp))
            except LLMCalcError:
                continue
    return None


def tp_allreduce_bytes_per_layer(m: ModelSpec, tokens: int, elem_bytes: float) -> float:
    """Megatron TP does 2 all-reduces of B*S*H elements per layer in forward (arXiv 1909.08053)."""
    return 2 * tokens * m.hidden_size * elem_bytes


def check_num_gpus(num_gpus: int) -> None:
    if num_gpus < 1:
        raise LLMCalcError("--num-gpus", f"must be >= 1, got {num_gpus}")
