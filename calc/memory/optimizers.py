"""Optimizer state and master-weight bytes per trainable parameter, by optimizer and precision.

- AdamW (Loshchilov & Hutter 2019): first and second moments, 2 values per parameter; torch.optim keeps
  them in the parameter's dtype (fp32 under mixed precision, bf16 for pure-bf16 training).
- 8-bit AdamW (Dettmers et al. 2022, arXiv 2110.02861 section 2): both moments in 8 bits with one fp32
  absmax per block of 2048 values (bitsandbytes optim/optimizer.py, block size 2048): 2 + 8/2048 bytes.
- Paged variants (bitsandbytes paged optimizers, QLoRA arXiv 2305.14314 section 3): the same states in
  CUDA unified memory; the driver evicts them to CPU RAM when the GPU runs short, and PyTorch's caching
  allocator (torch.cuda.max_memory_reserved) never counts them.
- Adafactor (Shazeer & Stern 2018, arXiv 1804.04235 section 3): no first moment (beta1 = None, the
  default), second moment factored into a row and a column vector per matrix: (d_in + d_out) values.
- SGD with momentum: one buffer. Lion (Chen et al. 2023, arXiv 2302.06675 algorithm 2): one moment.
Mixed precision keeps an fp32 master copy of every trainable parameter (4 bytes) beside the bf16 one
(Micikevicius et al. 2018, arXiv 1710.03740 section 3.1); pure bf16 and fp32 training keep none.
"""

from __future__ import annotations

from typing import Literal

from calc.errors import LLMCalcError

Optimizer = Literal["adamw", "adamw8bit", "paged-adamw8bit", "paged-adamw", "adafactor", "sgd", "lion"]
Precision = Literal["mixed", "bf16", "fp32"]
OPTIMIZERS: tuple[str, ...] = ("adamw", "adamw8bit", "paged-adamw8bit", "paged-adamw", "adafactor", "sgd", "lion")
PRECISIONS: tuple[str, ...] = ("mixed", "bf16", "fp32")
BNB_BLOCK = 2048  # bitsandbytes block-wise quantisation block for 8-bit optimizer states

# moments kept per parameter (Adafactor's factored moment is handled per matrix)
_MOMENTS = {"adamw": 2, "paged-adamw": 2, "sgd": 1, "lion": 1, "adafactor": 0, "adamw8bit": 2, "paged-adamw8bit": 2}


def check_optimizer(optimizer: str, precision: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise LLMCalcError("--optimizer", f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
    if precision not in PRECISIONS:
        raise LLMCalcError("--precision", f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")


def is_paged(optimizer: str) -> bool:
    return optimizer.startswith("paged-")


def state_bytes_per_value(optimizer: str, precision: str) -> float:
    """Bytes of one optimizer-state value: 1 + 4/2048 for 8-bit states, else the state dtype
    (fp32 except pure bf16, where torch.optim keeps states in the parameter dtype)."""
    if optimizer.endswith("8bit"):
        return 1 + 4 / BNB_BLOCK
    return 2 if precision == "bf16" else 4


def optimizer_state_bytes(optimizer: str, precision: str, params: int, matrices: list[tuple[int, int, int]]) -> int:
    """Optimizer states for ``params`` trainable parameters.

    ``matrices``: (count, d_in, d_out) of the trainable weight matrices, used by Adafactor's factored
    second moment count * (d_in + d_out); the rest of the parameters (vectors) keep a full moment.

    >>> optimizer_state_bytes("adamw", "mixed", 1000, [])   # m and v in fp32: 8 B per parameter
    8000
    >>> optimizer_state_bytes("adamw8bit", "mixed", 2048, [])  # 2 states x (2048 B + one fp32 absmax)
    4104
    """
    check_optimizer(optimizer, precision)
    per_value = state_bytes_per_value(optimizer, precision)
    if optimizer == "adafactor":
        in_matrices = sum(c * i * o for c, i, o in matrices)
        factored = sum(c * (i + o) for c, i, o in matrices)
        return round((factored + max(params - in_matrices, 0)) * per_value)
    return round(_MOMENTS[optimizer] * params * per_value)


def master_bytes(precision: str, params: int) -> int:
    """fp32 master copy under mixed precision (4 B per trainable parameter); none otherwise."""
    return 4 * params if precision == "mixed" else 0


def param_dtype_bytes(precision: str) -> int:
    """Bytes of a (compute) weight and of its gradient: bf16 (2) unless training in fp32."""
    return 4 if precision == "fp32" else 2
