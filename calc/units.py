"""Units, dtype sizes and human-number parsing: the single source of truth for each.

GB = 1e9 bytes, GiB = 2**30 bytes, TFLOPS = 1e12 FLOP/s, TB/s = 1e12 bytes/s.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from calc.errors import LLMCalcError

GB = 10**9
GIB = 2**30
MIB = 2**20
TERA = 10**12

# Bytes per element. int4 is half a byte: kept as a Fraction so byte counts stay exact.
DTYPE_BYTES: dict[str, Fraction] = {
    "fp32": Fraction(4),
    "tf32": Fraction(4),
    "bf16": Fraction(2),
    "fp16": Fraction(2),
    "fp8": Fraction(1),
    "int8": Fraction(1),
    "int4": Fraction(1, 2),
    # e2m1, the operand of an fp4 tensor-core GEMM (NVFP4 / MXFP4 weights without their scales): an internal width
    # for timing those GEMMs, not a --dtype (the CLI takes the formats nvfp4 / mxfp4, calc.memory.weights).
    "fp4": Fraction(1, 2),
}

# Which tensor-core peak a storage dtype computes at (fp32 weights run TF32 matmuls;
# int4 weights are dequantised to bf16/fp16 for the matmul in common kernels).
COMPUTE_DTYPE: dict[str, str] = {
    "fp32": "tf32",
    "tf32": "tf32",
    "bf16": "bf16",
    "fp16": "fp16",
    "fp8": "fp8",
    "int8": "int8",
    "int4": "fp16",
    "fp4": "fp4",
}


def fp32_run(dtype: str) -> bool:
    """Whether a run of ``dtype`` computes in fp32 (TF32 matmuls): its weights and activations are 4-byte.

    >>> fp32_run("fp32"), fp32_run("tf32"), fp32_run("bf16")
    (True, True, False)
    """
    return COMPUTE_DTYPE.get(dtype, dtype) == "tf32"


def dtype_bytes(dtype: str, field: str = "--dtype") -> Fraction:
    """Bytes per element of ``dtype`` (exact; int4 is 1/2).

    >>> dtype_bytes("bf16")
    Fraction(2, 1)
    """
    try:
        return DTYPE_BYTES[dtype.lower()]
    except KeyError:
        raise LLMCalcError(field, f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_BYTES)}") from None


def exact_bytes(elements: int, dtype: str, field: str = "--dtype") -> int:
    """Bytes to hold ``elements`` values of ``dtype``, rounded up to a whole byte."""
    return math.ceil(elements * dtype_bytes(dtype, field))


_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12, "P": 10**15}
_HUMAN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGTP]?)\s*$", re.IGNORECASE)


_THOUSANDS = re.compile(r"^\s*[+-]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?\s*[KMBGTP]?\s*$", re.IGNORECASE)


def strip_thousands(text: str, field: str) -> str:
    """``text`` without its thousands separators: a comma must group three digits (``1,720,320``, ``1,024K``); any
    other comma (``1,5T``, a decimal comma, or ``6,4``) is refused rather than dropped, which would read it 10x off.

    >>> strip_thousands("1,720,320", "--gpu-hours")
    '1720320'
    """
    if "," in text and not _THOUSANDS.match(text):
        raise LLMCalcError(field, f"{text.strip()!r}: a comma groups thousands (1,720,320); write a decimal point "
                                  "for a fraction (1.5T)")
    return text.replace(",", "").replace("_", "")


def parse_human_number(text: str | float | int, field: str) -> float:
    """Parse ``15T``, ``6.4M``, ``2e12``, ``1,720,320`` into a finite positive float.

    Suffixes are decimal: K=1e3, M=1e6, B/G=1e9, T=1e12, P=1e15.

    >>> parse_human_number("6.4M", "--gpu-hours")
    6400000.0
    """
    if isinstance(text, int | float):
        value = float(text)
    else:
        match = _HUMAN.match(strip_thousands(text, field))
        if not match:
            if _HUMAN.match(text.strip().removeprefix("-")):  # a negative number, not a typo
                raise LLMCalcError(field, f"must be > 0, got {text.strip()}")
            raise LLMCalcError(field, f"{text!r} is not a number; write e.g. 15T, 6.4M, 2e12 or 184320")
        value = float(match.group(1)) * _SUFFIX[match.group(2).upper()]
    return check_positive(value, field)


def check_positive(value: float, field: str, allow_zero: bool = False) -> float:
    """Reject NaN, infinity and non-positive values with a message naming the field."""
    if math.isnan(value) or math.isinf(value):
        raise LLMCalcError(field, f"must be a finite number, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        raise LLMCalcError(field, f"must be {'>= 0' if allow_zero else '> 0'}, got {value:g}")
    return value


def check_count(value: int, field: str) -> int:
    """A whole number >= 1 (a batch, a sequence, a GPU count), refused otherwise with a message naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LLMCalcError(field, f"must be a whole number >= 1, got {value!r}")
    return value


def check_within(value: float, field: str, lo: float, hi: float, hi_open: bool = False) -> float:
    """A finite number in [lo, hi] ([lo, hi) with ``hi_open``: a dropout probability of 1 drops every element),
    refused otherwise with a message naming the field and the range."""
    if math.isnan(value) or not lo <= value <= hi or (hi_open and value == hi):
        raise LLMCalcError(field, f"must be within [{lo:g}, {hi:g}{')' if hi_open else ']'}, got {value:g}")
    return value


def check_fraction(value: float, field: str) -> float:
    """A fraction in (0, 1], e.g. an MFU or an efficiency."""
    check_positive(value, field)
    if value > 1:
        raise LLMCalcError(field, f"is a fraction in (0, 1], got {value:g} (write 0.4 for 40%)")
    return value


def human(value: float, unit: str = "", digits: int = 3) -> str:
    """Format with a decimal SI prefix and ``digits`` significant digits, never an exponent:
    ``human(2.9e13, "FLOPs") == '29 TFLOPs'``, ``human(1.2e21, "FLOPs") == '1,200 EFLOPs'``."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}".strip()
    for prefix, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale * (1 - 0.5 * 10 ** -digits):
            return f"{_significant(value / scale, digits)} {prefix}{unit}".strip()
    return f"{_significant(value, digits)} {unit}".strip()


def gb(num_bytes: float) -> float:
    """Bytes to GB (1e9)."""
    return num_bytes / GB


def gib(num_bytes: float) -> float:
    """Bytes to GiB (2**30)."""
    return num_bytes / GIB


def figure(value: float, decimals: int = 0) -> str:
    """``value`` with thousands separators and ``decimals`` decimals, but two significant digits where that
    would round a small non-zero figure to (almost) nothing: ``figure(0.0413) == '0.041'``, ``figure(1234.5) == '1,234'``."""
    if value and abs(value) < 10 ** (1 - decimals):
        return _significant(value, 2)
    return f"{value:,.{decimals}f}"


_ABBREV = (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3))


def abbrev(value: float, unit: str = "", digits: int = 3) -> str:
    """A huge count the way people say it, with K/M/B/T (thousand, million, billion, trillion) and
    ``digits`` significant digits, never a Python exponent: ``abbrev(1.5e13, "tokens") == '15T tokens'``,
    ``abbrev(4.3e14) == '430T'``, ``abbrev(812) == '812'``; from 10^15 on, powers of ten:
    ``abbrev(4.9e27) == '4.9 x 10^27'``."""
    if not math.isfinite(value):
        return f"{value} {unit}".strip()
    if abs(value) >= 1e15:
        exponent = math.floor(math.log10(abs(value)))
        mantissa = _significant(value / 10**exponent, min(digits, 2))
        if abs(float(mantissa)) >= 10:  # 9.96 rounded to 10
            mantissa, exponent = _significant(value / 10 ** (exponent + 1), min(digits, 2)), exponent + 1
        return f"{mantissa} x 10^{exponent} {unit}".strip()
    for suffix, scale in _ABBREV:
        if abs(value) >= scale * (1 - 0.5 * 10 ** -digits):
            return f"{_significant(value / scale, digits)}{suffix} {unit}".strip()
    return f"{_significant(value, digits)} {unit}".strip()


def _significant(value: float, digits: int) -> str:
    """``value`` rounded to ``digits`` significant digits, written without an exponent (``1,234`` for 1234.4)."""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration(seconds: float) -> str:
    """Three significant digits, in ms below a second, else in s: ``duration(0.0147) == '14.7 ms'``,
    ``duration(3.6448) == '3.64 s'``, ``duration(0.7) == '700 ms'``."""
    return f"{seconds * 1e3:.3g} ms" if seconds * 1e3 < 999.5 else f"{seconds:,.2f} s"


def count(value: float) -> str:
    """A number exactly as read, with thousands separators and no exponent: ``count(16000.0) == '16,000'``,
    ``count(1234.5) == '1,234.5'``; beyond 10^15 (no exact reading matters there) ``abbrev``."""
    if not math.isfinite(value) or abs(value) >= 1e15:
        return abbrev(value)
    if value == int(value):
        return f"{int(value):,}"
    return _significant(value, 12)


def percent(fraction: float, decimals: int = 1) -> str:
    """A fraction as a percentage with ``decimals`` decimals; tiny ones with two significant digits and
    huge ones in K/M/B/T, never an exponent (below 0.0001%: '< 0.0001%'): ``percent(0.4321) == '43.2%'``, ``percent(4.3e10) == '4.3T%'``."""
    pct = fraction * 100
    if not math.isfinite(pct):  # a rate over a zero or vanishing time: no percentage to print
        return "unbounded"
    if pct and abs(pct) < 1e-4:
        return "< 0.0001%" if pct > 0 else "> -0.0001%"
    if pct and abs(pct) < 10 ** -decimals:
        return f"{_significant(pct, 2)}%"
    if abs(pct) >= 1e6:
        return f"{abbrev(pct, digits=2)}%"
    return f"{pct:,.{decimals}f}%"


def plural(n: float, word: str, many: str | None = None) -> str:
    """``n`` and ``word`` in the right number: ``plural(1, "request") == '1 request'``,
    ``plural(2, "replica") == '2 replicas'``, ``plural(3, "batch", "batches")``."""
    return f"{count(n)} {word if n == 1 else many or word + 's'}"
