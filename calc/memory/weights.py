"""Weight bytes: N * bytes(dtype), plus per-group quantisation scales (reference section 3); and the
checkpoint as shipped, tensor group by tensor group, from its ``quantization_config``."""

from __future__ import annotations

import fnmatch
import functools
import math
import re
from fractions import Fraction
from typing import Annotated

from pydantic import Field

from calc.errors import LLMCalcError
from calc.memo import per_spec
from calc.model.parallel import pp_stage_layers, tp_ranks_sharing
from calc.model.params import Tensor, layer_blocks, model_tensors, mtp_tensors, tensor_copies
from calc.specs import ModelSpec, QuantSpec
from calc.units import dtype_bytes

# Linear weights a quantizer converts: the projections inside the blocks. Embeddings, the output head,
# routers (DeepSeek-V3 ships mlp.gate in bf16, gpt-oss lists mlp.router), norms and biases stay unquantized.
QUANTIZED_COMPONENTS = ("attention", "mixer", "mlp", "experts", "shared_experts", "mtp")
# Module paths (as in transformers' state dict) of each component, for modules_to_not_convert.
_MODULE_PATHS = {
    "attention": ("model.layers.0.self_attn",), "mlp": ("model.layers.0.mlp",),
    "mixer": ("model.layers.0.mixer", "model.layers.0.linear_attn", "model.layers.0.mamba", "model.layers.0.conv"),
    "experts": ("model.layers.0.mlp.experts", "model.layers.0.block_sparse_moe.experts"),
    "shared_experts": ("model.layers.0.mlp.shared_experts", "model.layers.0.mlp.shared_expert"),
    "router": ("model.layers.0.mlp.router", "model.layers.0.mlp.gate"),
    "embedding": ("model.embed_tokens",), "lm_head": ("lm_head",), "mtp": ("model.layers.61",),
}


_LAYER_NAMED = re.compile(r"layers\.\d+")  # a pattern that names one block (model.layers.0.mlp)
# Linears inside a quantized component that every checkpoint keeps at its dtype: the router of an MTP block (the
# same bf16 gate as the main layers'), and DeepSeek-V3.2's indexer weights_proj (DeepSeek inference/model.py:
# "weights_proj in the checkpoint is stored in bf16"; vLLM builds it without a quant_config). Hub parameter
# totals, which count fp8 scale elements, confirm both: DeepSeek-V3 684,531,386,000, V3.2-Exp 685,396,921,376.
_NEVER_QUANTIZED = ("router", "indexer.weights_proj")


# --dtype values below 16 bits: a quantizer's width, applied as engines apply it to a 16-bit checkpoint. vLLM's
# online quantization (--quantization fp8: quantization/fp8.py Fp8Config.get_quant_method returns Fp8LinearMethod for
# a LinearBase layer only; the vocab-parallel embedding and ParallelLMHead keep UnquantizedEmbeddingMethod),
# NVIDIA ModelOpt (trtllm-bench / TensorRT-LLM --quantization FP8: its default configs disable "*lm_head*" and
# quantize nn.Linear layers, never the embedding) and AutoAWQ / AutoGPTQ / llm-compressor recipes (the decoder blocks'
# Linears, ignore ["lm_head"]) convert the blocks' weight matrices; embeddings, the output head, routers, norms and
# biases stay at the checkpoint's 16-bit dtype.
LOW_BIT_DTYPES = ("fp8", "int8", "int4", "fp4")


def sixteen_bit(m: ModelSpec) -> str:
    """The 16-bit dtype a quantized model keeps its unquantized tensors and activations in: the checkpoint's when it
    is bf16 / fp16, else bf16."""
    return m.checkpoint_dtype if m.checkpoint_dtype in ("bf16", "fp16") else "bf16"


def converted_by_dtype(t: Tensor) -> bool:
    """Whether a --dtype below 16 bits (LOW_BIT_DTYPES) converts this tensor: a weight matrix inside the blocks
    (QUANTIZED_COMPONENTS), not a router or indexer weight (_NEVER_QUANTIZED), not a bias or norm (no matrix shape)."""
    return t.component in QUANTIZED_COMPONENTS and bool(t.shape) and t.name not in _NEVER_QUANTIZED


def check_group_size(m: ModelSpec, dtype: str, group_size: int) -> None:
    """--group-size G: one fp16 scale per G consecutive inputs of each matrix a --dtype below 16 bits converts (AWQ /
    GPTQ q_group_size). Refused for a 16-bit or wider dtype, and where G does not divide a converted matrix's input
    width (AutoAWQ and GPTQ quantize whole groups: in_features % group_size == 0).

    >>> from calc.sources.catalog import load_model
    >>> check_group_size(load_model("llama3-8b"), "int4", 128) is None   # 4096 and 14336 are multiples of 128
    True
    """
    if group_size < 1:
        raise LLMCalcError("--group-size", f"must be >= 1, got {group_size}")
    if dtype.lower() not in LOW_BIT_DTYPES:
        raise LLMCalcError("--group-size", f"quantisation groups apply to {'/'.join(LOW_BIT_DTYPES)} weights, not {dtype}; "
                                           "drop it or give --dtype int4")
    widths = sorted({t.shape[0] for t, _ in tensor_copies(m, True) if converted_by_dtype(t) and t.shape[0] % group_size})
    if widths:
        raise LLMCalcError("--group-size", f"{group_size} does not divide {m.name}'s matrix input width {widths[0]:,}; "
                                           "give a divisor of it (128 or 64 for most models)")


def _skipped(component: str, name: str, skip: list[str], layer: int = 0) -> bool:
    """``_skipped_by`` on the patterns as a tuple: a pure function of strings, remembered (a serving search prices
    the same tensors of the same checkpoint thousands of times; fnmatch was a third of a corpus prediction)."""
    return _skipped_by(component, name, tuple(skip), layer)


@functools.lru_cache(maxsize=65536)
def _skipped_by(component: str, name: str, skip: tuple[str, ...], layer: int = 0) -> bool:
    """A module_to_not_convert pattern ('model.layers.*.self_attn', 'lm_head', 'mlp.gate') covers the tensor of
    block ``layer``; a pattern naming one block ('model.layers.0.mlp') covers that block only. compressed-tensors'
    're:' patterns are regular expressions (re.match on the module path)."""
    paths = [(f"{p}.{name}" if name else p).replace("layers.0.", f"layers.{layer}.", 1)
             for p in _MODULE_PATHS.get(component, (component,))]
    for pattern in skip:
        if pattern.startswith("re:"):
            if any(re.match(pattern[3:], path) for path in paths):
                return True
            continue
        for path in paths:
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + ".*") or path.endswith(pattern) \
                    or (f".{pattern}." in f".{path}." and not _LAYER_NAMED.search(pattern)):
                return True
    return False


def quantized_matrix_bytes(q: QuantSpec, n_in: int, n_out: int, own_bias: bool = False) -> Fraction:
    """Bytes of one (n_in x n_out) weight matrix as the quantizer stores it.

    fp8 (transformers FineGrainedFP8, DeepSeek-V3): 1 B/weight + one fp32 scale_inv per block
    (ceil(out/b0) * ceil(in/b1)), or one fp32 per tensor without blocks.
    MXFP4 (OCP MX spec; gpt-oss *_blocks/*_scales): 4 bits/weight + one E8M0 byte per 32 along the input.
    GPTQ/AWQ: bits/8 per weight + fp16 scales and packed zero points per group of the input per output
    (+ GPTQ's int32 g_idx per input row, + an fp16 bias per output row where AutoGPTQ wrote one to a Linear without
    its own: ``own_bias``, a layer whose bias the parameter count holds already, stores that one bias, not two).
    fbgemm_fp8 (Meta's Llama-3.1-405B-Instruct-FP8): 1 B/weight + fp32 weight_scale per output row; the
    activation bound is the config's activation_scale_ub, not a tensor (vLLM fbgemm_fp8.py FBGEMMFp8Config
    takes input_scale_ub from the config and creates weight and weight_scale only; the 405B checkpoint holds
    1,509 tensors = 1,137 bf16/fp8 weights and norms + 372 weight_scale, one per fp8 Linear).
    bitsandbytes NF4/FP4: 4 bits + fp32 absmax per 64 weights (double quant: 1 byte per 64 + fp32 per 256
    blocks); int8: 1 B + fp32 scale per output row.
    """
    n = n_in * n_out
    if q.method == "fp8":
        if q.block_size:
            b_out, b_in = q.block_size
            return Fraction(n + 4 * math.ceil(n_out / b_out) * math.ceil(n_in / b_in))
        return Fraction(n + 4)
    if q.method == "fbgemm_fp8":  # fp8 weight + fp32 weight_scale (out, 1); input_scale_ub is not stored
        return Fraction(n + 4 * n_out)
    if q.method == "modelopt_fp8":  # ModelOpt FP8: per-tensor fp32 weight_scale and input_scale
        return Fraction(n + 8)
    if q.method == "modelopt_nvfp4":  # NVFP4: e2m1 + one fp8 (e4m3) scale per 16 inputs + fp32 weight_scale_2, input_scale
        return Fraction(n, 2) + math.ceil(n_in / (q.group_size or 16)) * n_out + 8
    if q.method == "compressed_tensors":
        return _compressed_tensors_bytes(q, n_in, n_out)
    if q.method == "torchao":
        return _torchao_bytes(q, n_in, n_out)
    if q.method == "mxfp4":
        return Fraction(n, 2) + math.ceil(n_in / (q.group_size or 32)) * n_out
    if q.method in ("gptq", "awq"):
        groups = math.ceil(n_in / q.group_size) if q.group_size else 1
        out = Fraction(n * q.bits, 8) + groups * n_out * 2 + (2 * n_out if q.linear_bias and not own_bias else 0)
        if q.zero_points:
            out += Fraction(groups * n_out * q.bits, 8)
        return out + (4 * n_in if q.method == "gptq" else 0)
    if q.method in ("bnb_nf4", "bnb_fp4"):
        blocks = math.ceil(n / 64)
        scales = blocks + 4 * math.ceil(blocks / 256) if q.double_quant else 4 * blocks
        return Fraction(n, 2) + scales
    return Fraction(n + 4 * n_out)  # bnb_int8


def _compressed_tensors_bytes(q: QuantSpec, n_in: int, n_out: int) -> Fraction:
    """compressed-tensors: bits/8 per weight + bf16 scales (tensor 1, channel n_out, group n_out*ceil(in/G),
    block ceil(out/b0)*ceil(in/b1)), zero points at the weight's bits when asymmetric, pack-quantized's
    weight_shape (2 x int64: torch.tensor(weight.shape), pack_quantized.py), an int32 weight_g_idx per input
    column with actorder group, and a bf16 input_scale when activations are static. tensor_group (NVFP4,
    nvfp4-pack-quantized: weight_packed two e2m1 values a byte, weight_scale one fp8 e4m3 per group of G inputs,
    weight_global_scale fp32, and an fp32 input_global_scale when activations are quantized):
    n/2 + out*ceil(in/G) + 4 (+ 4)."""
    if q.strategy == "tensor_group":
        return Fraction(n_in * n_out * q.bits, 8) + n_out * math.ceil(n_in / (q.group_size or 16)) + 4 \
            + (4 if q.input_scale else 0)
    if q.strategy == "channel":
        scales = n_out
    elif q.strategy == "group":
        scales = n_out * math.ceil(n_in / (q.group_size or n_in))
    elif q.strategy == "block" and q.block_size:
        scales = math.ceil(n_out / q.block_size[0]) * math.ceil(n_in / q.block_size[1])
    else:
        scales = 1
    out = Fraction(n_in * n_out * q.bits, 8) + 2 * scales + (16 if q.packed else 0) + (2 if q.input_scale else 0) \
        + (4 * n_in if q.g_idx else 0)
    return out + (Fraction(scales * q.bits, 8) if q.zero_points else 0)


def _torchao_bytes(q: QuantSpec, n_in: int, n_out: int) -> Fraction:
    """torchao (calc.sources.hf.torchao): the matrix padded up to multiples of ``pad_to`` (tinygemm tiles),
    bits/8 per weight, and (scale + zero point) bytes per scale: tensor 1, channel n_out, group n_out*ceil(in/G)."""
    if q.pad_to:
        n_out, n_in = -(-n_out // q.pad_to[0]) * q.pad_to[0], -(-n_in // q.pad_to[1]) * q.pad_to[1]
    scales = {"channel": n_out, "group": n_out * math.ceil(n_in / (q.group_size or n_in))}.get(q.strategy or "", 1)
    return Fraction(n_in * n_out * q.bits, 8) + scales * (q.scale_bytes + q.zero_point_bytes)


def _quantized_shape(m: ModelSpec, q: QuantSpec, t: Tensor) -> tuple[int, int] | None:
    """(n_in, n_out) of a tensor the quantizer converts, None for one it leaves at the checkpoint dtype.
    torchao's include_input_output_embeddings converts the embedding (V rows of H) and the head too; torchao
    skips a weight whose inputs are not a multiple of the group (quant_api _int4_weight_only_quantize_tensor); an MXFP4
    checkpoint (``experts_only``) converts the routed experts alone. ``--dtype mxfp4`` (WEIGHT_FORMATS) converts every
    block Linear of a model that does not ship in MXFP4 already (requantize keeps a shipped MXFP4 checkpoint)."""
    if q.include_embeddings and t.component in ("embedding", "lm_head") and t.params and not t.shape:
        return m.hidden_size, t.params // m.hidden_size
    if t.component not in QUANTIZED_COMPONENTS + (("embedding", "lm_head") if q.include_embeddings else ()) or not t.shape \
            or t.name in _NEVER_QUANTIZED:
        return None
    if q.method == "torchao" and q.strategy == "group" and q.group_size and t.shape[0] % q.group_size:
        return None
    # an MXFP4 checkpoint converts the routed experts only: transformers' Mxfp4HfQuantizer replaces the experts
    # module, vLLM's Mxfp4Config gives every other Linear UnquantizedLinearMethod (mxfp4.py get_quant_method)
    if q.experts_only and t.component != "experts":
        return None
    return t.shape


def _tensor_bytes(m: ModelSpec, t: Tensor, dtype: str | None, layer: int = 0, group_size: int | None = None) -> Fraction:
    """Bytes of one tensor: as shipped (``dtype`` None), or at ``dtype``: a 16-bit or wider dtype prices every tensor
    at it; a narrower one (LOW_BIT_DTYPES) only the tensors it converts (converted_by_dtype), with one fp16 scale per
    ``group_size`` weights when given, the rest at the 16-bit dtype (sixteen_bit)."""
    q = m.quantization
    if dtype is not None and dtype.lower() in LOW_BIT_DTYPES:
        if not converted_by_dtype(t):
            return dtype_bytes(sixteen_bit(m)) * t.params
        return t.params * (dtype_bytes(dtype) + (Fraction(2, group_size) if group_size else 0))
    if dtype is not None or q is None:
        return dtype_bytes(dtype or m.checkpoint_dtype) * t.params
    shape = _quantized_shape(m, q, t) if t.params else None
    if shape and not _skipped(t.component, t.name, q.modules_to_not_convert, layer):
        n_in, n_out = shape
        return quantized_matrix_bytes(q, n_in, n_out, t.has_bias) * (t.params // (n_in * n_out))
    return dtype_bytes(m.checkpoint_dtype) * t.params


def weight_bytes_by_group(m: ModelSpec, dtype: str | None = None, with_mtp: bool = False,
                          group_size: int | None = None) -> dict[str, int]:
    """Bytes per tensor group (embedding, attention, mlp, experts, router, norms, lm_head, ...).

    ``dtype`` None = as shipped: the tensors ``quantization_config`` covers at their quantized size with
    scales, the rest at the checkpoint dtype (bf16 unless the config says otherwise). A 16-bit or wider dtype
    prices every tensor at it; fp8 / int8 / int4 / fp4 the blocks' weight matrices at that width (with one fp16
    scale per ``group_size`` weights when given), embeddings, head, routers and norms at 16 bits, as engines
    quantize a checkpoint (LOW_BIT_DTYPES).

    >>> from calc.sources.catalog import load_model
    >>> weight_bytes_by_group(load_model("llama2-7b"), "bf16")["embedding"]  # 32000*4096*2
    262144000
    """
    groups: dict[str, Fraction] = {}
    if _per_layer(m, dtype):  # an exclusion names single blocks: price block by block
        items = [(t, 1, i) for i, (_, ts) in enumerate(layer_blocks(m)) for t in ts]
        items += [(t, 1, m.num_layers) for t in model_tensors(m) + (mtp_tensors(m) if with_mtp else [])]
    else:
        items = [(t, copies, 0) for t, copies in tensor_copies(m, with_mtp)]
    for t, copies, layer in items:
        groups[t.component] = groups.get(t.component, Fraction(0)) + copies * _tensor_bytes(m, t, dtype, layer, group_size)
    return {k: math.ceil(v) for k, v in groups.items()}


def scale_elements(m: ModelSpec, with_mtp: bool = False) -> int:
    """Scale elements a checkpoint stores beside weights kept one element per weight (what the Hub's safetensors
    parameter total counts on top of the parameters): fp8 block-quantized, one fp32 scale_inv per
    ceil(n_out/b0) * ceil(in/b1) block (per tensor without blocks); fbgemm_fp8, one weight_scale per output row;
    compressed-tensors unpacked (float- or
    int-quantized), one scale per tensor / output row / group / block, as many zero points when asymmetric, an
    input_scale when activations are static and a g_idx per input column with actorder group (the layouts of
    _compressed_tensors_bytes). 0 without quantization. Packed or sub-byte formats store fewer elements than
    weights, so the question has no such answer for them: ValueError.

    DeepSeek-V3: 671,026,419,200 parameters + 13,463,426,304 in the MTP block + 41,540,496 scales = the Hub's
    684,531,386,000; RedHatAI Meta-Llama-3.1-8B-Instruct-FP8-dynamic: 8,030,261,248 + 32 x 43,008 rows."""
    q = m.quantization
    if q is None:
        return 0
    if q.method not in ("fp8", "fbgemm_fp8", "compressed_tensors") or q.packed or q.bits != 8:
        raise ValueError(f"{q.method} ({q.bits}-bit{', packed' if q.packed else ''}) does not store one element per weight")
    total = 0
    for t, copies in tensor_copies(m, with_mtp):
        shape = _quantized_shape(m, q, t) if t.params else None
        if shape and not _skipped(t.component, t.name, q.modules_to_not_convert):
            n_in, n_out = shape
            if q.block_size:
                scales = math.ceil(n_out / q.block_size[0]) * math.ceil(n_in / q.block_size[1])
            elif q.strategy == "channel" or q.method == "fbgemm_fp8":
                scales = n_out
            elif q.strategy == "group":
                scales = n_out * math.ceil(n_in / (q.group_size or n_in))
            else:
                scales = 1
            extra = scales * (2 if q.zero_points else 1) + (1 if q.input_scale else 0) + (n_in if q.g_idx else 0)
            total += copies * (t.params // (n_in * n_out)) * extra
    return total


def matrix_elements(q: QuantSpec, n_in: int, n_out: int, own_bias: bool = False) -> int:
    """Safetensors elements of one (n_in x n_out) weight matrix as its format stores it (the prod(shape) of its
    tensors, what huggingface_hub's SafetensorsFileMetadata.parameter_count sums); a packed 4-bit format stores
    fewer elements than weights.

    MXFP4 (gpt-oss ``*_blocks`` U8 [.., out, in/32, 16] + ``*_scales`` U8 [.., out, in/32]): n/2 + out x ceil(in/32).
    NVFP4 (ModelOpt: ``weight`` U8 [out, in/2], ``weight_scale`` F8 [out, in/16], F32 ``weight_scale_2`` and
    ``input_scale``): n/2 + out x ceil(in/16) + 2.
    GPTQ / AWQ (int32-packed ``qweight`` and ``qzeros``, F16 ``scales`` per group, GPTQ's I32 ``g_idx``):
    n x bits/32 + groups x out x (1 + bits/32) + (in for GPTQ) (+ out for a bias).
    ModelOpt FP8 (F8 ``weight`` + F32 ``weight_scale`` and ``input_scale``): n + 2.
    Any other format: ValueError (not one trtllm-bench or the Hub meets here)."""
    n = n_in * n_out
    if q.method == "modelopt_fp8":
        return n + 2
    if q.method == "mxfp4":
        return n // 2 + math.ceil(n_in / (q.group_size or 32)) * n_out
    if q.method == "modelopt_nvfp4":
        return n // 2 + math.ceil(n_in / (q.group_size or 16)) * n_out + 2
    if q.method in ("gptq", "awq"):
        groups = math.ceil(n_in / q.group_size) if q.group_size else 1
        zeros = groups * n_out * q.bits // 32 if q.zero_points else 0
        return n * q.bits // 32 + groups * n_out + zeros + (n_in if q.method == "gptq" else 0) \
            + (n_out if q.linear_bias and not own_bias else 0)
    raise ValueError(f"{q.method}: stored elements of this packed format are not modelled")


def stored_elements(m: ModelSpec, with_mtp: bool = False) -> int:
    """Tensor elements the checkpoint stores, the sum of prod(shape) over its safetensors (huggingface_hub's
    SafetensorsRepoMetadata.parameter_count, which trtllm-bench reads as the model's parameter count:
    tensorrt_llm/bench/build/dataclasses.py ModelConfig.get_param_count). One per weight plus the scale elements
    (scale_elements) for a 16-bit or 8-bit checkpoint; a packed 4-bit format stores fewer elements than weights
    (matrix_elements).

    gpt-oss-20b, by hand from the Hub's parameter total 20,914,757,184 and the checkpoint's layout: the experts'
    24 x 32 x (5760 x 2880 + 2880 x 2880) = 19,110,297,600 weights are stored as 24 x (32 x 5760 x 1440 +
    32 x 5760 x 90 + 32 x 2880 x 1440 + 32 x 2880 x 90) = 10,152,345,600 U8 elements: 11,956,805,184 in all."""
    q = m.quantization
    if q is None or (q.method in ("fp8", "fbgemm_fp8", "compressed_tensors") and not q.packed and q.bits == 8):
        return sum(copies * t.params for t, copies in tensor_copies(m, with_mtp)) + scale_elements(m, with_mtp)
    total = 0
    for t, copies in tensor_copies(m, with_mtp):
        shape = _quantized_shape(m, q, t) if t.params else None
        if shape and not _skipped(t.component, t.name, q.modules_to_not_convert):
            n_in, n_out = shape
            total += copies * (t.params // (n_in * n_out)) * matrix_elements(q, n_in, n_out, t.has_bias)
        else:
            total += copies * t.params
    return total


def _per_layer(m: ModelSpec, dtype: str | None) -> bool:
    """Whether a modules_to_not_convert entry names one block, so blocks of one kind differ in bytes."""
    q = m.quantization
    return dtype is None and q is not None and any(_LAYER_NAMED.search(p) for p in q.modules_to_not_convert)


# 4-bit weight formats --dtype accepts for serving: a checkpoint format, not a byte width.
# NVFP4 (NVIDIA ModelOpt, hf_quant_config quant_algo NVFP4): e2m1 values, one e4m3 scale per 16 inputs, an fp32
# weight_scale_2 and input_scale per Linear. MXFP4 (OCP MX v1.0): e2m1 values, one e8m0 scale per 32 inputs.
# AWQ (AutoAWQ GEMM layout, the defaults w_bit 4, q_group_size 128, zero_point True): int4 qweight packed in int32,
# an fp16 scale and a packed int4 zero point per 128 inputs per output. GPTQ (AutoGPTQ / GPTQModel defaults bits 4,
# group_size 128): the same plus an int32 g_idx per input row (qzeros are written for symmetric checkpoints too).
# Both leave embeddings, lm_head and norms at 16 bits (AutoAWQ / AutoGPTQ quantize the decoder blocks' Linears).
WEIGHT_FORMATS: dict[str, QuantSpec] = {
    "nvfp4": QuantSpec(method="modelopt_nvfp4", bits=4, group_size=16),
    "mxfp4": QuantSpec(method="mxfp4", bits=4, group_size=32),
    "awq": QuantSpec(method="awq", bits=4, group_size=128, zero_points=True),
    "gptq": QuantSpec(method="gptq", bits=4, group_size=128, zero_points=True),
}


def requantize(m: ModelSpec, dtype: str | None) -> tuple[ModelSpec, str | None]:
    """(model, dtype) with a 4-bit weight format of ``dtype`` applied as a checkpoint would ship it.

    ``--dtype nvfp4`` / ``mxfp4`` / ``awq`` / ``gptq`` price the model as its quantized checkpoint: every Linear
    inside the blocks (attention, MLP, experts, shared experts) in that format (quantized_matrix_bytes),
    embeddings, output head, routers and norms at the 16-bit dtype, as ModelOpt's and the MX recipes' defaults
    exclude lm_head and keep routers and norms unquantized (TensorRT-LLM examples/quantization, nvidia/*-FP4
    hf_quant_config.json exclude_modules) and AutoAWQ / AutoGPTQ quantize only the decoder blocks' Linears. The
    result has dtype None (the checkpoint as shipped): every serving path then prices it as it prices a shipped
    checkpoint of that format (calc.serving.weights: fp4 GEMMs for NVFP4 / MXFP4 where the GPU has an fp4 peak,
    weights dequantised in the kernel elsewhere and always for AWQ / GPTQ, W4A16). Any other dtype passes
    through unchanged. A model whose checkpoint already ships in that format (openai/gpt-oss-*: MXFP4 experts,
    bf16 attention, routers and embeddings) is priced as that checkpoint, not converted a second time.
    """
    q = WEIGHT_FORMATS.get(dtype or "")
    if q is None:
        return m, dtype
    if m.quantization is not None and m.quantization.method == q.method:
        # the checkpoint already ships in this format (openai/gpt-oss-*: MXFP4 experts, bf16 attention): that
        # checkpoint, its own modules_to_not_convert and all, not a second conversion of every block Linear
        return m, None
    if q.method in ("awq", "gptq"):  # whole groups of inputs (AutoAWQ / AutoGPTQ: in_features % group_size == 0)
        widths = sorted({t.shape[0] for t, _ in tensor_copies(m, True) if converted_by_dtype(t) and t.shape[0] % q.group_size})
        if widths:
            raise LLMCalcError("--dtype", f"{dtype} checkpoints quantize whole groups of {q.group_size} inputs, and "
                                          f"{m.name}'s matrix input width {widths[0]:,} is not a multiple of {q.group_size}: "
                                          f"no such checkpoint exists; give --dtype int4 --group-size with a divisor of it")
    # AWQ / GPTQ ship fp16 scales and run fp16 activations (vLLM AWQConfig / GPTQConfig.get_supported_act_dtypes:
    # [torch.half]; AutoAWQ / AutoGPTQ write torch_dtype float16); the fp4 formats keep the model's 16-bit dtype.
    act = "fp16" if q.method in ("awq", "gptq") else m.checkpoint_dtype if m.checkpoint_dtype in ("bf16", "fp16") else "bf16"
    return m.model_copy(update={"quantization": q.model_copy(update={"converted_from": dtype}), "checkpoint_dtype": act}), None


# The result field that carries weights_class (latency, concurrency, serve, engine and inference memory results).
WeightsDtype = Annotated[str, Field(description="the weights' format class the band group is read for (fp8, nvfp4, "
                                                "mxfp4, int4, bf16; calc.memory.weights.weights_class)")]


def float8_scheme(q: QuantSpec) -> bool:
    """Whether a scheme-named quantization stores 8-bit floats (compressed-tensors "float8", torchao
    Float8WeightOnlyConfig / fp8 schemes): FP8 weights, not INT8."""
    return "8" in q.scheme and ("float" in q.scheme.lower() or "fp8" in q.scheme.lower())


def weights_class(m: ModelSpec, dtype: str | None) -> str:
    """The weights' format in the corpus's dtype vocabulary, which picks a band group (calc.bands.dtype_class): the
    dtype given, else the checkpoint's quantization as its rows name it (fp8 for every fp8 scheme, nvfp4, mxfp4,
    int4 / int8 for GPTQ, AWQ, bitsandbytes and integer schemes), else the checkpoint dtype."""
    q = m.quantization
    if dtype is not None or q is None:
        return dtype or m.checkpoint_dtype
    named = {"fp8": "fp8", "fbgemm_fp8": "fp8", "modelopt_fp8": "fp8", "modelopt_nvfp4": "nvfp4", "mxfp4": "mxfp4",
             "bnb_nf4": "nf4", "bnb_fp4": "nf4"}.get(q.method)
    if named is None and float8_scheme(q):
        named = "fp8"
    return named or f"int{q.bits}"


def weights_as_priced(m: ModelSpec) -> str:
    """The head of a weights assumption line priced as shipped: "weights as shipped: fp8 block 128x128 ...", or for a
    model converted by --dtype (requantize) "weights --dtype awq, as its checkpoint would ship: ..."."""
    converted = m.quantization is not None and m.quantization.converted_from
    return ("weights " if converted else "weights as shipped: ") + shipped_dtype_label(m)


def shipped_dtype_label(m: ModelSpec) -> str:
    """How the checkpoint ships, in words: 'mxfp4 (experts) + bf16', 'fp8 block 128x128 + bf16', 'bf16'."""
    q = m.quantization
    if q is None:
        return m.checkpoint_dtype
    if q.converted_from:  # --dtype awq on a bf16 model: that format's checkpoint of it, not one it ships
        return f"--dtype {q.converted_from}, as its checkpoint would ship: " + shipped_dtype_label(
            m.model_copy(update={"quantization": q.model_copy(update={"converted_from": None})}))
    detail = f" block {q.block_size[0]}x{q.block_size[1]}" if q.block_size else (f" g{q.group_size}" if q.group_size else "")
    detail = (f" {q.scheme}" if q.scheme else "") + detail
    names = q.modules_to_not_convert or []
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    skip = f", not converted: {shown}" if names else ""
    return f"{q.method}{detail} ({q.bits}-bit) + {m.checkpoint_dtype}{skip}"



# Tensors outside the blocks that vLLM builds on the first pipeline stage (embeddings, the vision tower);
# the rest (final norm, LM head, MTP modules) sit on the last.
_FIRST_STAGE = ("embedding", "position_embedding", "vision")


def weights_per_gpu(m: ModelSpec, dtype: str | None, tp: int = 1, pp: int = 1, ep: int = 1, *, with_mtp: bool = False,
                    group_size: int | None = None) -> int:
    """Weight bytes on the busiest GPU of a TP x PP (x EP) layout: the one placement rule `memory --mode
    infer`, `concurrency`, `latency`, `serve` and `report` share. ``dtype`` None: as shipped (_tensor_bytes).

    Pipeline stages as vLLM builds them (vllm/distributed/utils.py get_pp_indices, here
    calc.model.parallel.pp_stage_layers; vllm/model_executor/models/llama.py): stage s holds the n_s
    consecutive decoder layers of its range (the dense layers of a DeepSeek-style MoE come first); the
    first stage also holds the embedding (and positions, embedding norm, vision tower), the last the final
    norm, the LM head and the MTP modules. With tied embeddings and p > 1 the last stage builds its own
    copy of the embedding to use as the head (vLLM: `if is_first_rank or (tie_word_embeddings and
    is_last_rank)`). Expert parallelism over ``ep`` ranks (data-parallel attention, TP 1) keeps 1/ep of
    the routed experts on each rank. A stage's tensors are split by TP as the engine places them
    (calc.model.parallel.tp_ranks_sharing): vocab-parallel embedding and head and column/row-parallel
    projections over t ranks, KV projections over min(t, g) (one whole KV head a rank past g), and the
    replicated ones whole on every rank (MLA's latent down-projections, routers: about 0.9 GB of
    DeepSeek-V3's on each of 8 ranks in fp8, not 1/8 of it):

        bytes = max over stages s of sum over its tensors x of bytes(x) / (ep if x is a routed expert) / r_t(x)

    ``group_size`` G: every converted weight at bytes(dtype) + 2/G (one fp16 scale per G weights; _tensor_bytes).

    >>> from calc.sources.catalog import load_model
    >>> m = load_model("llama2-7b")  # 32 layers of 4*4096^2 + 3*4096*11008 + 2*4096; V*H = 32000*4096 each end
    >>> weights_per_gpu(m, "bf16", pp=4) == (8 * 202_383_360 + 4096 + 131_072_000) * 2  # last stage: + final norm
    True
    """
    return max(_stage_bytes(m, dtype, tp, pp, ep, with_mtp, group_size))


def weights_stored_bytes(m: ModelSpec, dtype: str | None, tp: int = 1, pp: int = 1, *, with_mtp: bool = False,
                         group_size: int | None = None) -> int:
    """Weight bytes on all the GPUs of a TP x PP layout: every stage's rank bytes (weights_per_gpu's placement) x
    its t ranks, summed over the stages. More than the model's own weights where a tensor is replicated (the
    tensors calc.model.parallel.tp_ranks_sharing keeps whole on every rank, a tied head's copy on the last stage):
    the weights half of what `memory --mode infer` totals over GPUs, as kv_cache_stored_bytes is the KV half.

    >>> from calc.sources.catalog import load_model
    >>> m = load_model("deepseek-v3")   # q_a 7,168 x 1,536 + kv_a 7,168 x 576 a layer (61) and the router 7,168 x 256
    >>> extra = (61 * 7168 * (1536 + 576) + 58 * (7168 * 256 + 256)) * 2 * 7   # (+ its bias) a MoE layer (58), bf16
    >>> weights_stored_bytes(m, "bf16", 8) - weights_stored_bytes(m, "bf16") == extra
    True
    """
    return sum(_stage_bytes(m, dtype, tp, pp, 1, with_mtp, group_size)) * tp


def _stage_bytes(m: ModelSpec, dtype: str | None, tp: int, pp: int, ep: int, with_mtp: bool,
                 group_size: int | None) -> list[int]:
    """One rank's weight bytes on each pipeline stage (weights_per_gpu's placement), rounded up."""
    layers, first, last, embedding = _stage_parts(m, dtype, tp, ep, with_mtp, group_size)
    if pp > 1 and m.tied_embeddings:
        last += embedding
    out, start = [], 0
    for s, n in enumerate(pp_stage_layers(m.num_layers, pp)):
        here = sum(layers[start : start + n], Fraction(0)) + (first if s == 0 else 0) + (last if s == pp - 1 else 0)
        out.append(math.ceil(here))
        start += n
    return out


@per_spec
def _stage_parts(m: ModelSpec, dtype: str | None, tp: int, ep: int, with_mtp: bool,
                 group_size: int | None) -> tuple[tuple[Fraction, ...], Fraction, Fraction, Fraction]:
    """What ``weights_per_gpu`` places on one rank of the TP group, before the PP split: each decoder layer's
    bytes, the first stage's end tensors, the last stage's, and the embedding (the head's copy on the last stage
    when tied)."""
    def size(t: Tensor, layer: int = 0) -> Fraction:
        return (_tensor_bytes(m, t, dtype, layer, group_size) / (ep if t.component == "experts" else 1)
                / tp_ranks_sharing(m, t.component, t.name, tp))

    sizes: dict[int, Fraction] = {}
    per_layer = _per_layer(m, dtype) and not group_size
    layers = [sum((size(t, i) for t in ts), Fraction(0)) if per_layer else sizes.setdefault(id(ts), sum(map(size, ts), Fraction(0)))
              for i, (_, ts) in enumerate(layer_blocks(m))]
    ends = model_tensors(m) + (mtp_tensors(m) if with_mtp else [])
    first = sum((size(t) for t in ends if t.component in _FIRST_STAGE), Fraction(0))
    last = sum((size(t) for t in ends if t.component not in _FIRST_STAGE), Fraction(0))
    embedding = sum((size(t) for t in ends if t.component == "embedding"), Fraction(0))
    return tuple(layers), first, last, embedding
