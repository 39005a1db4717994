"""KV-cache capacity as each engine sizes it, every term explicit (calc.specs.serving: defaults by version).

vLLM V1 (``vllm``; vllm/v1/worker/gpu_worker.py determine_available_memory): load the weights, run one
profile forward of max_num_batched_tokens tokens (chunked prefill is always on) and the sampler on
min(max_num_seqs, max_num_batched_tokens) rows, then
    requested = gpu_memory_utilization x total   (total: torch.cuda.mem_get_info()[1], GPUSpec.cuda_total_bytes)
    available KV = requested - (weights + activation peak + non-torch memory [+ CUDA-graph estimate, >= 0.20])
CUDA graphs are captured after the KV cache is allocated (compile_or_warm_up_model runs after
initialize_from_config); up to 0.19 their memory sits in the 1 - gpu_memory_utilization margin, from 0.20 an
estimate profiled beforehand is subtracted (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS on by default;
ServingAssumptions.cuda_graph_gib). Which non-torch memory counts changed by release (vllm_counts_cuda_context).
    GPU KV cache size = floor(available / page bytes) x block_size tokens
    "Maximum concurrency for max_model_len tokens per request" = blocks / ceil(max_model_len / block_size)
        (vllm/v1/core/kv_cache_utils.py get_max_concurrency_for_kv_cache_config, one full-attention group)
vLLM V0 (``vllm-v0``; vllm/worker/worker.py determine_num_available_blocks): the same sum, with the profile
run of max(max_model_len, 2048) tokens unless chunked prefill is on (above 32K context); logs "# GPU blocks".
Its forward runs eagerly: the live set of llama.py by release (vllm_v0_forward_bytes_per_token).
The activation peak is the larger of the profile forward and the sampling step after it (activation_peak_bytes);
the sampler's bytes per logit follow the release's top-k / top-p code (sampler_logit_bytes). Releases read for
this accounting: the vllm sdists 0.4.1, 0.5.3.post1, 0.6.2, 0.6.3, 0.6.4.post1, 0.6.5, 0.7.2, 0.8.5, 0.9.0, 0.9.1,
0.9.2, 0.10.0, 0.10.1.1, 0.10.2, 0.11.0, 0.12.0, 0.14.0, 0.16.0, 0.17.0, 0.19.0, 0.19.1, 0.20.0, 0.21.0, 0.29.0 (PyPI).
SGLang (python/sglang/srt/model_executor/model_runner.py profile_max_num_token): total = free memory after
the CUDA context and NCCL are up; rest = (total - weights) - total x (1 - mem_fraction_static);
    max_total_num_tokens = floor(rest / KV bytes per token)  (activations live in the 1 - f margin).
TensorRT-LLM (calc.serving.trtllm_memory, by flow: PyTorch backend from 1.0, TensorRT engines before): KV =
free_gpu_memory_fraction x (total - weights - the warm-up (engine) activations at max_num_tokens - non-torch
[- the CUDA-graph pool captured before the estimation, PyTorch backend]), under attention DP with the MoE layers
on the gathered rows; "[MemUsageChange] Allocated X GiB for max tokens in paged KV cache (N)" (cpp kvCacheManager.cpp).
vLLM V1 from 0.10 with a model mixing softmax attention and state-space / linear-attention layers: the hybrid
allocator (calc.serving.hybrid_alloc: attention block raised so a page holds one layer's state, layers in
KV-cache groups, num_blocks = available // (page x layers per group), a request holds ceil(slots / B) blocks per
attention group and one per state group); from 0.9.1 the same groups for full + sliding-window / chunked attention
(16-token pages; padded groups: "GPU KV cache size" = num_blocks // groups x 16).
Admission (ours, the one rule every command uses): a request of T = prompt + output tokens holds at its
longest T - 1 KV slots (kv_slots) in whole blocks, sliding-window / chunked layers capped at their window
(the hybrid manager frees blocks outside it); max concurrency = floor(blocks x block bytes / that).
Every rank gets the same budget (the engines take the minimum over ranks; we size the busiest).
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.memory.kv import (
    auto_kv_dtype,
    indexer_bytes_per_layer_token,
    kv_cache_bytes_for_tokens,
    kv_cache_bytes_per_token,
    model_auto_kv_dtype,
    request_cache_bytes,
    sparse_mla,
    sparse_mla_layer_token_bytes,
)
from calc.memory.weights import WeightsDtype, weights_class, weights_per_gpu
from calc.model.parallel import check_layout
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions
from calc.serving.comm_memory import comm_buffer_bytes
from calc.serving.hybrid_alloc import HybridPool, hybrid_pool, local_layers_cached_whole
from calc.serving.moe import attention_ranks
from calc.serving.trtllm_memory import dummy_requests, trtllm_backend, trtllm_kv_budget
from calc.serving.weights import weight_format
from calc.serving.windows import model_as_run, whole_context_kv
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.specs.serving import EngineSettings, whole_blocks
from calc.units import GIB, dtype_bytes

ACT_DTYPE = "bf16"  # activations stay 16-bit whatever the weight dtype (fp8/int4 kernels dequantise)


class EngineMemory(BaseModel):
    """One rank's memory as the engine accounts it, in bytes, and the KV capacity that follows."""

    engine: str
    model: str
    gpu: str
    tp: int
    pp: int
    ep: int
    dtype: str
    weights_dtype: WeightsDtype = ""
    kv_dtype: str
    capacity_bytes: int
    usable_bytes: int
    weights_bytes: int
    activation_peak_bytes: int
    non_torch_bytes: int
    kv_budget_bytes: int
    kv_bytes_per_token: int
    block_size: int
    block_bytes: int
    num_gpu_blocks: int
    kv_cache_tokens: int
    max_model_len: int
    batched_tokens: int
    max_num_seqs: int  # the engine's cap on running requests (its default by version and GPU, or as given)
    chunked_prefill: bool
    tokens_per_request: int
    kv_bytes_per_request: int  # on one rank: kv_slots in whole blocks, local layers capped at their window
    shared_prefix: int
    max_concurrency: int
    window_capped: bool  # local layers hold less than the request's slots (their window)
    hybrid: HybridPool | None = None  # vLLM V1's hybrid allocator (attention + state layers), else None
    concurrency_ratio: float
    fits: bool
    log: list[str]
    assumptions: list[str]
    explain: list[str]

    @property
    def prefill_chunk(self) -> int | None:
        """The prompt tokens one step takes when the engine chunks prefill (vLLM V1, SGLang, TensorRT-LLM's
        max_num_tokens, V0 with chunked prefill): its tokens per step; None when a prompt runs in one step (V0)."""
        return self.batched_tokens if self.chunked_prefill else None


# Bytes per logit the profile run's sampling step holds at its peak. vLLM V1 (vllm/v1/worker/gpu_model_runner.py
# profile_run -> _dummy_sampler_run) samples the last token of min(max_num_seqs, max_num_batched_tokens) dummy
# requests with temperature 0.5, top_p 0.9 and top_k = vocab - 1 (every release read, 0.8.5 to 0.29.0). The bf16
# logits compute_logits returns (2 B) stay referenced while Sampler.forward makes an fp32 copy (4 B; vllm/v1/sample/
# sampler.py, apply_temperature divides it in place); then TopKTopPSampler (vllm/v1/sample/ops/topk_topp_sampler.py):
#   PyTorch-native (forward_native -> apply_top_k_top_p): logits.sort(dim=-1) writes sorted values (4 B) and int64
#     indices (8 B); ATen's CUDA sort (aten/src/ATen/native/cuda/Sort.cu sort_out_stable_cuda) also builds an int64
#     iota as the values-in (8 B) and cub::DeviceSegmentedRadixSort::SortPairs keeps alternate key / value buffers in
#     its temp storage (4 + 8 B): 2 + 4 + 4 + 8 + 8 + 12 = 38 B at the sort (the masks, softmax and scatter after it
#     hold 28 B).
#   FlashInfer (forward_cuda): from 0.10.2 flashinfer_sample hands the logits to top_k_top_p_sampling_from_logits,
#     which writes a top-k-masked copy (torch.empty_like, 4 B) and its softmax (4 B) (flashinfer 0.3.1 sampling.py):
#     2 + 4 + 4 + 4 = 14 B; 0.8.5 - 0.10.0 softmax the logits first (4 B) and sample from the probabilities in place:
#     2 + 4 + 4 = 10 B.
#   Triton masking (from 0.17.0): forward_native's apply_top_k_top_p hands batches of >= 8 rows to
#     apply_top_k_top_p_triton (vllm/v1/sample/ops/topk_topp_triton.py, new in the 0.17.0 sdist, absent from 0.16.0's;
#     vllm-project/vllm PR #33538 "[Kernel] Triton-based Top-k and Top-p sampler kernels", listed in the v0.17.0
#     release notes), which masks the fp32 logits in place (pivot search, no sort) with one cached scratch buffer of
#     min(next_power_of_2(min(SMs, rows)), SMs) x vocab fp32 (logits.new_empty, kept in _TRITON_BUFFER_CACHE); then
#     logits.softmax(dtype=float32) (4 B) and random_sample's torch.empty_like(probs).exponential_() (4 B), divided in
#     place: 2 + 4 + 4 + 4 = 14 B per logit + the buffer (sampler_scratch_bytes). Fewer than 8 rows keep the sort.
# Which one runs by release: up to 0.11 FlashInfer whenever it is installed (VLLM_USE_FLASHINFER_SAMPLER None means
# on), but the pip wheels do not install it (requirements/cuda.txt of 0.8.5 - 0.11.0 has no flashinfer-python; the
# vllm-openai Docker image does); 0.12 - 0.20 PyTorch-native (forward_native) unless VLLM_USE_FLASHINFER_SAMPLER=1
# ("Users must opt in explicitly"), its masking the sort up to 0.16 and Triton from 0.17; from 0.21 FlashInfer (envs
# default True, flashinfer-python pinned in requirements/cuda.txt).
# ServingAssumptions.vllm_flashinfer_sampler overrides the release's default. Elsewhere only the 16-bit logits are
# charged (2 B).
LOGIT_BYTES = 2
VLLM_V1_NATIVE_SAMPLER_LOGIT_BYTES = 2 + 4 + 4 + 8 + 8 + 4 + 8
VLLM_V1_TRITON_TOPK_TOPP_FROM = (0, 17)
VLLM_V1_TRITON_SAMPLER_LOGIT_BYTES = 2 + 4 + 4 + 4
VLLM_V1_TRITON_MIN_ROWS = 8  # topk_topp_sampler.py apply_top_k_top_p (0.17.0): HAS_TRITON and logits.shape[0] >= 8
FP32_BYTES = 4
VLLM_V1_FLASHINFER_SAMPLER_LOGIT_BYTES = {(0,): 2 + 4 + 4, (0, 10, 2): 2 + 4 + 4 + 4}
VLLM_V1_FLASHINFER_SAMPLER_FROM = (0, 21)

# vLLM V0's profile run (vllm/worker/model_runner.py profile_run) samples its max_num_seqs dummy sequences with
# SamplingParams(top_p=0.99, top_k=vocab - 1) (0.4.1, 0.5.3.post1, 0.6.3, 0.7.2 sdists), so Sampler.forward
# (vllm/model_executor/layers/sampler.py) runs _apply_top_k_top_p, which opens with logits.sort(dim=-1): the same
# ATen CUDA sort as V1's PyTorch-native path (comment above), which holds, besides its sorted values and int64
# indices, an int64 iota (the values-in, 8 B) and cub's alternate key / value buffers (key size + 8 B). The peak
# is at that sort:
#   <= 0.5.x (16-bit logits, no upcast; 0.4.1 and 0.5.3.post1): the caller's logits 2 + sorted values 2 + int64
#     indices 8 + iota 8 + cub's alternate keys 2 and values 8 = 30 B (the end of the function, after the sort's
#     temporaries are freed, holds 28 B: the masks 1 + 1, softmax 2, cumsum 2, scattered logits 2 on top of 20);
#   from 0.6.2 (logits = logits.to(torch.float) first; 0.6.2, 0.6.3, 0.7.2): the caller's 16-bit logits 2 + fp32
#     logits 4 + sorted values 4 + indices 8 + iota 8 + cub's alternate keys 4 and values 8 = 38 B (the end holds
#     32 B: 2 + 4 + 4 + 8 + mask 1 + softmax 4 + cumsum 4 + mask 1 + scattered logits 4).
# (The fp32 probs, logprobs and exponential noise that follow hold 2 + 4 + 4 + 4 + 4 = 18 B at most.) Releases
# between 0.5.3.post1 and 0.6.2 were not read; they are charged as the earlier ones. A fit row agrees: vLLM 0.7.2
# on 2 x RTX 4090 (vllm-project/vllm issue #13061) logs a 0.19 GiB activation peak on the rank that does not sample
# and 1.23 GiB less KV memory on the driver rank that samples 256 x 152,064 logits: ~39 B per logit with the
# forward's peak.
VLLM_V0_SAMPLER_LOGIT_BYTES = {(0,): 2 + 2 + 8 + 8 + 2 + 8, (0, 6, 2): 2 + 4 + 4 + 8 + 8 + 4 + 8}


def _since(table: dict[tuple[int, ...], int], version: tuple[int, ...]) -> int:
    """The entry of the latest release in ``table`` (first release -> value) at or before ``version``."""
    return table[max(since for since in table if version >= since)]


def vllm_flashinfer_sampler(version: tuple[int, ...], a: ServingAssumptions) -> bool:
    """Whether vLLM V1's sampler runs FlashInfer's top-k / top-p kernel: as assumed, else the release's default
    install (FlashInfer from 0.21; the PyTorch-native sort before, comments above)."""
    if a.vllm_flashinfer_sampler is not None:
        return a.vllm_flashinfer_sampler
    return version >= VLLM_V1_FLASHINFER_SAMPLER_FROM


def vllm_triton_topk_topp(version: tuple[int, ...], a: ServingAssumptions, rows: int) -> bool:
    """Whether vLLM V1's PyTorch-native sampler masks ``rows`` rows with the Triton top-k / top-p kernel (>= 0.17,
    at least 8 rows, FlashInfer not in use; comments above)."""
    return (version >= VLLM_V1_TRITON_TOPK_TOPP_FROM and rows >= VLLM_V1_TRITON_MIN_ROWS
            and not vllm_flashinfer_sampler(version, a))


def sampler_scratch_bytes(accounting: str, version: tuple[int, ...], a: ServingAssumptions, rows: int, vocab: int,
                          sms: int | None) -> int:
    """The Triton top-k / top-p kernel's cached fp32 buffer (vLLM V1 >= 0.17, topk_topp_triton.py
    apply_top_k_top_p_triton): min(next_power_of_2(min(SMs, rows)), SMs) rows of the vocabulary x 4 B; 0 elsewhere
    or where the GPU's SM count is not in the catalog."""
    if accounting != "vllm-v1" or not sms or not vllm_triton_topk_topp(version, a, rows):
        return 0
    programs = min(sms, rows)
    return min(1 << (programs - 1).bit_length(), sms) * vocab * FP32_BYTES


def _sampler_label(version: tuple[int, ...], a: ServingAssumptions, rows: int) -> str:
    if vllm_flashinfer_sampler(version, a):
        return "FlashInfer"
    return "PyTorch-native, Triton top-k/top-p (>= 0.17)" if vllm_triton_topk_topp(version, a, rows) \
        else "PyTorch-native sort"


def sampler_logit_bytes(accounting: str, version: tuple[int, ...], a: ServingAssumptions = DEFAULT_ASSUMPTIONS,
                        rows: int = VLLM_V1_TRITON_MIN_ROWS) -> int:
    """Bytes per logit the engine's profile-run sampler holds at its peak on ``rows`` rows (comments above);
    LOGIT_BYTES elsewhere."""
    if accounting == "vllm-v1":
        if vllm_flashinfer_sampler(version, a):
            return _since(VLLM_V1_FLASHINFER_SAMPLER_LOGIT_BYTES, version)
        return VLLM_V1_TRITON_SAMPLER_LOGIT_BYTES if vllm_triton_topk_topp(version, a, rows) \
            else VLLM_V1_NATIVE_SAMPLER_LOGIT_BYTES
    if accounting == "vllm-v0":
        return _since(VLLM_V0_SAMPLER_LOGIT_BYTES, version)
    return LOGIT_BYTES

# Which non-torch memory a vLLM release subtracts, read in the sdists (vllm/worker/worker.py and
# vllm/v1/worker/gpu_worker.py determine_num_available_blocks / determine_available_memory; vllm/utils memory_profiling):
#   V0 <= 0.6.3      peak = init free - free after the profile; init free is read after the CUDA context exists
#                    (torch.cuda.mem_get_info in init_device): the context is not counted, NCCL buffers are.
#   V0 0.6.4.x       peak = torch peak + (total - free - torch allocated): everything outside torch, context included.
#   V0 >= 0.6.5      memory_profiling over a baseline (total - init free, then a MemorySnapshot) taken after the
#                    context, before NCCL init: the increase above it (NCCL, workspaces), not the context.
#   V1 0.8.x, 0.9.0  as V0 0.6.4 (torch peak + total - free - torch allocated): context included.
#   V1 >= 0.9.1      memory_profiling over init_snapshot (PR #19312; the 0.9.1 sdist has it, 0.9.0 not); from 0.11.0
#                    the snapshot is taken after init_worker_distributed_environment (PR #25359), but NCCL >= 2.22
#                    connects its channels (and allocates their buffers) at the first collective
#                    (NCCL_RUNTIME_CONNECT=1 by default), inside the profile run, so the communication term stays.
VLLM_V0_TOTAL_USED_FROM = (0, 6, 4)
VLLM_V0_BASELINE_FROM = (0, 6, 5)
VLLM_V1_BASELINE_FROM = (0, 9, 1)
VLLM_GRAPH_ESTIMATE_FROM = (0, 20)  # VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS default 1 (0.20.0 sdist; 0 in 0.19.1)


def vllm_counts_cuda_context(accounting: str, version: tuple[int, ...]) -> bool:
    """Whether the engine's KV budget subtracts the CUDA context (table above); SGLang and TRT-LLM measure free
    memory after the context is up and are charged it as before (their free memory excludes it)."""
    if accounting == "vllm-v1":
        return version < VLLM_V1_BASELINE_FROM
    if accounting == "vllm-v0":
        return VLLM_V0_TOTAL_USED_FROM <= version < VLLM_V0_BASELINE_FROM
    return True


def non_torch_bytes(accounting: str, version: tuple[int, ...], ranks: int, a: ServingAssumptions,
                    gpu: GPUSpec, engine: str = "vllm") -> tuple[int, str]:
    """(bytes, line) of the non-torch memory the engine subtracts on one rank: the CUDA context and workspaces
    (cuda_context_gib) where it counts them, else only the workspaces that appear above its baseline snapshot
    (profile_non_torch_gib); + the communication buffers (calc.serving.comm_memory: NCCL's ring / tree / NVLS
    buffers and the custom all-reduce by topology, or comm_buffer_gib where given) when the model is split over
    ``ranks`` > 1 GPUs."""
    context = vllm_counts_cuda_context(accounting, version)
    first = a.cuda_context_gib if context else a.profile_non_torch_gib
    line = (f"non-torch memory {a.cuda_context_gib:g} GiB per GPU (CUDA context and workspaces)" if context else
            f"non-torch memory {a.profile_non_torch_gib:g} GiB per GPU (workspaces above the engine's baseline snapshot; "
            "the CUDA context is outside its count)")
    comm = 0
    if ranks > 1:
        comm, comm_line = comm_buffer_bytes(gpu, ranks, engine, version, a.comm_buffer_gib)
        line += " + " + comm_line
    return int(first * GIB) + comm, line


def activation_peak_bytes(m: ModelSpec, tokens: int, tp: int, logits_rows: int, logit_bytes: int = LOGIT_BYTES,
                          forward_per_token: float | None = None, sampler_scratch: int = 0) -> int:
    """Peak of the profile run of T tokens on one rank (16-bit activations), the larger of its two phases (the
    engines run them one after the other: vllm/v1/worker/gpu_model_runner.py profile_run calls _dummy_run, then
    _dummy_sampler_run on its output; V0 model_runner.profile_run runs the model, then compute_logits and sample):
      forward  T x (3H + MLP width/t) x 2  [residual, normed input, layer output before the all-reduce; gate+up
               (2I/t) and the activation (I/t) for a gated MLP]; ``forward_per_token`` bytes instead where the
               engine's own forward is counted (vLLM V0: vllm_v0_forward_bytes_per_token)
      sampling T x H x 2 (the forward's hidden states, still referenced) + n x V x ``logit_bytes`` on
               n = min(max_num_seqs, T) rows (LOGIT_BYTES for bare 16-bit logits, sampler_logit_bytes per engine)
               + ``sampler_scratch`` (the sampler's fixed buffers: sampler_scratch_bytes).
    The forward's intermediates are freed before the sampler runs, so the two do not add."""
    width = m.moe.active_width if m.moe else m.intermediate_size
    mlp = width * (3 if m.gated_mlp else 2) / tp
    qkv = (m.num_heads + 2 * m.kv_heads) * m.dim_per_head / tp
    elem = dtype_bytes(ACT_DTYPE)
    per_token = forward_per_token if forward_per_token is not None else (3 * m.hidden_size + max(mlp, qkv)) * elem
    forward = tokens * per_token
    sampling = tokens * m.hidden_size * elem + min(logits_rows, tokens) * m.vocab_size * logit_bytes + sampler_scratch
    return math.ceil(max(forward, sampling))


# vLLM V0 runs the model eagerly (no torch.compile by default), so a tensor lives as long as a Python name holds it.
# In the Llama decoder (vllm/model_executor/models/llama.py; Mistral and the other LlamaForCausalLM checkpoints run the
# same file) three [T, H] tensors are held through the MLP: the loop variable of LlamaModel.forward (the layer's input,
# normed in place by fused_add_rms_norm), the residual, and the MLP's input (the attention output, normed in place).
# LlamaMLP.forward then computes gate_up = gate_up_proj(x) [T, 2I/t], x = act_fn(gate_up) (SiluAndMul.forward_cuda
# writes a new [T, I/t] tensor), x = down_proj(x) [T, H]. Up to 0.6.3.post1 the name ``gate_up`` keeps the gate+up
# output alive through down_proj; vLLM PR #10339 ("Reduce peak memory usage of llama", 2024-11-14, first released in
# 0.6.4) rebinds x at each step, so gate_up is freed once the activation is written. With fp8 W8A8 weights
# (fbgemm_fp8 / fp8 on Hopper and Ada: w8a8_utils.apply_fp8_linear, cutlass path) each GEMM first writes an fp8 copy
# of its input (ops.scaled_fp8_quant, 1 B per element; its per-token fp32 scale, 4 B a token, is left out).
VLLM_V0_LLAMA_MLP_FREES_GATE_UP_FROM = (0, 6, 4)


def vllm_v0_forward_bytes_per_token(m: ModelSpec, tp: int, version: tuple[int, ...], fp8_mlp: bool) -> float | None:
    """Bytes per token of vLLM V0's profile forward at its peak on one rank, for a dense gated-MLP (Llama-class) model
    (comment above; e = 2 B activations, f = 1 B when the MLP GEMMs quantize their input to fp8, else 0; W = I/t;
    Q, K, V = query, key and value widths n_h d, n_kv d, n_kv d):
      gate_up GEMM    3H e + f H + 2W e
      SiluAndMul      3H e + 2W e + W e
      down_proj GEMM  3H e + W e + f W + H e       (+ 2W e for the gate_up output still held before 0.6.4)
      attention       3H e + (Q + K + V)/t e + Q/t e   [qkv output, attention output, o_proj output; an fp8 copy of
                      the qkv / o_proj input is smaller than the MLP's phases and left out]
    the largest of the four. Other V0 model files (qwen2.py, gemma2.py, granite.py in 0.6.4) still hold gate_up after
    0.6.4; the spec names no architecture, so every dense gated model is counted as llama.py runs it. MoE and
    non-gated MLPs keep activation_peak_bytes' forward (None)."""
    if m.moe or not m.gated_mlp:
        return None
    e, h = dtype_bytes(ACT_DTYPE), m.hidden_size
    f = 1 if fp8_mlp else 0
    w = m.intermediate_size / tp
    held = 3 * h * e
    gate_up = held + f * h + 2 * w * e
    silu = held + 3 * w * e
    down = held + w * e + f * w + h * e + (0 if version >= VLLM_V0_LLAMA_MLP_FREES_GATE_UP_FROM else 2 * w * e)
    attention = held + (m.num_heads * 2 + 2 * m.kv_heads) * m.dim_per_head / tp * e
    return max(gate_up, silu, down, attention)




def resolve_kv_dtype(kv_dtype: str | None, act_dtype: str, checkpoint_dtype: str = "bf16", m: ModelSpec | None = None,
                     accounting: str = "vllm-v1") -> str:
    """--kv-dtype, by default the engines' ``auto``: the activation dtype. Quantized weights (--dtype fp8 / int8 /
    int4, an FP8 checkpoint) keep 16-bit activations, so their KV stays in the checkpoint's 16-bit dtype
    (vLLM CacheConfig cache_dtype "auto" = model dtype; SGLang kv_cache_dtype "auto"; TRT-LLM KvCacheConfig
    dtype "auto"); fp8 KV only when --kv-dtype fp8 is given. int4 is refused (no engine stores an int4 KV cache).
    One exception, by engine (``accounting``, EngineSettings.accounting): vLLM V1 starts a DeepSeek-V3.2 (DSA) model's
    "auto" cache in fp8 (calc.memory.kv.model_auto_kv_dtype)."""
    if kv_dtype == "int4":
        raise LLMCalcError("--kv-dtype", "no serving engine stores its KV cache in int4; use bf16, fp16, fp8 or int8")
    if kv_dtype in ("int8", "fp32") and not accounting.startswith("trtllm"):
        # vLLM's --kv-cache-dtype takes auto, bfloat16 or an fp8 format (vllm/config/cache.py CacheDType), SGLang's auto,
        # bf16 or fp8 (server_args --kv-cache-dtype): neither starts an int8 or fp32 cache (TensorRT-LLM's INT8 KV does)
        engine = "vLLM" if accounting.startswith("vllm") else "SGLang"
        raise LLMCalcError("--kv-dtype", f"{kv_dtype}: {engine} stores its KV cache in the model's 16-bit dtype or fp8, not "
                                         f"{kv_dtype}; give --kv-dtype fp8 (or bf16), or --engine trtllm for an int8 cache")
    if kv_dtype == "fp16" and act_dtype == "bf16" and not accounting.startswith("trtllm"):
        # vLLM's --kv-cache-dtype takes auto (the model's bf16), bfloat16 or an fp8 format, SGLang's the same: no fp16
        # cache under a bf16 model (the same 2 bytes as bf16, so the answer would be bf16's under another name)
        engine = "vLLM" if accounting.startswith("vllm") else "SGLang"
        raise LLMCalcError("--kv-dtype", f"fp16: {engine} stores a bf16 model's KV cache in bf16 (--kv-cache-dtype auto) "
                                         "or fp8, not fp16; give --kv-dtype bf16 (the same 2 bytes) or fp8")
    if kv_dtype:
        return kv_dtype
    if m is not None:
        return model_auto_kv_dtype(m, act_dtype, checkpoint_dtype, accounting)
    return auto_kv_dtype(act_dtype, checkpoint_dtype)


def kv_line(m: ModelSpec, kv_dtype: str, accounting: str) -> str:
    """The assumption line of the KV cache's dtype (DeepSeek-V3.2's sparse MLA: its fp8 record and indexer key,
    calc.memory.kv.sparse_mla_layer_token_bytes)."""
    if not sparse_mla(m):
        return f"KV in {kv_dtype}" + (" with one scale per layer for K and V (negligible)" if kv_dtype == "fp8" else "")
    idx = indexer_bytes_per_layer_token(m)
    packed = sparse_mla_layer_token_bytes(m, kv_dtype)
    latent = (f"the latent in FlashMLA's sparse fp8 record ({packed - idx} B a layer: fp8 latent, fp32 scale per 128, "
              f"bf16 rope key)" if packed is not None else f"the latent in {kv_dtype}")
    why = ("; vLLM's auto for DeepSeek-V3.2 (--kv-dtype bf16 keeps it 16-bit)" if packed is not None and accounting == "vllm-v1"
           else "")
    return f"KV (sparse MLA): {latent} + the lightning indexer's fp8 key with its fp32 scale ({idx} B a layer){why}"


def engine_memory(
    m: ModelSpec, gpu: GPUSpec, *, settings: EngineSettings | None = None, tp: int = 1, pp: int = 1, ep: int = 1,
    dtype: str | None = "bf16", kv_dtype: str | None = None, tokens_per_request: int | None = None, shared_prefix: int = 0,
    assumptions: ServingAssumptions = DEFAULT_ASSUMPTIONS, capacity_bytes: int | None = None,
    draft: ModelSpec | None = None,
) -> EngineMemory:
    """KV capacity of one replica (TP x PP ranks) under vLLM's or SGLang's accounting. ``dtype`` None:
    weights as the checkpoint ships them (calc.serving.weights), KV by default in the checkpoint dtype. ``draft``: a
    speculative-decoding draft model loaded beside the target (vLLM's draft runs at the target's TP and keeps its own
    KV in the same block pool): its weights come off the budget and its KV bytes join every token's."""
    m = model_as_run(m, assumptions.attention_windows)  # the windows the engine applies (calc.serving.windows)
    draft = draft and model_as_run(draft, assumptions.attention_windows)
    s = settings or EngineSettings()
    fmt = weight_format(m, gpu, dtype)
    check_layout(m, Parallelism(tp=tp, pp=pp))
    if ep > 1 and (not m.moe or ep % tp or m.moe.num_experts % ep):
        raise LLMCalcError("--ep", f"expert parallelism needs an MoE model, EP {ep} a multiple of TP {tp} (data-parallel "
                           f"attention groups of TP ranks, calc.serving.moe) and {ep} dividing its experts")
    kv_dtype = resolve_kv_dtype(kv_dtype, fmt.act_dtype, m.checkpoint_dtype, m, s.accounting())
    # The budgets start from the device total CUDA reports (GPUSpec.cuda_total_bytes, below nvidia-smi's by the
    # driver's reserve): vLLM V1 gpu_worker.py requested_memory = gpu_memory_utilization x init_snapshot.total_memory
    # (MemorySnapshot: torch.cuda.mem_get_info()[1]); V0 worker.py total_gpu_memory of torch.cuda.mem_get_info();
    # SGLang get_available_gpu_memory and TRT-LLM KvCacheCreator read the free memory of mem_get_info. The
    # engines' size heuristics read the device's memory (SGLang get_device_memory_capacity: nvidia-smi
    # memory.total; vLLM get_batch_defaults: get_device_total_memory, the CUDA total, no threshold between the
    # two for any GPU): they take ``device``.
    cap = capacity_bytes or gpu.cuda_total_bytes
    device = capacity_bytes or gpu.memory_bytes
    max_len = s.context_len(m.max_position_embeddings)
    request = tokens_per_request or max_len
    if request > max_len:
        raise LLMCalcError("--max-model-len", f"requests of {request:,} tokens exceed the engine limit {max_len:,}; raise it")
    if shared_prefix < 0 or shared_prefix >= request:
        raise LLMCalcError("--shared-prefix", f"must be >= 0 and below the {request:,} tokens of a request")
    weights = weights_per_gpu(m, dtype, tp, pp, attention_ranks(tp, ep))  # experts / (d x t) = experts / EP
    kv_token = kv_cache_bytes_per_token(m, kv_dtype, tp, pp)
    if draft is not None:  # the draft whole on every pipeline stage's TP group (no PP of its own)
        weights += weights_per_gpu(draft, dtype, tp, 1)
        kv_token += kv_cache_bytes_per_token(draft, kv_dtype, tp, 1)
    acc = s.accounting()
    batched = s.batched_tokens(m.max_position_embeddings, device, gpu.name, tp)
    seqs = s.seqs(device, gpu.name)
    split = max(tp, ep, 2) if tp * pp * ep > 1 else 1  # the widest group a rank joins (PP alone: pairs)
    non_torch, non_torch_line = non_torch_bytes(acc, s.version(), split, assumptions, gpu, s.engine)
    if non_torch >= cap:  # only a given --reserve-gib or --comm-buffer-gib gets here: no layout can help, so it is named
        flag = "--comm-buffer-gib" if assumptions.comm_buffer_gib is not None and assumptions.comm_buffer_gib * GIB >= cap / 2 \
            else "--reserve-gib"
        raise LLMCalcError(flag, f"{non_torch / GIB:,.2f} GiB of non-torch memory per GPU is all of "
                                 f"{gpu.name}'s {cap / GIB:.2f} GiB; give less")
    graphs = int(assumptions.cuda_graph_gib * GIB) if acc == "vllm-v1" and s.version() >= VLLM_GRAPH_ESTIMATE_FROM else 0
    s = s.on(m, gpu)  # the block vLLM forces on this GPU (FlashMLA's 64 on Hopper), as the engine runs it
    page = s.page_tokens()
    block_bytes = page * kv_token
    pool = hybrid_pool(m, kv_dtype, tp, pp, s.block_size, max_len, s.version(), batched) if acc == "vllm-v1" else None
    if pool:
        page, block_bytes = pool.block_size, pool.block_bytes
    elif block_bytes == 0:  # no softmax layer (pure Mamba / linear attention): one page per request holds its state,
        # as vLLM V1 sizes a state-only model's page to max_model_len (vllm/v1/core/kv_cache_utils.py)
        page = max_len
        block_bytes = request_kv_bytes(m, request, kv_dtype, tp, pp, page)
    if acc in ("vllm-v1", "vllm-v0"):
        usable = int(s.gpu_memory_utilization * cap)
        rows = min(seqs, batched)
        logit_bytes = sampler_logit_bytes(acc, s.version(), assumptions, rows)
        scratch = sampler_scratch_bytes(acc, s.version(), assumptions, rows, m.vocab_size, gpu.sms)
        fp8_mlp = fmt.compute_dtype == "fp8" and "fp8" in gpu.datasheet_peak_tflops and (not fmt.storage or "mlp" in fmt.storage)
        v0_forward = vllm_v0_forward_bytes_per_token(m, tp, s.version(), fp8_mlp) if acc == "vllm-v0" else None
        act = activation_peak_bytes(m, batched, tp, seqs, logit_bytes, v0_forward, scratch)
        budget = usable - weights - act - non_torch - graphs
        budget_line = (f"KV budget = {s.gpu_memory_utilization:g} x {cap / GIB:.2f} GiB - weights {weights / GIB:.2f}"
                       f" - activation peak {act / GIB:.2f} - non-torch {non_torch / GIB:.2f}"
                       + (f" - CUDA-graph estimate {graphs / GIB:.2f}" if graphs else "") + f" = {budget / GIB:.2f} GiB")
        setting_line = (f"gpu_memory_utilization {s.gpu_memory_utilization:g}; profile run of {batched:,} tokens "
                        f"({'chunked prefill' if s.chunked(m.max_position_embeddings) else 'whole prompts'}), logits of "
                        f"{min(seqs, batched)} sequences"
                        + f" sampled with top-k / top-p ({logit_bytes} B per logit"
                        + (f", {_sampler_label(s.version(), assumptions, rows)}" if acc == "vllm-v1" else "")
                        + (f" + Triton buffer {scratch / GIB:.3f} GiB" if scratch else "") + ")"
                        + f"; max_num_seqs {seqs}"
                        + (f"; eager forward {v0_forward:,.0f} B a token (llama.py"
                           + (", gate+up held through down_proj before 0.6.4" if s.version() < VLLM_V0_LLAMA_MLP_FREES_GATE_UP_FROM
                              else "") + (", fp8 copies of the MLP inputs" if fp8_mlp else "") + ")" if v0_forward else "")
                        + (("; CUDA-graph memory estimated and subtracted (>= 0.20)" if graphs else
                            "; CUDA graphs captured after the KV cache, in the margin") if acc == "vllm-v1" else ""))
    elif acc == "trtllm":  # TensorRT-LLM's own accounting by flow (calc.serving.trtllm_memory)
        trt = trtllm_kv_budget(m, total=cap, weights=weights, non_torch=non_torch, fraction=s.free_gpu_memory_fraction,
                               max_num_tokens=batched, max_batch_size=seqs, tp=tp, dp=attention_ranks(tp, ep),
                               forward_peak=activation_peak_bytes(m, batched, tp, dummy_requests(batched, max_len)),
                               version=s.version(), a=assumptions)
        act, budget, usable = trt.activation, trt.budget, cap - non_torch - trt.graphs
        budget_line = trt.line
        setting_line = f"{trt.setting}; tokens_per_block {page}"
    else:
        frac = s.mem_fraction(tp, device, pp)
        total = cap - non_torch
        usable, act = int(frac * total), 0
        budget = usable - weights
        budget_line = (f"KV pool = {frac:g} x (capacity {cap / GIB:.2f} - non-torch {non_torch / GIB:.2f} GiB) - weights "
                       f"{weights / GIB:.2f} = {budget / GIB:.2f} GiB (activations live in the {1 - frac:.2f} margin)")
        setting_line = f"mem_fraction_static {frac:g}; chunked_prefill_size {batched:,}"
    blocks = max(budget // block_bytes, 0)
    tokens = pool.log_tokens(blocks) if pool else blocks * page
    if acc == "sglang":  # SGLang's cap on running requests follows from its pool (sglang_max_running_requests)
        seqs = s.seqs(device, gpu.name, pool_tokens=tokens, context_len=max_len, dp=attention_ranks(tp, ep))
        setting_line += f"; max_running_requests {seqs}"
    # Whole blocks of the request's KV slots; layers with a sliding window / attention chunk keep at most
    # their window (kv_cache_bytes_for_tokens), so a request costs less than slots x per-token bytes there.
    # The hybrid allocator with state layers runs without prefix caching (vLLM's default for hybrid models):
    # nothing is shared; a full + local attention pool shares the prefix's blocks of its full-attention groups.
    state_pool = pool is not None and pool.has_state
    shared_blocks = 0 if state_pool else shared_prefix // page
    # a release running every attention layer under one full-attention spec caches the whole context on the local
    # layers too (calc.serving.hybrid_alloc.local_layers_cached_whole); they still attend over their window
    whole = local_layers_cached_whole(m, acc, s.version())
    kv_m = whole_context_kv(m) if whole else m
    shared_bytes = pool.shared_bytes(shared_blocks * page) if pool else \
        kv_cache_bytes_for_tokens(kv_m, shared_blocks * page, kv_dtype, tp, pp)
    per_request = request_kv_bytes(kv_m, request, kv_dtype, tp, pp, page, pool) - shared_bytes
    if draft is not None:  # the draft's KV of the same tokens, in the same blocks
        per_request += request_kv_bytes(draft, request, kv_dtype, tp, 1, page)
    capped = pool.window_capped(kv_slots(request)) if pool else \
        per_request < whole_blocks(kv_slots(request), page) * block_bytes - shared_bytes
    room = blocks * block_bytes - shared_bytes
    concurrency = max(room // per_request, 0) if room > 0 else 0
    ratio = blocks / (pool.max_len_blocks() if pool else whole_blocks(max_len, page))
    fits = concurrency >= 1
    log = (pool.log() if pool else []) + _engine_log(acc, blocks, tokens, max_len, ratio, budget, block_bytes,
                                                     trtllm_backend(s.version()) if acc == "trtllm" else "")
    explain = [
        (f"device total as CUDA reports it (torch.cuda.mem_get_info) = {cap:,} B ({cap / GIB:.2f} GiB)"
         if capacity_bytes or gpu.memory_cuda_total_mib else
         f"device total = {cap:,} B ({cap / GIB:.2f} GiB): nvidia-smi's, no CUDA reading is known for {gpu.name} "
         f"(CUDA's is 0.25-0.9 GiB lower on the GPUs read, so the KV budget may be that much high)"),
        f"weights per rank (TP {tp}, PP {pp}{f', EP {ep}' if ep > 1 else ''}, {fmt.label}) = {weights:,} B "
        f"({weights / GIB:.2f} GiB)",
        budget_line,
        (pool.describe() if pool else
         f"KV bytes/token on a rank = {kv_token:,} ({kv_dtype}); block = {page} x {kv_token:,} = {block_bytes:,} B"),
        f"blocks = floor({budget:,} / {block_bytes:,}) = {blocks:,}; KV cache = {tokens:,} tokens"
        + (f" ({blocks:,} // {pool.num_groups} groups x {min(page, max_len)})" if pool else ""),
        (f"KV per request = {pool.request_blocks(kv_slots(request))} blocks x {block_bytes:,} B = {per_request:,} B "
         f"(ceil({kv_slots(request):,} slots / {page}) per full-attention group"
         + (", local groups at most their window" if capped else "") + (", one per state group" if state_pool else "")
         + ")" + (f"; shared prefix {shared_bytes:,} B stored once" if shared_bytes else "") if pool else
         f"KV per request = {per_request:,} B ({request:,} - 1 = {kv_slots(request):,} slots in whole blocks"
         f"{', local layers capped at their window' if capped else ''}"
         f"{', local layers caching the whole context as full ones' if whole else ''})"
         + (f"; shared prefix {shared_bytes:,} B stored once" if shared_bytes else "")),
        f"max concurrency for {request:,} tokens = floor(({blocks:,} x {block_bytes:,} - {shared_bytes:,}) / {per_request:,})"
        f" = {concurrency}",
    ]
    assumption_lines = [
        fmt.line,
        f"engine {s.engine} {'.'.join(map(str, s.version()))} ({acc} accounting); max_model_len {max_len:,}; "
        + setting_line,
        kv_line(m, kv_dtype, acc),
        non_torch_line,
    ] + ([f"prefix caching: {shared_prefix:,} shared tokens stored once ({shared_blocks} whole blocks"
          + (" of each full-attention group)" if pool else ")")] if shared_prefix and not state_pool else []) \
      + ([f"{s.engine} {'.'.join(map(str, s.version()))} runs every attention layer under one full-attention KV spec "
          "(no hybrid allocator for this model's local layers: vLLM V0, V1 before 0.9.1, chunked attention in 0.10.1 - "
          "0.13 unless VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1): its sliding-window / chunked layers cache "
          "the whole context and attend over their window (calc.serving.hybrid_alloc.local_layers_cached_whole)"]
         if whole else []) \
      + (["hybrid model: prefix caching off (vLLM's default for hybrid models), one state block per request"
          + (f"; the {shared_prefix:,} shared tokens are not stored once" if shared_prefix else "")] if state_pool else [])
    return EngineMemory(
        engine=s.engine, model=m.name, gpu=gpu.name, tp=tp, pp=pp, ep=ep, dtype=fmt.label,
        weights_dtype=weights_class(m, dtype), kv_dtype=kv_dtype, capacity_bytes=cap,
        usable_bytes=usable, weights_bytes=weights, activation_peak_bytes=act, non_torch_bytes=non_torch,
        kv_budget_bytes=budget, kv_bytes_per_token=kv_token, block_size=page, block_bytes=block_bytes,
        kv_bytes_per_request=per_request, num_gpu_blocks=blocks, kv_cache_tokens=tokens, max_model_len=max_len,
        batched_tokens=batched, max_num_seqs=seqs,
        chunked_prefill=s.chunked(m.max_position_embeddings), tokens_per_request=request, shared_prefix=shared_prefix,
        max_concurrency=concurrency, window_capped=capped, hybrid=pool,
        concurrency_ratio=ratio, fits=fits, log=log, assumptions=assumption_lines,
        explain=explain,
    )


def request_settings(s: EngineSettings, tokens: int) -> EngineSettings:
    """The engine as launched for requests of ``tokens`` (prompt + output): --max-model-len defaults to the
    request, as `serve --emit` launches it, so `concurrency --max-model-len T`, `latency --prompt P --output
    O` (P + O = T), `serve` and `report` size the same engine (its profile run and chunking follow from it)."""
    return s if s.max_model_len is not None else s.model_copy(update={"max_model_len": tokens})


def kv_slots(tokens: int) -> int:
    """KV slots a request of ``tokens`` = prompt + output tokens holds at its longest: tokens - 1 (at least 1).
    The prefill writes the P prompt tokens and samples the first output; each decode step writes the token
    it feeds in and samples the next, so the last sampled token is never written: P + O - 1 (vLLM V1
    KVCacheManager.allocate_slots needs num_computed_tokens + num_new_tokens = (P + O - 2) + 1 at the last
    step; vllm/v1/core/kv_cache_manager.py)."""
    return max(tokens - 1, 1)


def request_kv_bytes(m: ModelSpec, tokens: int, kv_dtype: str, tp: int, pp: int, block_size: int,
                     pool: HybridPool | None = None) -> int:
    """KV bytes one request of ``tokens`` (prompt + output) holds on the busiest rank at its longest: its
    kv_slots in whole blocks of ``block_size``, local layers capped at their window, + the constant state of
    linear-attention / state-space layers (calc.memory.kv.request_cache_bytes). Under vLLM V1's hybrid allocator
    (``pool``): its blocks from the shared pool (HybridPool.request_blocks) x block bytes. The one per-request
    rule of admission (engine_memory, `concurrency`'s table, `report`'s chart)."""
    if pool:
        return pool.request_blocks(kv_slots(tokens)) * pool.block_bytes
    return request_cache_bytes(m, whole_blocks(kv_slots(tokens), block_size) * block_size, kv_dtype, tp, pp)


def _engine_log(accounting: str, blocks: int, tokens: int, max_model_len: int, ratio: float, budget: int,
                block_bytes: int, trtllm_flow: str = "") -> list[str]:
    """The startup lines each engine prints, to hold against a real log: vLLM V1 gpu_worker.py ("Available KV
    cache memory") and kv_cache_utils._report_kv_cache_config (whose concurrency counts every layer at
    max_model_len); vLLM V0 executor_base ("# GPU blocks"); SGLang model_runner / memory_pool ("KV Cache is
    allocated. #tokens", "max_total_num_tokens="); TRT-LLM cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp, after
    the PyTorch backend's KvCacheCreator.configure_kv_cache_capacity ("Estimated max memory in KV cache : X GiB",
    tensorrt_llm/_torch/pyexecutor/_util.py)."""
    if accounting == "sglang":
        return [f"KV Cache is allocated. #tokens: {tokens}", f"max_total_num_tokens={tokens}"]
    if accounting == "trtllm":
        return ([f"Estimated max memory in KV cache : {budget / GIB:.2f} GiB"] if trtllm_flow == "pytorch" else []) + \
            [f"[MemUsageChange] Allocated {blocks * block_bytes / GIB:.2f} GiB for max tokens in paged KV cache ({tokens})."]
    concurrency = f"Maximum concurrency for {max_model_len:,} tokens per request: {ratio:.2f}x"
    if accounting == "vllm-v0":
        return [f"# GPU blocks: {blocks}, # CPU blocks: 0", concurrency]
    return [f"Available KV cache memory: {budget / GIB:.2f} GiB", f"GPU KV cache size: {tokens:,} tokens", concurrency]
