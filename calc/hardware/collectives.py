"""Collective communication times (reference section 10)."""

from __future__ import annotations

from calc.errors import LLMCalcError


def ring_allreduce_seconds(num_bytes: float, tp: int, link_gb_s: float) -> float:
    """Ring all-reduce: each GPU sends and receives 2*(t-1)/t of the buffer at the per-direction
    link bandwidth (half the bidirectional figure)."""
    if tp == 1:
        return 0.0
    if link_gb_s <= 0:
        raise LLMCalcError("--gpu", "this GPU has no GPU-GPU link recorded; TP > 1 needs one")
    return 2 * (tp - 1) / tp * num_bytes / (link_gb_s / 2 * 1e9)
