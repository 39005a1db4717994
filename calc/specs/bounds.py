"""Plausibility bounds on spec fields: every number finite and within what any real model or
device has, every name short and printable. A value outside is an input error naming the field.

The limits are generous (several times the largest published value) so that future models pass;
their job is to stop NaN, infinity, 1e300 and typos of a few orders of magnitude, which would
otherwise reach the formulas and come out as a traceback or an absurd answer.
Largest published values they are set against (2024-25 configs on the HF hub):
num_layers 126 (Llama-3.1-405B), hidden_size 18432 (Nemotron-4 340B), intermediate_size 73728
(Nemotron-4), vocab_size 256000 (Gemma), 262144 (Gemma 3), experts 256 (DeepSeek-V3), context
10M (Llama 4 Scout); devices: 288 GB and 8 TB/s (B300/MI355X), ~5 PFLOPS dense FP8 (B200 4.5).
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from calc.units import abbrev

# field name -> (low, high), inclusive. Integers and floats alike.
LIMITS: dict[str, tuple[float, float]] = {
    # ModelSpec
    "num_layers": (1, 2048),
    "hidden_size": (1, 1 << 20),
    "num_heads": (1, 1 << 14),
    "num_kv_heads": (1, 1 << 14),
    "head_dim": (1, 1 << 14),
    "intermediate_size": (1, 1 << 22),
    "vocab_size": (1, 1 << 24),
    "max_position_embeddings": (1, 1 << 30),
    "position_offset": (0, 1 << 16),
    "sliding_window": (1, 1 << 30),
    "attention_chunk_size": (1, 1 << 30),
    "rope_scaling_factor": (1, 1024),
    "mtp_layers": (0, 64),
    "vision_params": (0, 1 << 40),
    # MoESpec / MLASpec
    "num_experts": (1, 1 << 16),
    "experts_per_token": (1, 1 << 16),
    "expert_intermediate_size": (1, 1 << 22),
    "num_shared_experts": (0, 1 << 10),
    "shared_intermediate_size": (0, 1 << 24),
    "num_dense_layers": (0, 2048),
    "q_lora_rank": (1, 1 << 20),
    "kv_lora_rank": (1, 1 << 20),
    "qk_nope_head_dim": (1, 1 << 14),
    "qk_rope_head_dim": (1, 1 << 14),
    "v_head_dim": (1, 1 << 14),
    # GPUSpec
    "sms": (1, 10_000),
    "tensor_cores_per_sm": (1, 1024),
    "tensor_clock_mhz": (1, 10_000),
    "boost_clock_mhz": (1, 10_000),
    "flops_per_clock_per_tensor_core": (1, 1 << 20),
    "datasheet_peak_tflops": (1e-3, 100_000),
    "memory_gb": (0.1, 100_000),
    "memory_visible_mib": (1, 100_000_000),
    "memory_cuda_total_mib": (1, 100_000_000),
    "hbm_tb_s": (1e-3, 1_000),
    "interconnect_gb_s": (1e-3, 1_000_000),
    "tdp_w": (1, 100_000),
    # SystemSpec
    "gpus_per_node": (1, 1024),
    "intra_node_gb_s": (1e-3, 1_000_000),
    "inter_node_gb_s": (1e-3, 1_000_000),
    "intra_node_latency_s": (0, 1),
    "inter_node_latency_s": (0, 1),
}

TEXT_LIMITS: dict[str, int] = {
    "name": 128, "aliases": 128, "vendor": 64, "arch": 64, "activation": 64,
    "description": 1000, "source": 1000, "peak_note": 1000,
}
MAX_ALIASES = 64
# Mappings the formulas take a maximum or a lookup over: at least one entry.
NON_EMPTY = {"datasheet_peak_tflops"}


def check_bounds(value: Any, field: str) -> Any:
    """Return ``value`` if every number in it is finite and within LIMITS[field] and every text is
    short and printable; otherwise raise ValueError (pydantic reports it under the field's name)."""
    if field in NON_EMPTY and not value:
        raise ValueError("needs at least one entry, e.g. {bf16: 989.4}")
    if field in LIMITS:
        low, high = LIMITS[field]
        for number in value.values() if isinstance(value, dict) else [value]:
            _check_number(number, low, high)
    elif field in TEXT_LIMITS:
        texts = value if isinstance(value, list) else [value]
        if len(texts) > MAX_ALIASES:
            raise ValueError(f"{len(texts)} entries; at most {MAX_ALIASES}")
        for text in texts:
            _check_text(text, TEXT_LIMITS[field])
    return value


def _check_number(number: Any, low: float, high: float) -> None:
    if number is None or isinstance(number, bool):
        return
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {number}")
    if not low <= number <= high:
        shown = abbrev(number, digits=4) if isinstance(number, float) else _short_int(number)
        raise ValueError(f"{shown} is outside the plausible range {low:g}..{high:g} of any real model or device")


def _check_text(text: str, limit: int) -> None:
    if len(text) > limit:
        raise ValueError(f"is {len(text)} characters long; at most {limit}")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co") for ch in text):
        raise ValueError("contains control characters (newline, tab, escape, bidi override...); write plain text")


def _short_int(number: int) -> str:
    """An integer as typed, or in scientific form past 13 digits, without converting to float (which
    overflows past 1e308): 10**400 -> '1.000e+400'."""
    digits = str(abs(number))
    if len(digits) <= 13:
        return str(number)
    return f"{'-' if number < 0 else ''}{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"
