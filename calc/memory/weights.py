"""Weight bytes: N * bytes(dtype), plus per-group quantisation scales (reference section 3); and the
checkpoint as shipped, tensor group by tensor group, from its ``quantization_config``."""

from __future__ import annotations

import fnmatch
import math
from fractions import Fraction

from calc.errors import LLMCalcError
from calc.model.params import Tensor, tensor_copies
from calc.specs import ModelSpec, QuantSpec
from calc.units import dtype_bytes, exact_bytes

# Linear weights a quantizer converts: the projections inside the blocks. Embeddings, the output head,
# routers (DeepSeek-V3 ships mlp.gate in bf16, gpt-oss lists mlp.router), norms and biases stay unquantized.
QUANTIZED_COMPONENTS = ("attention", "mlp", "experts", "shared_experts", "mtp")
# Module paths (as in transformers' state dict) of each component, for modules_to_not_convert.
_MODULE_PATHS = {
    "attention": ("model.layers.0.self_attn",), "mlp": ("model.layers.0.mlp",),
    "experts": ("model.layers.0.mlp.experts", "model.layers.0.block_sparse_moe.experts"),
    "shared_experts": ("model.layers.0.mlp.shared_experts", "model.layers.0.mlp.shared_expert"),
    "router": ("model.layers.0.mlp.router", "model.layers.0.mlp.gate"),
    "embedding": ("model.embed_tokens",), "lm_head": ("lm_head",), "mtp": ("model.layers.61",),
}


def weight_bytes(params: int, dtype: str, group_size: int | None = None) -> int:
    """N * bytes(dtype); for int4/int8 with ``group_size`` G add one fp16 scale per G weights."""
    total = exact_bytes(params, dtype)
    if group_size:
        if group_size < 1:
            raise LLMCalcError("--group-size", f"must be >= 1, got {group_size}")
        if dtype.lower() not in ("int4", "int8", "fp8"):
            raise LLMCalcError("--group-size", f"quantisation groups apply to int4/int8/fp8 weights, not {dtype}; "
                                               "drop it or give --dtype int4")
        total += 2 * math.ceil(params / group_size)
    return total


def _skipped(component: str, name: str, skip: list[str]) -> bool:
    """A module_to_not_convert pattern ('model.layers.*.self_attn', 'lm_head', 'mlp.gate') covers the tensor."""
    paths = [f"{p}.{name}" if name else p for p in _MODULE_PATHS.get(component, (component,))]
    for pattern in skip:
        for path in paths:
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + ".*") or path.endswith(pattern) \
                    or f".{pattern}." in f".{path}.":
                return True
    return False


def quantized_matrix_bytes(q: QuantSpec, n_in: int, n_out: int) -> Fraction:
    """Bytes of one (n_in x n_out) weight matrix as the quantizer stores it.

    fp8 (transformers FineGrainedFP8, DeepSeek-V3): 1 B/weight + one fp32 scale_inv per block
    (ceil(out/b0) * ceil(in/b1)), or one fp32 per tensor without blocks.
    MXFP4 (OCP MX spec; gpt-oss *_blocks/*_scales): 4 bits/weight + one E8M0 byte per 32 along the input.
    GPTQ/AWQ: bits/8 per weight + fp16 scales and packed zero points per group of the input per output
    (+ GPTQ's int32 g_idx per input row). bitsandbytes NF4/FP4: 4 bits + fp32 absmax per 64 weights (double
    quant: 1 byte per 64 + fp32 per 256 blocks); int8: 1 B + fp32 scale per output row.
    """
    n = n_in * n_out
    if q.method == "fp8":
        if q.block_size:
            b_out, b_in = q.block_size
            return Fraction(n + 4 * math.ceil(n_out / b_out) * math.ceil(n_in / b_in))
        return Fraction(n + 4)
    if q.method == "mxfp4":
        return Fraction(n, 2) + math.ceil(n_in / (q.group_size or 32)) * n_out
    if q.method in ("gptq", "awq"):
        groups = math.ceil(n_in / q.group_size) if q.group_size else 1
        out = Fraction(n * q.bits, 8) + groups * n_out * 2
        if q.zero_points:
            out += Fraction(groups * n_out * q.bits, 8)
        return out + (4 * n_in if q.method == "gptq" else 0)
    if q.method in ("bnb_nf4", "bnb_fp4"):
        blocks = math.ceil(n / 64)
        scales = blocks + 4 * math.ceil(blocks / 256) if q.double_quant else 4 * blocks
        return Fraction(n, 2) + scales
    return Fraction(n + 4 * n_out)  # bnb_int8


def _tensor_bytes(m: ModelSpec, t: Tensor, dtype: str | None) -> Fraction:
    q = m.quantization
    if dtype is not None or q is None:
        return dtype_bytes(dtype or m.checkpoint_dtype) * t.params
    if t.component in QUANTIZED_COMPONENTS and t.shape and t.params and not _skipped(t.component, t.name, q.modules_to_not_convert):
        n_in, n_out = t.shape
        return quantized_matrix_bytes(q, n_in, n_out) * (t.params // (n_in * n_out))
    return dtype_bytes(m.checkpoint_dtype) * t.params


def weight_bytes_by_group(m: ModelSpec, dtype: str | None = None, with_mtp: bool = False) -> dict[str, int]:
    """Bytes per tensor group (embedding, attention, mlp, experts, router, norms, lm_head, ...).

    ``dtype`` None = as shipped: the tensors ``quantization_config`` covers at their quantized size with
    scales, the rest at the checkpoint dtype (bf16 unless the config says otherwise). A dtype prices every
    tensor at that dtype (the user's override).

    >>> from calc.sources.catalog import load_model
    >>> weight_bytes_by_group(load_model("llama2-7b"), "bf16")["embedding"]  # 32000*4096*2
    262144000
    """
    groups: dict[str, Fraction] = {}
    for t, copies in tensor_copies(m, with_mtp):
        groups[t.component] = groups.get(t.component, Fraction(0)) + copies * _tensor_bytes(m, t, dtype)
    return {k: math.ceil(v) for k, v in groups.items()}


def shipped_dtype_label(m: ModelSpec) -> str:
    """How the checkpoint ships, in words: 'mxfp4 (experts) + bf16', 'fp8 block 128x128 + bf16', 'bf16'."""
    q = m.quantization
    if q is None:
        return m.checkpoint_dtype
    detail = f" block {q.block_size[0]}x{q.block_size[1]}" if q.block_size else (f" g{q.group_size}" if q.group_size else "")
    skip = f", not converted: {', '.join(q.modules_to_not_convert)}" if q.modules_to_not_convert else ""
    return f"{q.method}{detail} ({q.bits}-bit) + {m.checkpoint_dtype}{skip}"
