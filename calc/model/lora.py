"""Exact LoRA / DoRA trainable parameters per target group, read off the tensor table of
calc.model.params (Hu et al. 2021, arXiv 2106.09685 section 4.1; DoRA: Liu et al. 2024, arXiv 2402.09353
section 4.1).

A rank-r adapter on a d_in x d_out weight adds A (r x d_in) and B (d_out x r): r*(d_in + d_out)
parameters. DoRA adds one magnitude per output column: d_out more. Routed experts carry one adapter
per expert.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.memo import per_spec
from calc.model.params import Tensor, layer_blocks, layer_kinds
from calc.specs import ModelSpec

# --lora-targets group -> matrix names in the modeling code (MLA projections included under q, k, v).
GROUPS: dict[str, tuple[str, ...]] = {
    "q": ("q_proj", "q_a_proj", "q_b_proj"),
    "k": ("k_proj", "kv_a_proj_with_mqa", "kv_b_proj"),
    "v": ("v_proj", "kv_a_proj_with_mqa", "kv_b_proj"),
    "o": ("o_proj",),
    "gate": ("gate_proj",),
    "up": ("up_proj",),
    "down": ("down_proj",),
}
MLP_COMPONENTS = ("mlp", "shared_experts")
ALL_LINEAR = ("q", "k", "v", "o", "gate", "up", "down", "experts")


def parse_targets(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'q,v' -> ('q', 'v'); 'all-linear' expands to every projection of the blocks and the experts.

    >>> parse_targets("q, v")
    ('q', 'v')
    """
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    out: list[str] = []
    for item in items:
        names = ALL_LINEAR if item in ("all-linear", "all") else (item,)
        for name in names:
            if name not in GROUPS and name != "experts":
                raise LLMCalcError("--lora-targets", f"unknown group {name!r}; use {', '.join(ALL_LINEAR)} or all-linear")
            if name not in out:
                out.append(name)
    if not out:
        raise LLMCalcError("--lora-targets", "name at least one group, e.g. q,v or all-linear")
    return tuple(out)


@dataclass(frozen=True)
class Adapted:
    """One adapted weight matrix of a block: its name, (d_in, d_out), and how many copies (experts)."""

    name: str
    component: str
    d_in: int
    d_out: int
    copies: int


def _is_target(t: Tensor, targets: tuple[str, ...]) -> bool:
    if t.shape is None or t.component in ("lm_head", "router"):
        return False
    if t.component == "experts":
        return "experts" in targets
    if t.component in MLP_COMPONENTS:
        return any(t.name in GROUPS[g] for g in targets if g in ("gate", "up", "down"))
    return any(t.name in GROUPS[g] for g in targets if g in ("q", "k", "v", "o"))


@per_spec
def adapted_matrices(m: ModelSpec, targets: tuple[str, ...]) -> tuple[tuple[int, tuple[Adapted, ...]], ...]:
    """(layer count, adapted matrices of one such layer) for each kind of block; worked out once per spec and
    targets (calc.memo)."""
    out = []
    for _kind, count, tensors in layer_kinds(m):
        mats = []
        for t in tensors:
            if _is_target(t, targets) and t.shape is not None:
                copies = m.moe.num_experts if t.component == "experts" and m.moe else 1
                mats.append(Adapted(t.name, t.component, t.shape[0], t.shape[1], copies))
        out.append((count, tuple(mats)))
    return tuple(out)


def adapter_size(a: Adapted, rank: int, dora: bool = False) -> int:
    """Parameters of the adapters on one adapted matrix (all its copies): copies * r*(d_in + d_out), + d_out magnitudes
    per copy for DoRA (Liu et al. 2024, arXiv 2402.09353 eq. 5)."""
    return a.copies * (rank * (a.d_in + a.d_out) + (a.d_out if dora else 0))


def layer_adapter_params(m: ModelSpec, rank: int, targets: tuple[str, ...], dora: bool = False) -> tuple[int, ...]:
    """Adapter parameters of each decoder layer in order (``lora_params`` layer by layer: a pipeline rank holds the
    adapters of its own layers). A matrix serving two targets (MLA's kv projections: k and v) counts once.

    >>> from calc.sources.catalog import load_model
    >>> layer_adapter_params(load_model("llama2-7b"), 8, ("q", "v"))[:2]  # 2 * 8 * (4096 + 4096)
    (131072, 131072)
    """
    per_kind: dict[str, int] = {}
    for (kind, _count, _ts), (_c, mats) in zip(layer_kinds(m), adapted_matrices(m, targets), strict=True):
        once: dict[tuple[str, str], Adapted] = {}
        for a in mats:
            once.setdefault((a.component, a.name), a)
        per_kind[kind] = sum(adapter_size(a, rank, dora) for a in once.values())
    return tuple(per_kind[kind] for kind, _ts in layer_blocks(m))


class LoraCount(BaseModel):
    """Trainable adapter parameters: total, per target group, and the adapted (frozen) base weights."""

    rank: int
    targets: list[str]
    dora: bool
    trainable_params: int
    by_group: dict[str, int]
    adapted_base_params: int
    explain: list[str]


def lora_params(m: ModelSpec, rank: int, targets: tuple[str, ...] | str, dora: bool = False) -> LoraCount:
    """Exact adapter parameters: sum over layers and adapted matrices of copies * r*(d_in + d_out)
    (+ d_out magnitudes per matrix for DoRA).

    >>> from calc.sources.catalog import load_model
    >>> lora_params(load_model("llama2-7b"), 8, "q,v").trainable_params  # 32 * 2 * 8 * (4096 + 4096)
    4194304
    """
    if rank < 1:
        raise LLMCalcError("--lora-rank", f"must be >= 1, got {rank}")
    groups = parse_targets(targets)
    by_group: dict[str, int] = {}
    explain: list[str] = []
    adapted_base = 0
    seen: set[tuple[int, str, str]] = set()
    for kind_index, (count, mats) in enumerate(adapted_matrices(m, groups)):
        for a in mats:
            key = (kind_index, a.component, a.name)
            if key in seen:  # MLA's kv projections serve both k and v
                continue
            seen.add(key)
            per = adapter_size(a, rank, dora)
            group = "experts" if a.component == "experts" else next(g for g in groups if g in GROUPS and a.name in GROUPS[g])
            by_group[group] = by_group.get(group, 0) + count * per
            adapted_base += count * a.copies * a.d_in * a.d_out
            copies = f"{a.copies} x " if a.copies > 1 else ""
            magnitude = f" + {a.d_out}" if dora else ""
            explain.append(f"{a.name} ({a.component}): {count} layers x {copies}(r*(d_in+d_out){' + d_out' if dora else ''}) = "
                           f"{count} x {copies}({rank}*({a.d_in}+{a.d_out}){magnitude}) = {count * per:,}")
    if not by_group:
        everything = adapted_matrices(m, tuple(g for g in GROUPS if g != "all-linear") + ("experts",))
        fix = ("experts need an MoE model" if any(mats for _, mats in everything) else
               "an SSM-only model has no attention or MLP projection to adapt: use --method full")
        raise LLMCalcError("--lora-targets", f"{m.name} has none of {', '.join(groups)} ({fix})")
    full_rank = max(min(a.d_in, a.d_out) for _, mats in adapted_matrices(m, groups) for a in mats)
    if rank > full_rank:  # B A of rank r spans at most min(d_in, d_out): past every matrix's, a full update, larger
        raise LLMCalcError("--lora-rank", f"{rank:,} exceeds the full rank of every adapted matrix (the largest "
                                          f"min(d_in, d_out) is {full_rank:,}): give --lora-rank <= {full_rank:,}, or "
                                          "--method full")
    total = sum(by_group.values())
    explain.append(f"trainable adapter parameters = {total:,}")
    return LoraCount(rank=rank, targets=list(groups), dora=dora, trainable_params=total, by_group=by_group,
                     adapted_base_params=adapted_base, explain=explain)
