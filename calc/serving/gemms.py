"""The weight GEMMs of one forward as the serving engines run them (vLLM's QKVParallelLinear and
MergedColumnParallelLinear fuse q/k/v and gate/up: vllm/model_executor/models/llama.py), shared by the step model
(calc.serving.step) and the eager launch count (calc.serving.eager)."""

from __future__ import annotations

from typing import NamedTuple

from calc.model.params import count_params, layer_kinds, model_tensors
from calc.specs import ModelSpec

FUSED = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj",
         "up_proj": "gate_up_proj"}  # vLLM's QKVParallelLinear / MergedColumnParallelLinear


class _Gemm(NamedTuple):
    name: str
    component: str  # tensor group (attention, mlp, experts, ...): how its weights ship
    expert: bool  # a routed expert (split by expert parallelism)
    layers: int  # how many layers hold it (1 for the head)
    copies: int  # stored copies (E for routed experts)
    used: int  # copies each token multiplies by (top-k)
    k: int
    n: int


_SHAPES: dict[int, tuple[ModelSpec, list[_Gemm], int]] = {}


def model_gemms(m: ModelSpec) -> tuple[list[_Gemm], int]:
    """The weight GEMMs of one forward as the engines run them (q/k/v and gate/up fused), and the total
    parameter count; derived once per model object (a layout search evaluates hundreds of steps)."""
    hit = _SHAPES.get(id(m))
    if hit is not None and hit[0] is m:
        return hit[1], hit[2]
    gemms: dict[tuple[str, str], _Gemm] = {}
    kinds = [(count, tensors) for _, count, tensors in layer_kinds(m)]
    kinds.append((1, [t for t in model_tensors(m) if t.component == "lm_head"]))
    for count, tensors in kinds:
        for t in tensors:
            if t.shape is None or not t.matmul:
                continue
            k, n = t.shape
            key = (f"{count}:{t.component}", FUSED.get(t.name, t.name))
            old = gemms.get(key)
            gemms[key] = _Gemm(key[1], t.component, t.component == "experts",
                               count, max(t.params // (k * n), 1), max(t.matmul // (k * n), 1), k,
                               n + (old.n if old else 0))
    out = list(gemms.values()), count_params(m).total_params
    _SHAPES[id(m)] = (m, *out)
    return out
