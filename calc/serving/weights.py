"""Weights as a serving engine holds and streams them: the checkpoint as shipped (its
``quantization_config``) unless a dtype is given, and the dtype each weight GEMM runs in.

bytes per weight of a tensor group c = calc.memory.weights.weight_bytes_by_group(m, None)[c] / params[c]
    (fp8 block scales, MXFP4 E8M0 scales, GPTQ/AWQ scales and zeros included; reference section 3).
Compute of a quantized group (what vLLM's kernels do, vllm/model_executor/layers/quantization/):
    fp8 weights      -> fp8 tensor peak where the GPU has one (fp8.py: CUTLASS/DeepGEMM block-fp8 W8A8,
                        activations quantised per 128-token group); else bf16 (FP8 Marlin, weight-only).
    fbgemm_fp8       -> the same (fbgemm_fp8.py at v0.6.3: fp8 weight + fp32 per-output-channel weight_scale;
                        apply_fp8_linear = cutlass_scaled_mm W8A8 with per-token dynamic activation scales;
                        FP8 Marlin weight-only only when the device lacks capability 8.9, use_marlin).
    4-bit weights    -> dequantised to bf16 inside the kernel (Marlin for GPTQ/AWQ/NF4, mxfp4.py's Marlin /
                        Triton MoE on Hopper); an fp4 tensor peak only where the GPU spec lists one.
    MXFP4 / NVFP4    -> on a GPU with an fp4 tensor peak (Blackwell): fp4 GEMMs at that peak (vLLM
                        modelopt.py ModelOptNvFp4LinearMethod: cutlass_scaled_fp4_mm / FlashInfer with activations
                        quantised to nvfp4 per 16; TensorRT-LLM's NVFP4 GEMMs); elsewhere weight-only
                        (vLLM's Marlin FP4 fallback, marlin_utils_fp4.py), as the other 4-bit formats.
                        `--dtype nvfp4|mxfp4` prices the model as that checkpoint (calc.memory.weights.requantize).
    int8 (bnb)       -> dequantised to bf16.
Activations, attention and (by default) the KV cache stay at the checkpoint dtype, as vLLM's
kv_cache_dtype "auto" keeps them.
A quantized GEMM is timed by calc.hardware.efficiency.gemm_time at its storage width (fp8/int8: 1 B,
4-bit: 1/2 B) on a view of the GPU whose peak for that width is the compute dtype's peak and whose
bandwidth is scaled by nominal/actual bytes per weight (so the scales are streamed too). Weight-only
kernels (dequantise in the kernel: Marlin, csrc/quantization/marlin) tile the token rows by 16, not the
128 rows gemm_time quantises by, so below 128 rows their peak is scaled by q(M, 16) / q(M, 128),
q(x, t) = x / (ceil(x/t) t): a decode GEMV streams its 4-bit weights instead of paying for 128 rows.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

from calc.hardware.efficiency import TILE_MN
from calc.hardware.peaks import peak_tflops
from calc.memory.kv import sparse_mla
from calc.memory.weights import sixteen_bit
from calc.model.params import count_params
from calc.specs import GPUSpec, ModelSpec
from calc.units import COMPUTE_DTYPE, dtype_bytes


class WeightFormat(NamedTuple):
    label: str  # the dtype given, or "as-shipped"
    act_dtype: str  # activations, attention, default KV cache: the dtype given, else the checkpoint dtype
    compute_dtype: str  # tensor peak of the quantized GEMMs (the dtype given when every weight has one dtype)
    bytes_per_weight: dict[str, Fraction]  # per tensor group; empty: act_dtype bytes for all
    storage: dict[str, str]  # quantized group -> its storage width as a dtype key for gemm_time
    line: str  # the printed assumption
    int4_experts: bool = False  # routed experts in integer 4-bit W4A16 (GPTQ / AWQ / compressed-tensors): Marlin MoE

    def elem(self, component: str) -> float:
        """Bytes streamed per weight of ``component``."""
        return float(self.bytes_per_weight.get(component, dtype_bytes(self.act_dtype)))

    def gemm(self, gpu: GPUSpec, component: str, rows: float) -> tuple[GPUSpec, str]:
        """(GPU view, dtype) to time a GEMM of ``component`` over ``rows`` token rows with
        calc.hardware.efficiency.gemm_time."""
        key = self.storage.get(component)
        if key is None:
            return gpu, self.act_dtype
        scale = float(dtype_bytes(key)) / self.elem(component)
        rows_tile = 1.0
        if self.weight_only and rows < GEMM_TILE_ROWS:
            rows_tile = _quant(rows, WEIGHT_ONLY_TILE_ROWS) / _quant(rows, GEMM_TILE_ROWS)
        return _view(gpu, key, self.compute_dtype, scale, rows_tile), key

    @property
    def weight_only(self) -> bool:
        """Quantized weights multiplied after dequantising (no tensor peak at their own width)."""
        return bool(self.storage) and self.compute_dtype == self.act_dtype


GEMM_TILE_ROWS = TILE_MN  # the row tile calc.hardware.efficiency.gemm_time quantises by
WEIGHT_ONLY_TILE_ROWS = 16  # Marlin's row block
_VIEWS: dict[tuple, tuple[GPUSpec, GPUSpec]] = {}


def _quant(x: float, tile: int) -> float:
    return x / (math.ceil(x / tile) * tile)


_FORMATS: dict[tuple, tuple[ModelSpec, WeightFormat]] = {}


def _view(gpu: GPUSpec, key: str, compute: str, scale: float, rows_tile: float) -> GPUSpec:
    """The GPU as a quantized GEMM sees it: the storage width's peak = the compute dtype's peak (x the
    row-tile correction), bandwidth x nominal/actual bytes per weight."""
    k = (id(gpu), key, compute, round(scale, 6), round(rows_tile, 6))
    hit = _VIEWS.get(k)
    if hit is None or hit[0] is not gpu:
        peaks = dict(gpu.datasheet_peak_tflops)
        # peak_tflops refuses (one line naming --dtype) a compute dtype the GPU has no peak for: a bf16 checkpoint's
        # activations on a V100
        peaks[COMPUTE_DTYPE.get(key, key)] = peak_tflops(gpu, compute) * rows_tile
        hit = _VIEWS[k] = (gpu, gpu.model_copy(update={"datasheet_peak_tflops": peaks, "hbm_tb_s": gpu.hbm_tb_s * scale}))
    return hit[1]


def shipped_group_bytes(m: ModelSpec) -> dict[str, int]:
    """Bytes per tensor group of the checkpoint as shipped (calc.memory.weights.weight_bytes_by_group)."""
    from calc.memory.weights import weight_bytes_by_group

    return weight_bytes_by_group(m, None)


def weight_format(m: ModelSpec, gpu: GPUSpec, dtype: str | None) -> WeightFormat:
    """How the serving model prices weights: ``dtype`` None = as shipped (quantization_config), else every
    weight at ``dtype`` (the user's override, as `memory --dtype`)."""
    peaks = gpu.datasheet_peak_tflops
    fp8_marlin = gpu.arch == "Ampere"  # fp8 weights without fp8 tensor cores run W8A16 (Marlin needs Ampere)
    key = (id(m), dtype, "fp8" in peaks, "fp4" in peaks, fp8_marlin)
    hit = _FORMATS.get(key)
    if hit is not None and hit[0] is m:
        return hit[1]
    fmt = _resolve(m, peaks, dtype, fp8_marlin)
    _FORMATS[key] = (m, fmt)
    return fmt


def _dsa_kv_note(m: ModelSpec) -> str:
    """The exception to "KV in the activation dtype": vLLM V1's auto for DeepSeek-V3.2 (calc.memory.kv.model_auto_kv_dtype)."""
    return " (vLLM: its fp8 sparse-MLA record for this DeepSeek-V3.2 model)" if sparse_mla(m) else ""


def _int4_weight_only(m: ModelSpec) -> WeightFormat:
    """``--dtype int4``: the blocks' weight matrices at half a byte (as `memory --dtype int4` counts them, no scales;
    embeddings, head, routers and norms at 16 bits, calc.memory.weights.LOW_BIT_DTYPES), multiplied as W4A16. No
    serving engine runs an int4 x int4 GEMM: vLLM's and SGLang's integer 4-bit linears are weight-only
    (gptq_marlin.py / awq_marlin.py / compressed_tensors_wNa16: dequantise to the 16-bit activation dtype inside the
    Marlin kernel), as TensorRT-LLM's int4 weight-only (W4A16) GEMMs are. So activations, attention and the default
    KV stay 16-bit, the GEMMs run at the 16-bit peak on Marlin's 16-row tile, and a decode step streams 4-bit weights.
    ``--dtype awq`` / ``gptq`` price a real checkpoint of that format instead (embeddings and lm_head at 16 bits,
    group scales and zeros included)."""
    return _weight_only(m, "int4", "W4A16", "as GPTQ / AWQ Marlin kernels run; no scales counted: --dtype awq / gptq "
                                            "for a checkpoint's")


def _fp8_weight_only(m: ModelSpec) -> WeightFormat:
    """``--dtype fp8`` on an Ampere GPU (no fp8 tensor cores): the blocks' weight matrices at one byte, multiplied as
    W8A16, the way a shipped fp8 checkpoint is priced there (_resolve): vLLM runs fp8 weights on such GPUs through
    its FP8 Marlin kernel, dequantising to the 16-bit activation dtype (quantization/fp8.py, "weight-only FP8
    compression ... using the Marlin kernel" when the capability is below 8.9; Marlin needs 8.0, so Turing and Volta
    stay refused). Activations, attention and KV stay 16-bit."""
    return _weight_only(m, "fp8", "W8A16", "no fp8 tensor cores here; as vLLM's FP8 Marlin runs them")


def _weight_only(m: ModelSpec, dtype: str, scheme: str, how: str) -> WeightFormat:
    """The blocks' weight matrices stored at ``dtype`` and dequantised to the model's 16-bit activation dtype inside
    the GEMM (``scheme`` W4A16 / W8A16): the GEMMs run at the 16-bit peak, activations, attention and the default KV
    stay 16-bit; ``how`` says which kernels run it."""
    act = sixteen_bit(m)
    per, converted = _converted_groups(m, dtype)
    line = (f"weights in {dtype} (the blocks' weight matrices; embeddings, head, routers and norms in {act}), multiplied "
            f"as {scheme} (dequantised to {act} in the kernel, {how}); activations, attention and KV default in {act}"
            + _dsa_kv_note(m))
    return WeightFormat(dtype, act, act, per, {c: dtype for c in converted}, line)


def _converted_groups(m: ModelSpec, dtype: str) -> tuple[dict[str, Fraction], list[str]]:
    """(bytes per weight of each tensor group, the groups a --dtype below 16 bits converts) as `memory --dtype` counts
    them (calc.memory.weights.weight_bytes_by_group: the blocks' weight matrices at ``dtype``, biases, norms,
    routers, embeddings and head at 16 bits)."""
    from calc.memory.weights import weight_bytes_by_group

    params = count_params(m).components
    per = {c: Fraction(b, params[c]) for c, b in weight_bytes_by_group(m, dtype).items() if params.get(c)}
    return per, [c for c, b in per.items() if b != dtype_bytes(sixteen_bit(m))]


def _low_bit(m: ModelSpec, dtype: str) -> WeightFormat:
    """``--dtype fp8`` / ``int8`` / ``fp4`` on a GPU with that tensor peak: the blocks' weight matrices stored and
    multiplied at ``dtype`` (W8A8 / W4A4, activations quantized at the GEMM's input, calc.serving.act_quant), the rest
    (embeddings, output head, routers, norms) at the 16-bit dtype, in which activations, attention and the default KV
    stay: as a checkpoint quantized by vLLM (--quantization fp8), ModelOpt or llm-compressor is served
    (calc.memory.weights.LOW_BIT_DTYPES)."""
    act = sixteen_bit(m)
    per, converted = _converted_groups(m, dtype)
    line = (f"weights in {dtype}: the blocks' weight matrices ({', '.join(converted)}) stored and multiplied at {dtype}; "
            f"embeddings, output head, routers and norms in {act}, as engines quantize a checkpoint; activations, "
            f"attention and KV default in {act}" + _dsa_kv_note(m))
    return WeightFormat(dtype, act, dtype, per, {c: dtype for c in converted}, line)


FP16_FALLBACK = ("the GPU has no bf16 tensor cores, and the engine's --dtype auto falls back to fp16 there (vLLM "
                 "CudaPlatform.supported_dtypes below compute capability 8.0: fp16, fp32)")


def fp16_unsupported(m: ModelSpec) -> bool:
    """Whether vLLM refuses to run the model in fp16 (vllm/config/model.py _FLOAT16_NOT_SUPPORTED_MODELS, "Numerical
    instability": gemma2, gemma3, gemma3_text, glm4, plamo2), read from the architecture, not the name: the Gemma 2 / 3
    block, four RMSNorms a layer (pre and post attention and MLP) around a GELU-tanh MLP (calc.sources.hf.gemma). GLM-4
    (model_type glm4) and PLaMo 2 have no mapper here, so they never reach this check."""
    return m.norms_per_layer == 4 and m.activation.startswith("gelu")


def vllm_dtype_problem(m: ModelSpec, gpu: GPUSpec, dtype: str | None) -> tuple[str, str] | None:
    """(flag, why) where vLLM will not run the model as asked, or runs it in a format this tool does not price; None
    where it runs. vllm/config/model.py: a model in _FLOAT16_NOT_SUPPORTED_MODELS (fp16_unsupported) is refused at
    --dtype float16 ("Numerical instability"), and at --dtype auto _resolve_auto_dtype drops float16 from the
    platform's supported dtypes for it, so a bf16 checkpoint on a GPU without bf16 (CudaPlatform below compute
    capability 8.0 supports float16, float32) runs in float32 on the CUDA cores: 4-byte weights and KV and no tensor
    peak, which no command prices. One rule for every serving command (latency, concurrency, serve, report, and
    `memory --mode infer`'s engine verdict)."""
    if not fp16_unsupported(m):
        return None
    if dtype == "fp16":
        return "--dtype", (f"vLLM refuses to run {m.name} in fp16 (Gemma 2 / 3: numerical instability, "
                           "vllm/config/model.py _FLOAT16_NOT_SUPPORTED_MODELS): give bf16 on a GPU that has it")
    peaks = gpu.datasheet_peak_tflops
    if dtype is None and m.quantization is None and m.checkpoint_dtype == "bf16" and "bf16" not in peaks:
        return "--gpu", (f"{gpu.name} has no bf16, and vLLM refuses {m.name} in fp16 (Gemma 2 / 3: numerical "
                         "instability), so its --dtype auto runs it in fp32 on the CUDA cores (4-byte weights and KV, "
                         "no tensor peak; vllm/config/model.py _resolve_auto_dtype), which is not priced: give a GPU "
                         "with bf16 (compute capability 8.0 or later)")
    q = m.quantization
    if dtype is None and q is not None and q.method in ("awq", "gptq") and \
            ARCH_CAPABILITY.get(gpu.arch, MARLIN_CAPABILITY) < MARLIN_CAPABILITY:
        # below 8.0 no Marlin kernel: the AWQ / GPTQ kernels take fp16 activations only (get_supported_act_dtypes
        # [torch.half]), which vLLM refuses for this model
        return "--gpu", (f"{FORMAT_NAMES[q.method]} weights run fp16 activations on {gpu.name} ({gpu.arch}: no Marlin "
                         f"kernel, which needs compute capability 8.0 and takes bf16), and vLLM refuses {m.name} in "
                         "fp16 (Gemma 2 / 3: numerical instability): give a GPU of compute capability 8.0 or later")
    return None


# The compute capability a quantized format's kernels need in vLLM (QuantizationConfig.get_min_capability: awq.py 75,
# "The AWQ kernel only supports Turing or newer GPUs"; mxfp4.py 80 (90 before its Marlin / Triton paths);
# modelopt.py ModelOptNvFp4Config 75 (100 when added, then 80); gptq.py 60); SGLang's configs carry the same minimums
# (srt/layers/quantization/awq.py 75). By architecture, the capability of its first part (Ampere 8.0: an A10's 8.6
# passes what 8.0 passes). AMD GPUs are not in the table: ROCm builds pick their own kernels (Triton AWQ, CK / AITER
# MXFP4, NVFP4 emulation), which are not checked.
MIN_CAPABILITY = {"awq": 75, "mxfp4": 80, "modelopt_nvfp4": 75, "gptq": 60}
ARCH_CAPABILITY = {"Volta": 70, "Turing": 75, "Ampere": 80, "Ada": 89, "Hopper": 90, "Blackwell": 100}
FORMAT_NAMES = {"awq": "AWQ", "mxfp4": "MXFP4", "modelopt_nvfp4": "NVFP4", "gptq": "GPTQ"}
MARLIN_CAPABILITY = 80  # vLLM's gptq_marlin / awq_marlin (bf16 or fp16 activations) from Ampere


def kernel_problem(m: ModelSpec, gpu: GPUSpec) -> tuple[str, str] | None:
    """(field, why) where the checkpoint's quantized format (as shipped, or converted by --dtype) has no kernel on the
    GPU in vLLM / SGLang (MIN_CAPABILITY), as fp8 has none without fp8 tensor cores; None where it loads."""
    q, have = m.quantization, ARCH_CAPABILITY.get(gpu.arch)
    need = MIN_CAPABILITY.get(q.method) if q is not None else None
    if need is None or have is None or have >= need:
        return None
    name = FORMAT_NAMES[q.method]
    return ("--dtype" if q.converted_from else "--gpu"), (
        f"{name} weights need compute capability {need / 10:.1f} in vLLM and SGLang (their quantization config's "
        f"get_min_capability); {gpu.name} is {gpu.arch}, {have / 10:.1f}: "
        + ("give another --dtype or a newer GPU" if q.converted_from else
           f"{m.name} ships {name}: give a GPU of compute capability {need / 10:.1f} or later"))


def load_problem(m: ModelSpec, gpu: GPUSpec, dtype: str | None, engine: str) -> tuple[str, str] | None:
    """(field, why) where the serving ``engine`` would not run the checkpoint on the GPU as priced: vLLM's fp32 run of a
    Gemma 2 / 3 model without bf16 (vllm_dtype_problem), a quantized format as shipped (or converted by --dtype awq /
    gptq / nvfp4 / mxfp4: ``dtype`` None) without a kernel there (kernel_problem: vLLM, SGLang); None where it runs.
    The one rule latency, concurrency, serve, report, compare and `memory --mode infer`'s engine verdict read."""
    from calc.memory.weights import requantize
    from calc.serving.shards import shard_problem

    m, dtype = requantize(m, dtype)  # --dtype awq / gptq / nvfp4 / mxfp4: that checkpoint, as the CLI prices it
    if engine.startswith("vllm") and (problem := vllm_dtype_problem(m, gpu, dtype)) is not None:
        return problem
    if dtype is None and engine.startswith(("vllm", "sglang")):
        if (whole := shard_problem(m, dtype, 1, 1, engine)) is not None:  # a group cutting a whole matrix: no layout
            return "MODEL", whole
        return kernel_problem(m, gpu)
    return None


def _auto_dtype(m: ModelSpec, peaks: dict[str, float]) -> str:
    """The 16-bit dtype an engine runs a checkpoint in at --dtype auto: its own, except bf16 on a GPU without bf16
    tensor cores (Volta, Turing), which runs in fp16 (vLLM's _resolve_auto_dtype takes the platform's first supported
    dtype) unless vLLM refuses the model in fp16 (fp16_unsupported: it would run fp32 on CUDA cores, which is not
    priced: kept bf16, which the GPU's missing bf16 peak then refuses, naming --dtype)."""
    checkpoint = m.checkpoint_dtype
    if checkpoint != "bf16" or "bf16" in peaks or "fp16" not in peaks:
        return checkpoint
    return checkpoint if fp16_unsupported(m) else "fp16"


def _resolve(m: ModelSpec, peaks: dict[str, float], dtype: str | None, fp8_marlin: bool = False) -> WeightFormat:
    q = m.quantization
    if dtype == "int4":
        return _int4_weight_only(m)
    if dtype == "fp8" and "fp8" not in peaks and fp8_marlin:
        return _fp8_weight_only(m)
    if dtype in ("fp8", "int8", "fp4"):
        return _low_bit(m, dtype)
    if dtype is not None or q is None:
        d = dtype or _auto_dtype(m, peaks)
        line = f"weights in {d}" if dtype is not None else f"weights as shipped: {m.checkpoint_dtype} (no quantization_config)" + (
            f", run in {d}: {FP16_FALLBACK}" if d != m.checkpoint_dtype else "")
        return WeightFormat(dtype or d, d, d, {}, {}, line)
    from calc.memory.weights import float8_scheme, weights_as_priced

    act = _auto_dtype(m, peaks)
    params = count_params(m).components
    groups = shipped_group_bytes(m)
    per = {c: Fraction(b, params[c]) for c, b in groups.items() if params.get(c)}
    quantized = [c for c, b in per.items() if b != dtype_bytes(act)]
    if q.method in ("fp8", "fbgemm_fp8") or (q.method == "compressed_tensors" and float8_scheme(q)):
        store, compute = "fp8", "fp8" if "fp8" in peaks else act
    elif q.method in ("mxfp4", "modelopt_nvfp4") and "fp4" in peaks:
        store, compute = "fp4", "fp4"
    else:
        store, compute = ("int8" if q.bits == 8 else "int4"), act
    how = {"fp8": "the fp8 tensor peak (W8A8 block-fp8 GEMMs)"}.get(compute, f"{compute} (weights dequantised in the kernel)")
    line = (f"{weights_as_priced(m)}; {', '.join(quantized)} streamed at "
            + ", ".join(f"{float(per[c]):.3g} B/weight" for c in quantized)
            + f" and multiplied at {how}; activations, attention and KV default in {act}{_dsa_kv_note(m)}; --dtype bf16 / "
            "fp16 prices every weight at that dtype, fp8 / int8 / int4 the blocks' weight matrices")
    # vLLM and SGLang serve integer 4-bit experts (gptq / awq / compressed-tensors wNa16) with Marlin MoE kernels
    # (calc.serving.moe.expert_gemm_rate); MXFP4 experts on Hopper run OpenAI's Triton MoE kernel instead.
    int4_experts = store == "int4" and "experts" in quantized and q.method in ("gptq", "awq", "compressed_tensors")
    return WeightFormat(q.label(), act, compute, per, {c: store for c in quantized}, line, int4_experts)
