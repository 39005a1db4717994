"""The release-specific kernels an engine runs on a GPU, as the ServingAssumptions that price them.

vLLM on AMD GPUs (the sources are in each module):
- decode attention past the ROCm custom kernel's length limit reads the KV cache once per query head
  (calc.serving.decode_attention -> ServingAssumptions.decode_kv_reads);
- a channel-scaled fp8 checkpoint (fbgemm_fp8) runs the unfused fp8 fallback before 0.7.3
  (calc.serving.fp8_fallback -> ServingAssumptions.fp8_unfused_dequant).
Other engines and NVIDIA GPUs: the assumptions unchanged. One function for the CLI and the corpus.
"""

from __future__ import annotations

from typing import Any

from calc.serving.assumptions import ServingAssumptions
from calc.serving.decode_attention import vllm_decode_kv_reads
from calc.serving.fp8_fallback import vllm_fp8_unfused
from calc.specs import GPUSpec, ModelSpec


def engine_kernels(a: ServingAssumptions, m: ModelSpec, gpu: GPUSpec, settings: Any, max_seq_len: int,
                   dtype: str | None, custom_pa_max_seq_len: int | None = None) -> ServingAssumptions:
    """``a`` with the kernels of the engine ``settings`` (an EngineSettings: engine and release) serving ``m`` on
    ``gpu`` to sequences of up to ``max_seq_len`` tokens; ``dtype`` None = the checkpoint as shipped (its
    quantization method decides the fp8 path; a --dtype fp8 override is vLLM's per-tensor dynamic fp8, fused).
    ``custom_pa_max_seq_len``: a build's own limit for the ROCm custom paged attention (AMD's fork: 131072)."""
    if settings is None or settings.engine not in ("vllm", "vllm-v0"):
        return a
    version = ".".join(str(x) for x in settings.version())
    method = m.quantization.method if m.quantization is not None and dtype is None else None
    return a.model_copy(update={
        "decode_kv_reads": vllm_decode_kv_reads(m, gpu.vendor, version, max_seq_len, custom_pa_max_seq_len),
        "fp8_unfused_dequant": vllm_fp8_unfused(gpu.vendor, version, method)})
