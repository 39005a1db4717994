"""TensorRT-LLM's own KV-cache accounting, by version, and trtllm-bench's engine-setting heuristic.

PyTorch backend (the LLM API / trtllm-serve / trtllm-bench default from 1.0; trtllm-bench --backend pytorch from
0.19): tensorrt_llm/_torch/pyexecutor/py_executor_creator.py (create_py_executor; stored snapshot bab0f2e and the
1.0-era executor_config form) loads the weights, builds a small KV cache for the estimation
(KvCacheCreator.try_prepare_estimation), creates the executor, whose model-engine warm-up captures the CUDA graphs
(one shared pool, largest batch = cuda_graph_config.max_batch_size), and then KvCacheCreator.configure_kv_cache_capacity
(tensorrt_llm/_torch/pyexecutor/_util.py @ 0004396) resets the peak, runs dummy context requests that fill
max_num_tokens (one set per attention-DP rank: _create_dummy_context_requests), and sizes the cache:

    peak      = torch peak (weights + activations + estimation KV) + (total - free - torch allocated)
                [the second term: CUDA context, NCCL, the CUDA-graph pool; "Memory used outside torch
                 (e.g., NCCL and CUDA graphs)"]
    KV bytes  = free_gpu_memory_fraction x (total - peak + estimation KV)          (_cal_max_memory)
              = f x (total - weights - warm-up activation peak - non-torch - CUDA-graph pool)

after which the graphs are released and captured again once the final cache is allocated (inside the 1 - f margin).
``total`` is torch.cuda.mem_get_info()[1] (GPUSpec.cuda_total_bytes).

TensorRT engine flow (releases before 1.0; e.g. v0.17 trtllm-bench build + throughput --engine_dir): the C++
executor deserialises the engine (its weights, and the activation memory TensorRT sized at build for the
max_num_tokens profile) and then KVCacheManager::calculateMaxNumBlocks (cpp/tensorrt_llm/batch_manager/
kvCacheManager.cpp, 0.x form) takes
    maxTokens = freeMemFraction x (freeMem + memoryPoolFree) / cacheSizeBytesPerToken
of the memory cudaMemGetInfo reports free: KV = f x (total - weights - engine activations - non-torch), no
CUDA-graph pool (CUDA graphs are off in that flow by default).

Attention data parallelism (enable_attention_dp, d = EP / TP ranks): every rank holds the attention, dense-MLP and
embedding weights whole and 1/EP of the routed experts (calc.memory.weights.weights_per_gpu with ep = d), its own KV
cache at the full KV-head count, and in the warm-up its MoE layers run on the d x max_num_tokens rows all-gathered
from the group (tensorrt_llm/_torch/model_config.py: moe_max_num_tokens = max_num_tokens x dp_size, so the gathered
rows are not chunked; tensorrt_llm/_torch/modules/fused_moe/fused_moe_cutlass.py forward_chunk): moe_gathered_bytes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from calc.memory.kv import kv_elements_per_token
from calc.model.params import count_params
from calc.serving.assumptions import ServingAssumptions
from calc.specs import ModelSpec
from calc.units import GIB

ACT_BYTES = 2  # 16-bit activations (bf16 / fp16) whatever the weight dtype
TRTLLM_PYTORCH_DEFAULT_FROM = (1, 0)  # LLM API backend "pytorch" by default from 1.0 (TensorRT engines before)


def trtllm_backend(version: tuple[int, ...]) -> str:
    """Which TensorRT-LLM flow a release runs by default: "pytorch" from 1.0, "tensorrt" (engine build) before."""
    return "pytorch" if version >= TRTLLM_PYTORCH_DEFAULT_FROM else "tensorrt"


def dummy_requests(max_num_tokens: int, max_seq_len: int) -> int:
    """Dummy context requests of the estimation run on one rank: prompts of min(max_num_tokens, max_seq_len - 1)
    tokens until max_num_tokens are filled (_util.py _create_dummy_context_requests); each samples one token."""
    length = max(min(max_num_tokens, max_seq_len - 1), 1)
    return math.ceil(max_num_tokens / length)


def moe_gathered_bytes(m: ModelSpec, tokens: int, dp: int) -> int:
    """Bytes one rank's MoE layer holds when its attention-DP group all-gathers d x ``tokens`` rows (fused_moe_cutlass
    forward_chunk with the CUTLASS MoE runner; 16-bit element sizes, an upper bound for an fp8 model):

        rows R = d x T;  R x H (gathered input) + R x k x (H [permuted] + 2 I_e [fc1 gate+up] + I_e [activation]
                 + H [fc2 output]) + R x H (combined output before the reduce-scatter), each x 2 B

    0 without attention DP (d = 1: the experts see the rank's own tokens, priced by the dense forward term)."""
    if not m.moe or dp <= 1:
        return 0
    rows, h = dp * tokens, m.hidden_size
    k, width = m.moe.experts_per_token, m.moe.expert_intermediate_size
    return rows * (2 * h + k * (2 * h + 3 * width)) * ACT_BYTES


def cuda_graph_pool_bytes(m: ModelSpec, batch: int, tp: int) -> int:
    """The shared CUDA-graph memory pool of the largest captured decode batch B (one token per request): the
    graph's output logits B x V x 2 B (the LM head gathers the full vocabulary on every rank) + its per-token
    intermediates B x (3H + max(MLP width, QKV width) / t) x 2 B (as calc.serving.engine_memory.activation_peak_bytes)."""
    width = m.moe.active_width if m.moe else m.intermediate_size
    mlp = width * (3 if m.gated_mlp else 2) / tp
    qkv = (m.num_heads + 2 * m.kv_heads) * m.dim_per_head / tp
    return math.ceil(batch * (m.vocab_size + 3 * m.hidden_size + max(mlp, qkv)) * ACT_BYTES)


class TrtllmBudget(NamedTuple):
    budget: int  # KV bytes on one rank
    activation: int  # warm-up / engine activation peak
    graphs: int  # CUDA-graph pool counted at the estimation
    free: int  # total - non-torch - weights - activation - graphs
    line: str
    setting: str


def trtllm_kv_budget(m: ModelSpec, *, total: int, weights: int, non_torch: int, fraction: float, max_num_tokens: int,
                     max_batch_size: int, forward_peak: int, tp: int, dp: int, version: tuple[int, ...],
                     a: ServingAssumptions) -> TrtllmBudget:
    """KV bytes of one rank under TensorRT-LLM's accounting (module docstring), by flow:
        KV = f x (total - weights - activations - non-torch - CUDA-graph pool [PyTorch backend only])
    activations = the warm-up forward of max_num_tokens tokens on the rank (``forward_peak``: calc.serving.
    engine_memory.activation_peak_bytes sampling the dummy_requests' last tokens) or, under attention DP, the
    MoE layer on the d x max_num_tokens gathered rows + the residual stream, whichever is larger;
    CUDA-graph pool = cuda_graph_pool_bytes at ServingAssumptions.trtllm_graph_batch (None: max_batch_size).
    """
    flow = trtllm_backend(version)
    act = forward_peak
    gathered = moe_gathered_bytes(m, max_num_tokens, dp)
    if gathered:
        act = max(act, gathered + 3 * max_num_tokens * m.hidden_size * ACT_BYTES)
    graph_batch = a.trtllm_graph_batch if a.trtllm_graph_batch is not None else max_batch_size
    graphs = cuda_graph_pool_bytes(m, graph_batch, tp) if flow == "pytorch" else 0
    free = total - non_torch - weights - act - graphs
    budget = int(fraction * free)
    line = (f"KV = {fraction:g} x free (total {total / GIB:.2f} - non-torch {non_torch / GIB:.2f} - weights "
            f"{weights / GIB:.2f} - {'warm-up' if flow == 'pytorch' else 'engine'} activations {act / GIB:.2f}"
            + (f" - CUDA-graph pool {graphs / GIB:.2f}" if graphs else "") + f" GiB) = {budget / GIB:.2f} GiB")
    setting = (f"{flow} flow; free_gpu_memory_fraction {fraction:g}; max_num_tokens {max_num_tokens:,}; max_batch_size "
               f"{max_batch_size}" + (f" per attention-DP rank ({dp} ranks, MoE on {dp} x {max_num_tokens:,} gathered "
                                      "rows in the warm-up)" if dp > 1 else "")
               + (f"; CUDA graphs up to batch {graph_batch} captured before the estimation" if graphs else ""))
    return TrtllmBudget(budget, act, graphs, free, line, setting)


# trtllm-bench's tuning heuristic (tensorrt_llm/bench/build/tuning.py @ 04cba88 calc_engine_setting / finetune_setting;
# bench/build/build.py @ 000a01d get_benchmark_engine_settings; bench/build/utils.py @ 7ed07f0 get_device_memory,
# the NVML total; bench/build/dataclasses.py @ 04cba88 ModelConfig.get_param_count: the sum of the safetensors
# tensors' elements, calc.memory.weights.stored_elements). BYTES_PER_ELEM is keyed by the checkpoint's QuantAlgo:
# FP8 and FP8_BLOCK_SCALES 1, NVFP4 0.5, and every other algorithm (MXFP4's W4A16 / W4A8 forms, INT4 AWQ, W8A16,
# NO_QUANT) falls to .get(quant_algo, 2).
BENCH_BYTES_PER_ELEM = {"fp8": 1.0, "nvfp4": 0.5}
BENCH_MAX_BATCH = 4096  # "Cap total batch size to avoid decoder buffer size becoming too large"
BENCH_MAX_TOKENS = 32768  # "Cap num tokens to avoid TRT activation buffer becoming too large"


def bench_finetune(kv_requests: float, isl: int, osl: int, pp: int = 1) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) from trtllm-bench's KV-request estimate (tuning.py finetune_setting,
    optimistic tuning):
        raw_bs = min(requests, 4096) / pp;  raw_tokens = min(raw_bs x (1 + ISL / OSL), 32768)
        max_bs = max(64, 32 ceil(raw_bs / 32)) below 256, 128 ceil(raw_bs / 128) below 1024, else 256 ceil(raw_bs / 256)
        max_tokens = max(2048, 256 ceil(t / 256)) below 4096, 512 ceil(t / 512) below 8192, else 1024 ceil(t / 1024)

    >>> bench_finetune(489.0, 128, 2048)  # raw_bs 489 -> 128 x 4; raw tokens 519.5 -> the 2048 floor
    (512, 2048)
    >>> bench_finetune(10_000.0, 2048, 128)  # capped at 4096 requests; 4096 x 17 tokens capped at 32768
    (4096, 32768)
    """
    raw_bs = min(kv_requests, BENCH_MAX_BATCH) / pp
    raw_tokens = min(raw_bs * (1 + isl / osl), BENCH_MAX_TOKENS)
    if raw_bs < 256:
        bs = max(64, 32 * math.ceil(raw_bs / 32))
    elif raw_bs < 1024:
        bs = 128 * math.ceil(raw_bs / 128)
    else:
        bs = 256 * math.ceil(raw_bs / 256)
    if raw_tokens < 4096:
        tokens = max(2048, 256 * math.ceil(raw_tokens / 256))
    elif raw_tokens < 8192:
        tokens = 512 * math.ceil(raw_tokens / 512)
    else:
        tokens = 1024 * math.ceil(raw_tokens / 1024)
    return bs, tokens


def bench_engine_elements(m: ModelSpec, dtype: str | None) -> tuple[int, float]:
    """(param_count, bytes per element) trtllm-bench sizes the engine with: the checkpoint's stored tensor elements
    (calc.memory.weights.stored_elements, MTP modules included as the checkpoint ships them) at its QuantAlgo's
    BYTES_PER_ELEM; ``dtype`` (a whole-model override, a checkpoint of that dtype) one element per parameter at that
    dtype's. A packed 4-bit checkpoint counts its packed bytes, not its weights: gpt-oss-120b (MXFP4 experts) is
    63,081,444,672 elements x 2 B = 117.5 GiB, which a 140 GiB H200 holds, where its 116.8 B weights x 2 B would not
    (calc_engine_setting raises when the total GPU memory is below the estimate). A format stored_elements does not
    model falls back to the parameter count."""
    from calc.memory.weights import stored_elements, weights_class

    if dtype is not None:
        return count_params(m).total_params, BENCH_BYTES_PER_ELEM.get(dtype, 2.0)
    try:
        elements = stored_elements(m, with_mtp=True)
    except ValueError:
        elements = count_params(m).total_params
    return elements, BENCH_BYTES_PER_ELEM.get(weights_class(m, None), 2.0)


def bench_kv_requests(m: ModelSpec, device_bytes: int, *, tp: int, pp: int, isl: int, osl: int, weight_dtype: str | None,
                      kv_dtype: str, fraction: float) -> float:
    """Requests of ISL + OSL tokens trtllm-bench expects the whole TP x PP group's KV cache to hold (tuning.py
    calc_engine_setting), all in GiB as it computes them:
        engine    = param_count x bytes per element (bench_engine_elements; ``weight_dtype`` None = as shipped)
        available = NVML total per GPU x tp x pp - engine;  cache = available x fraction
        per token = 2 x layers x max(tp, KV heads) x head size x KV bytes (fp8 1, else 2)
        requests  = cache / (per token x (ISL + OSL))"""
    elements, per_elem = bench_engine_elements(m, weight_dtype)
    engine = elements * per_elem
    available = device_bytes * tp * pp - engine
    heads = max(tp, m.kv_heads)
    per_token = kv_elements_per_token(m) * heads / m.kv_heads \
        * BENCH_BYTES_PER_ELEM.get(kv_dtype, 2.0)
    return available * fraction / (per_token * (isl + osl))


def bench_engine_settings(m: ModelSpec, device_bytes: int, *, tp: int, pp: int, isl: int, osl: int, weight_dtype: str | None,
                          kv_dtype: str, fraction: float, chunked_prefill: bool = False,
                          engine_build: bool = False) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) trtllm-bench runs with when neither is given: the tuning heuristic
    (bench_kv_requests, bench_finetune). The PyTorch-backend throughput run without chunked prefill (its default)
    then raises max_num_tokens to at least max ISL + max_batch_size (bench/benchmark/utils/general.py @ 0171265
    get_settings); an engine build (``engine_build``: `trtllm-bench build --dataset`, the TensorRT flow) keeps the
    heuristic's value."""
    requests = bench_kv_requests(m, device_bytes, tp=tp, pp=pp, isl=isl, osl=osl, weight_dtype=weight_dtype,
                                 kv_dtype=kv_dtype, fraction=fraction)
    bs, tokens = bench_finetune(requests, isl, osl, pp)
    if not engine_build and not chunked_prefill:
        tokens = max(tokens, isl + bs)
    return bs, tokens
