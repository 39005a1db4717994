"""Which decode-attention kernel a vLLM build runs on AMD GPUs, and how often it reads the KV cache.

A decode step reads every sequence's cached K and V. A GQA-aware kernel reads each KV head once for the whole group
of query heads that share it (FlashAttention / FlashInfer on NVIDIA; vLLM's ROCm custom paged attention,
csrc/rocm/attention.cu paged_attention_ll4mi_QKV_kernel, templated on GQA_RATIO: one workgroup per KV head, "each 4
lanes fetch 4 different qheads"). vLLM's generic paged attention (csrc/attention/attention_kernels.cu,
paged_attention_v1 / v2 at vllm-project/vllm cb3b2b9b, v0.6.3) launches one thread block per *query* head
(``grid(num_heads, num_seqs, partitions)``, ``head_idx = blockIdx.x``, ``kv_head_idx = head_idx /
num_queries_per_kv``), each streaming its KV head's blocks from HBM, so a step reads the KV cache
num_heads / num_kv_heads times (16 for Llama 3.1 405B: 128 query heads, 8 KV heads). Reuse of a block between the
thread blocks of one group through the L2 / Infinity Cache is left out (a first model).

On ROCm the custom kernel runs only within a length limit (vllm/attention/backends/rocm_flash_attn.py
``_use_rocm_custom_paged_attention``, bf16/fp16 queries, head size 64 / 128, block size 16 / 32, GQA ratio <= 16):
    upstream vLLM, from its introduction (vllm-project/vllm PR #8310, 2024-09-13, v0.6.2) through v0.9.1
        (vllm/platforms/rocm.py use_rocm_custom_paged_attention from PR #15720, v0.8.4): max_seq_len <= 32768;
    upstream v0.9.2 on (vllm/platforms/rocm.py, PR #19158): max_seq_len <= 128 x 1024;
    AMD's ROCm/vllm fork since its PR #222 ("Custom PA perf improvements", 2024-10-08; e.g. commit c9fc1608, the
        0.6.4.dev4 build of AMD's MI300X images): max_seq_len <= 128 x 1024.
Past the limit, every decode step of the batch (the test is on the batch's longest sequence) runs the generic kernel.
"""

from __future__ import annotations

from calc.specs import ModelSpec
from calc.specs.serving import version_tuple

ROCM_CUSTOM_PA_MAX_SEQ_LEN_OLD = 32768  # upstream vLLM 0.6.2 - 0.9.1
ROCM_CUSTOM_PA_MAX_SEQ_LEN = 128 * 1024  # upstream vLLM >= 0.9.2; AMD's ROCm/vllm fork since 2024-10-08
ROCM_CUSTOM_PA_RAISED = (0, 9, 2)


def rocm_custom_pa_max_seq_len(engine_version: str | None) -> int:
    """The longest sequence upstream vLLM ``engine_version`` decodes with its ROCm custom paged attention (module
    docstring); None (the current release): the raised limit. AMD's fork is not an upstream version: pass its limit.

    >>> rocm_custom_pa_max_seq_len("0.6.3.dev109+gcb3b2b9b"), rocm_custom_pa_max_seq_len("0.9.2")
    (32768, 131072)
    """
    v = version_tuple(engine_version)
    return ROCM_CUSTOM_PA_MAX_SEQ_LEN if v is None or v >= ROCM_CUSTOM_PA_RAISED else ROCM_CUSTOM_PA_MAX_SEQ_LEN_OLD


def generic_kv_reads(m: ModelSpec) -> float:
    """Times vLLM's generic paged attention reads each KV head per decode step: its query heads per KV head.

    >>> generic_kv_reads(type("M", (), {"num_heads": 128, "kv_heads": 8})())
    16.0
    """
    return m.num_heads / m.kv_heads


def vllm_decode_kv_reads(m: ModelSpec, vendor: str, engine_version: str | None, max_seq_len: int,
                         custom_pa_max_seq_len: int | None = None) -> float:
    """ServingAssumptions.decode_kv_reads for vLLM on a GPU of ``vendor`` decoding sequences up to ``max_seq_len``:
    the generic kernel's query heads per KV head on AMD past the custom kernel's limit (``custom_pa_max_seq_len``,
    else the upstream release's, rocm_custom_pa_max_seq_len), else 1. A first model: a batch that crosses the limit
    part-way through its decode is priced as past it throughout.

    >>> m = type("M", (), {"num_heads": 128, "kv_heads": 8})()
    >>> vllm_decode_kv_reads(m, "AMD", "0.6.3", 34831), vllm_decode_kv_reads(m, "AMD", "0.6.3", 34831, 131072)
    (16.0, 1.0)
    >>> vllm_decode_kv_reads(m, "AMD", "0.6.3", 4095), vllm_decode_kv_reads(m, "NVIDIA", "0.6.3", 34831)
    (1.0, 1.0)
    """
    if vendor != "AMD":
        return 1.0
    limit = custom_pa_max_seq_len if custom_pa_max_seq_len is not None else rocm_custom_pa_max_seq_len(engine_version)
    return generic_kv_reads(m) if max_seq_len > limit else 1.0
