"""Eager engine steps (no CUDA / HIP graph): the host issues every kernel of the forward one launch at a time.

With a captured graph the host submits one graph launch per step and the GPU runs the kernels back to back; eager
(vLLM ``--enforce-eager``; vLLM V0's decode past max_seq_len_to_capture; a V0 prefill, never captured) the host issues
each kernel through PyTorch's dispatcher and the driver. The launches are asynchronous, so the GPU cannot run ahead of
the host but the host does not wait for the GPU either:

    forward_eager = max(forward on the GPU, kernels x launch_s)

(the per-step scheduling overhead, ServingAssumptions.step_overhead_s, comes before the launches and adds as before).
A decode step of a large model on many GPUs is GPU-bound either way; one of a small model, or a short prefill, is
host-bound eager.

Kernels per forward, counted from vLLM's model code (vllm-project/vllm vllm/model_executor/models/llama.py at commit
0035bdf2, a V0 release of 2024: LlamaDecoderLayer.forward and LlamaAttention / LlamaMLP.forward; the o_proj and
down_proj RowParallelLinear layers all-reduce their output) as it runs each decoder layer:
    fused add + RMSNorm (input_layernorm), qkv_proj GEMM, rotary_emb, reshape_and_cache (the KV write), the attention
    kernel, o_proj GEMM, [TP all-reduce], fused add + RMSNorm (post_attention_layernorm), gate_up_proj GEMM,
    SiluAndMul, down_proj GEMM, [TP all-reduce]
i.e. per layer: every weight GEMM as the engine fuses it (calc.serving.gemms.model_gemms: 4 for a dense layer), plus
NON_GEMM_KERNELS_PER_LAYER = 6 (two norms, rotary, KV write, attention, activation), plus 2 all-reduces when TP > 1,
plus one activation-quantisation kernel before every fp8 GEMM (vllm/_custom_ops.py scaled_fp8_quant, called by
vllm/model_executor/layers/quantization/utils/w8a8_utils.py apply_fp8_linear), plus, per MoE layer, the fused-MoE
chain beside its expert GEMMs (MOE_CHAIN_KERNELS = 5: top-k softmax, align / sort, SiLU, quantise, sum of the top-k;
vllm/model_executor/layers/fused_moe/fused_moe.py fused_experts). Llama 3.1 405B (126 layers) in fp8 at TP 8:
126 x (4 GEMMs + 4 quantisations + 6 + 2) = 2,016 kernels. The embedding, final norm, head and sampler (a handful
per step) are left out.

launch_s: the host time of one eager kernel launch from PyTorch (dispatcher + driver submission), by vendor:
- NVIDIA (CUDA): 5 us. Meta's Holistic Trace Analysis documentation (facebookresearch/HolisticTraceAnalysis,
  docs/source/features/cuda_kernel_launch_stats.rst): "Usually, the launch time on the CPU side is between 5-20
  microseconds"; vLLM's kernels are thin C++ custom ops, so the low end.
- AMD (HIP): 11 us. pytorch/pytorch PR #196920 ("[ROCm] Always eagerly allocate hipBLAS(Lt) workspaces") times
  launch-bound rocBLAS GEMMs called from PyTorch on an MI308X (gfx942, the MI300X's CDNA3 die): 11.1-11.5 us per
  call for (64, 64, 64) and (256, 256, 256), "Every shape here completes in 11-17 us, so all rows are launch-bound".
Both are named assumptions (ServingAssumptions.eager_launch_s overrides them; `--enforce-eager` switches eager on).
"""

from __future__ import annotations

from calc.serving.fp8_fallback import UNFUSED_DQ_KERNELS
from calc.serving.gemms import model_gemms
from calc.serving.weights import weight_format
from calc.specs import GPUSpec, ModelSpec

NON_GEMM_KERNELS_PER_LAYER = 6  # input / post-attention RMSNorm, rotary, KV cache write, attention, activation
ALLREDUCES_PER_LAYER = 2  # after o_proj and down_proj (row-parallel), TP > 1 only
MOE_CHAIN_KERNELS = 5  # fused-MoE kernels beside the expert GEMMs, per MoE layer
LAUNCH_S = {"NVIDIA": 5e-6, "AMD": 11e-6}
LAUNCH_OTHER_S = 5e-6  # a vendor without its own figure: CUDA's


def launch_s(gpu: GPUSpec, given: float | None = None) -> float:
    """Host seconds per eager kernel launch on this GPU's vendor (module docstring), unless ``given``.

    >>> launch_s(type("G", (), {"vendor": "AMD"})()), launch_s(type("G", (), {"vendor": "NVIDIA"})(), 3e-6)
    (1.1e-05, 3e-06)
    """
    return given if given is not None else LAUNCH_S.get(gpu.vendor, LAUNCH_OTHER_S)


def forward_kernels(m: ModelSpec, gpu: GPUSpec, dtype: str | None, tp: int, unfused_dequant: bool = False) -> int:
    """Kernels one forward launches on each GPU (module docstring): weight GEMMs of every layer (fused as the engine
    runs them; routed experts one grouped GEMM per projection), one quantisation kernel before each fp8 GEMM (and
    ``unfused_dequant``: UNFUSED_DQ_KERNELS rescale / cast kernels after it, calc.serving.fp8_fallback), the six
    other kernels of a layer, two all-reduces per layer under TP, the fused-MoE chain of each MoE layer. The head is
    left out."""
    fmt = weight_format(m, gpu, dtype)
    gemms = 0
    for g in model_gemms(m)[0]:
        if g.name == "lm_head":
            continue
        quantised = fmt.gemm(gpu, g.component, 1.0)[1].startswith("fp8")
        gemms += g.layers * ((2 + (UNFUSED_DQ_KERNELS if unfused_dequant and not g.expert else 0)) if quantised else 1)
    per_layer = NON_GEMM_KERNELS_PER_LAYER + (ALLREDUCES_PER_LAYER if tp > 1 else 0)
    moe_layers = m.num_layers - m.moe.num_dense_layers if m.moe else 0
    return gemms + m.num_layers * per_layer + moe_layers * MOE_CHAIN_KERNELS
