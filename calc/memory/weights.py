"""Weight bytes: N * bytes(dtype), plus per-group quantisation scales (reference section 3)."""

from __future__ import annotations

import math

from calc.errors import LLMCalcError
from calc.units import exact_bytes


def weight_bytes(params: int, dtype: str, group_size: int | None = None) -> int:
    """N * bytes(dtype); for int4/int8 with ``group_size`` G add one fp16 scale per G weights."""
    total = exact_bytes(params, dtype)
    if group_size:
        if group_size < 1:
            raise LLMCalcError("--group-size", f"must be >= 1, got {group_size}")
        total += 2 * math.ceil(params / group_size)
    return total
