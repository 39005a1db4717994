"""How a model is served: the engine, its version and its memory/scheduling settings (the *execution*
input for serving, kept apart from the model and the hardware as calculon does).

Defaults follow each engine's own source, by version (``engine_version``; None = the current release):
- vLLM V1 (``vllm``; the default engine from 0.8.0, the only one from 0.11): chunked prefill is always on
  (vllm/engine/arg_utils.py _set_default_args_v1). max_num_batched_tokens / max_num_seqs for the OpenAI
  server (``vllm serve``, usage_context "server") and the offline LLM class (``LLM(...)``, benchmark_throughput,
  usage_context "offline"), EngineArgs.get_batch_defaults (vllm/engine/arg_utils.py, UsageContext.OPENAI_API_SERVER /
  LLM_CLASS):
      >= 0.9: device memory >= 70 GiB and not an A100 ("H100 and MI300x") -> server 8192 / 1024, offline 16384 / 1024;
              else server 2048 / 256, offline 8192 / 256
      0.8.x:  server 2048 / 256, offline 8192 / 256 (the table's small-GPU column)
  gpu_memory_utilization 0.9, block_size 16.
- vLLM V0 (``vllm-v0``, or ``vllm`` with a version below 0.8): from 0.5.3 chunked prefill switched on automatically
  for max_model_len > 32K (vllm-project/vllm PR #6666; vllm/engine/arg_utils.py create_engine_config, "use_long_context
  = max_model_len > 32768", present in the 0.5.3 and 0.5.3.post1 sdists, absent from 0.5.2's: CUDA, no sliding
  window, no speculative model, no LoRA or prompt adapter, no prefix caching), then max_num_batched_tokens 512 up to
  0.6.4.post1 and 2048 from 0.6.5 (vllm/config.py SchedulerConfig: "It is the values that have the best balance
  between ITL and TTFT on A100", read in the 0.5.3, 0.5.4, 0.6.3.post1, 0.6.4 and 0.6.5 sdists); otherwise (and
  always before 0.5.3) max(max_model_len, 2048); max_num_seqs 256. V0 has no usage-context
  defaults (0.6.5 and later override max_num_batched_tokens by usage context for V1 only, _override_v1_engine_args).
  An explicit enable_chunked_prefill=False keeps whole-prompt steps (benchmarks/benchmark_throughput.py up to 0.6.3
  passed its store_true --enable-chunked-prefill, i.e. False, to LLM; from PR #9529, in 0.6.4, it takes EngineArgs).
- SGLang (python/sglang/srt/server_args.py):
      < 0.5.4: mem_fraction_static by TP size (0.88 at TP 1, 0.87 at 2, 0.85 at 4, 0.81 at 8, 0.79 at 16+);
               chunked_prefill_size 8192 (2048 under 25 GB)
      >= 0.5.4 (_handle_gpu_memory_settings, PR #10975): chunked_prefill_size and cuda_graph_max_bs by the
               device's memory in MiB (sglang_buckets), then, in MiB,
               reserved = 512 + 1.5 max(chunked_prefill_size, 2048) + 2 cuda_graph_max_bs + 1024 tp pp / 8
               (+ 3 cuda_graph_max_bs dp with DP attention, + 1.5 cuda_graph_max_bs dp above 300),
               at least 10240 on devices above 60 GiB;
               mem_fraction_static = round((gpu_mem - reserved) / gpu_mem, 3)
  page size 1; max_running_requests follows from the pool (sglang_max_running_requests).
- TensorRT-LLM (tensorrt_llm/llmapi/llm_args.py, builder.py BuildConfig): KvCacheConfig.free_gpu_memory_fraction
  0.9, max_num_tokens 8192, max_batch_size 2048, tokens_per_block 32, the same in the releases read (0.17, 1.0);
  the flow by version (PyTorch backend from 1.0, TensorRT engines before) and its memory accounting in
  calc.serving.trtllm_memory, with trtllm-bench's own max_batch_size / max_num_tokens heuristic for its throughput
  runs (bench_engine_settings), which a max_num_seqs / max_num_batched_tokens given here replaces.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, get_args

from pydantic import Field

from calc.specs import _Spec

Engine = Literal["vllm", "vllm-v0", "sglang", "trtllm"]


def engine_gpu_problem(engine: str, gpu: Any) -> str | None:
    """TensorRT-LLM builds CUDA kernels for NVIDIA GPUs only: why ``engine`` cannot run on ``gpu`` (a GPUSpec), else
    None. The one rule behind every serving command's --engine / --emit and calibrate's runs."""
    if engine == "trtllm" and gpu.vendor != "NVIDIA":
        return f"TensorRT-LLM runs on NVIDIA GPUs only; {gpu.name} is {gpu.vendor}'s"
    return None
Accounting = Literal["vllm-v1", "vllm-v0", "sglang", "trtllm"]


def check_accounting(accounting: str) -> str:
    """An engine accounting name (EngineSettings.accounting's), refused otherwise: an unknown one would be priced as
    vLLM V1's silently."""
    if accounting not in get_args(Accounting):
        from calc.errors import LLMCalcError

        raise LLMCalcError("accounting", f"unknown {accounting!r}; use one of {', '.join(get_args(Accounting))} "
                                         "(EngineSettings(engine=...).accounting())")
    return accounting

# The release priced when --engine-version is left out: the newest whose engine logs the measurement corpus holds
# (the fitted step overheads and the memory rows were measured on it or before). NEWEST_READ: the newest release whose
# sources the engine model has read (calc.serving.engine_memory: vLLM's sdists to 0.29.0), the newest --engine-version
# takes; a release between the two is priced by what the model read of it (its sampler, CUDA-graph estimate), with the
# defaults and fitted overheads of the releases before it.
CURRENT_VERSION: dict[str, str] = {"vllm": "0.11", "vllm-v0": "0.6", "sglang": "0.5.4", "trtllm": "1.0"}
NEWEST_READ: dict[str, str] = {**CURRENT_VERSION, "vllm": "0.29"}
VLLM_V1_FROM = (0, 8)  # VLLM_USE_V1 became the default in 0.8.0 (vllm/envs.py)
VLLM_FLASHMLA_FROM = (0, 7, 3)  # FlashMLA, and its forced 64-token KV block on Hopper (vllm-project/vllm PR #13747)
FLASHMLA_BLOCK = 64
VLLM_MEMORY_DEFAULTS_FROM = (0, 9)  # get_batch_defaults by device memory
SGLANG_HEURISTIC_FROM = (0, 5, 4)  # server_args._handle_gpu_memory_settings (PR #10975)

VLLM_CHUNKED_PREFILL_ABOVE = 32768  # vLLM V0 enables chunked prefill for max_model_len > 32K ...
VLLM_AUTO_CHUNK_FROM = (0, 5, 3)  # ... from 0.5.3 (PR #6666; in the 0.5.3 sdist); 0.5.2 profiles one whole prefill
VLLM_CHUNKED_BATCHED_TOKENS = 2048  # its max_num_batched_tokens default once chunked prefill is on (V1; V0 >= 0.6.5)
VLLM_V0_CHUNKED_BATCHED_TOKENS_OLD = 512  # V0 0.5.3 to 0.6.4.x (vllm/config.py SchedulerConfig.__init__)
VLLM_V0_CHUNK_2048_FROM = (0, 6, 5)  # SchedulerConfig.__post_init__: 2048 from 0.6.5
VLLM_BIG_GPU_BYTES = 70 * 2**30  # get_batch_defaults: "device_memory >= 70 * GiB_bytes and 'a100' not in name"
SGLANG_SMALL_GPU_BYTES = 25 * 10**9  # SGLang < 0.5.4 halves chunked_prefill_size below this capacity
TRTLLM_MAX_NUM_TOKENS = 8192
TRTLLM_MAX_BATCH_SIZE = 2048
TRTLLM_FREE_FRACTION = 0.9
TRTLLM_TOKENS_PER_BLOCK = 32


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    """(major, minor[, patch]) from a version as logs give it ("0.6.3.dev114", "~0.6.4 (V0)"); None if none."""
    if not version:
        return None
    hit = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    return tuple(int(x) for x in hit.groups() if x is not None) if hit else None


def sglang_mem_fraction_default(tp: int) -> float:
    """SGLang's default mem_fraction_static for a TP size (server_args.py, 0.4.x to 0.5.3)."""
    for min_tp, fraction in ((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87)):
        if tp >= min_tp:
            return fraction
    return 0.88


def sglang_buckets(gpu_mem_mib: float, tp: int) -> tuple[int, int]:
    """(chunked_prefill_size, cuda_graph_max_bs) SGLang >= 0.5.4 picks by the device's memory in MiB
    (server_args._handle_gpu_memory_settings; CUDA devices)."""
    small_tp = tp < 4
    for below, chunk, bs_small, bs_big in ((20, 2048, 8, 8), (35, 2048, 24, 80), (60, 4096, 32, 160),
                                           (90, 8192, 256, 512), (160, 8192, 256, 512)):
        if gpu_mem_mib < below * 1024:
            return chunk, bs_small if small_tp else bs_big
    return 16384, 512


SGLANG_MIN_REQ_SLOTS, SGLANG_MAX_REQ_SLOTS = 2048, 4096  # model_runner.init_memory_pool's clamp on max_num_reqs
SGLANG_REQ_SLOTS_PER_CONTEXT = 512


def sglang_max_running_requests(pool_tokens: int, context_len: int, given: int | None = None, dp: int = 1) -> int:
    """SGLang's cap on running requests of one (data-parallel attention) worker, 0.4 - 0.5.x:

        given None:  min(pool // 2, clamp(int(pool / context_len x 512), 2048, 4096))
        given R:     R // dp (the worker's share of --max-running-requests under --enable-dp-attention)

    pool = max_total_num_tokens, the worker's KV pool in tokens. python/sglang/srt/model_executor/model_runner.py
    init_memory_pool sizes the req_to_token pool as max_num_reqs = min(max(int(max_total_num_tokens / context_len
    * 512), 2048), 4096) when --max-running-requests is not given (else that value), and the scheduler / model runner
    sets max_running_requests = min(max_total_num_tokens // 2 or the given value // dp_size, req_to_token_pool.size).
    ``context_len`` is the engine's (--context-length, else the model's window). E.g. a 1,000,000-token pool at a
    163,840-token context: min(500,000, clamp(3,125)) = 3,125; at a 4,096-token context the clamp gives 4,096.

    >>> sglang_max_running_requests(1_000_000, 163_840), sglang_max_running_requests(1_000_000, 4096)
    (3125, 4096)
    >>> sglang_max_running_requests(3000, 131_072), sglang_max_running_requests(10**6, 8192, given=512, dp=2)
    (1500, 256)
    """
    if given:
        return max(given // dp, 1)
    slots = min(max(int(pool_tokens / context_len * SGLANG_REQ_SLOTS_PER_CONTEXT), SGLANG_MIN_REQ_SLOTS),
                SGLANG_MAX_REQ_SLOTS)
    return max(min(pool_tokens // 2, slots), 0)


def sglang_heuristic_fraction(gpu_mem_mib: float, tp: int, pp: int, chunk: int, graph_bs: int, dp: int = 1,
                              dp_attention: bool = False) -> float:
    """mem_fraction_static of SGLang >= 0.5.4 (server_args._handle_gpu_memory_settings), all in MiB:
    reserved = 512 + 1.5 max(chunk, 2048) + 2 graph_bs + 1024 tp pp / 8 [+ 3 graph_bs dp, + 1.5 graph_bs dp
    above 300 with DP attention], at least 10240 above 60 GiB; round((gpu_mem - reserved) / gpu_mem, 3)."""
    reserved = 512 + max(chunk, 2048) * 1.5 + graph_bs * 2 + tp * pp / 8 * 1024
    if dp_attention:
        reserved += graph_bs * dp * 3 + (graph_bs * dp * 1.5 if graph_bs > 300 else 0)
    if gpu_mem_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((gpu_mem_mib - reserved) / gpu_mem_mib, 3)


DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # vLLM CacheConfig.gpu_memory_utilization

class EngineSettings(_Spec):
    """Engine settings; ``None`` means "the engine's own default" (resolved by the methods below)."""

    engine: Engine = "vllm"
    engine_version: str | None = Field(None, description="release whose defaults apply (default: the current one)")
    gpu_memory_utilization: float = Field(DEFAULT_GPU_MEMORY_UTILIZATION, gt=0, le=1,
                                          description="vLLM: fraction of device memory it may use")
    max_model_len: int | None = Field(None, ge=1, description="context limit per request (default: the model's)")
    max_num_batched_tokens: int | None = Field(
        None, ge=1, description="tokens per scheduler step (vLLM max_num_batched_tokens, TRT-LLM max_num_tokens)")
    enable_chunked_prefill: bool | None = Field(None, description="vLLM V0 only (V1 always chunks)")
    max_num_seqs: int | None = Field(
        None, ge=1, description="requests running at once (vLLM max_num_seqs, SGLang max_running_requests, "
                                "TRT-LLM max_batch_size); default: the engine's")
    block_size: int | None = Field(None, ge=1, description="KV tokens per paged block (vLLM 16, TRT-LLM 32, SGLang 1)")
    mem_fraction_static: float | None = Field(None, gt=0, le=1, description="SGLang: weights + KV pool fraction")
    chunked_prefill_size: int | None = Field(None, ge=1, description="SGLang: prefill tokens per step")
    free_gpu_memory_fraction: float = Field(TRTLLM_FREE_FRACTION, gt=0, le=1,
                                            description="TRT-LLM: KV share of the memory free after weights and activations")
    usage_context: Literal["server", "offline"] = Field(
        "server", description="vLLM: the OpenAI server (vllm serve) or the offline LLM class, whose batch defaults differ")

    def version(self) -> tuple[int, ...]:
        return version_tuple(self.engine_version) or version_tuple(CURRENT_VERSION[self.engine]) or (0,)

    def accounting(self) -> Accounting:
        """Whose allocation rules apply: vLLM releases before 0.8 ran V0."""
        if self.engine == "vllm":
            return "vllm-v0" if self.version() < VLLM_V1_FROM else "vllm-v1"
        return self.engine

    def refuses_short_cache(self) -> bool:
        """Whether the engine refuses to start when its KV cache holds not one request of max_model_len tokens: vLLM
        (V1 and V0) checks it at startup (vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory: "To serve at
        least one request with the models's max seq len ... larger than the available KV cache memory"); SGLang starts
        and caps a request at its pool (max_req_input_len = min(context_len - 1, max_total_num_tokens - 1)), as
        TensorRT-LLM schedules what its pool holds."""
        return self.accounting().startswith("vllm")

    def context_len(self, model_max: int) -> int:
        return self.max_model_len or model_max

    def chunked(self, model_max: int) -> bool:
        if self.accounting() != "vllm-v0":
            return True  # V1, SGLang and TRT-LLM's scheduler cap every step at their token budget
        if self.enable_chunked_prefill is not None:
            return self.enable_chunked_prefill
        context = self.context_len(model_max)
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens < context:
            return True  # vLLM refuses a step budget below the context unless prefill is chunked
        return context > VLLM_CHUNKED_PREFILL_ABOVE and self.version() >= VLLM_AUTO_CHUNK_FROM

    def _vllm_big_gpu(self, gpu_memory_bytes: int, gpu_name: str) -> bool:
        return (self.version() >= VLLM_MEMORY_DEFAULTS_FROM and gpu_memory_bytes >= VLLM_BIG_GPU_BYTES
                and "a100" not in gpu_name.lower())

    def batched_tokens(self, model_max: int, gpu_memory_bytes: int, gpu_name: str = "", tp: int = 1) -> int:
        """Tokens in one scheduler step: the profile run's size and the per-step prefill budget."""
        acc = self.accounting()
        if acc == "sglang":
            if self.chunked_prefill_size:
                return self.chunked_prefill_size
            if self.version() >= SGLANG_HEURISTIC_FROM:
                return sglang_buckets(gpu_memory_bytes / 2**20, tp)[0]
            return 2048 if gpu_memory_bytes < SGLANG_SMALL_GPU_BYTES else 8192
        if self.max_num_batched_tokens:
            return self.max_num_batched_tokens
        if acc == "trtllm":
            return TRTLLM_MAX_NUM_TOKENS
        if acc == "vllm-v1":  # get_batch_defaults: (server, offline) by GPU
            server, offline = (8192, 16384) if self._vllm_big_gpu(gpu_memory_bytes, gpu_name) else (VLLM_CHUNKED_BATCHED_TOKENS, 8192)
            return offline if self.usage_context == "offline" else server
        if self.chunked(model_max):
            return vllm_v0_chunked_batched_tokens(self.version())
        return max(self.context_len(model_max), VLLM_CHUNKED_BATCHED_TOKENS)

    def seqs(self, gpu_memory_bytes: int, gpu_name: str = "", pool_tokens: int | None = None, context_len: int = 1,
             dp: int = 1) -> int:
        """Requests running at once on one (data-parallel attention) worker: max_num_seqs as given, else the
        engine's default; SGLang's follows from its KV pool of ``pool_tokens`` at the engine's ``context_len``
        (sglang_max_running_requests; before the pool is known 2048 stands for it, as TRT-LLM's max_batch_size)."""
        acc = self.accounting()
        if acc == "sglang" and pool_tokens is not None:
            return sglang_max_running_requests(pool_tokens, context_len, self.max_num_seqs, dp)
        if self.max_num_seqs:
            return self.max_num_seqs
        if acc == "vllm-v1":
            return 1024 if self._vllm_big_gpu(gpu_memory_bytes, gpu_name) else 256
        if acc == "vllm-v0":
            return 256
        return TRTLLM_MAX_BATCH_SIZE

    def forced_page_tokens(self, m: Any = None, gpu: Any = None) -> int | None:
        """The KV block size vLLM forces whatever --block-size says: FLASHMLA_BLOCK (64) for an MLA model on Hopper from
        VLLM_FLASHMLA_FROM (vllm/platforms/cuda.py check_and_update_config: "Forcing kv cache block size to 64 for
        FlashMLA backend", FlashMLA being the default MLA backend on SM90, the only one is_flashmla_supported accepts;
        the line vLLM 0.8.3's log prints for DeepSeek-V2-Lite in users' reports); a multiple of 64 given is kept (the
        check is ``block_size % 64 != 0``). None where the block is the engine's default or the user's. Other GPUs run
        Triton MLA at the default 16 (Blackwell's CUTLASS / FlashInfer MLA blocks are not modelled here)."""
        if (m is None or gpu is None or getattr(m, "mla", None) is None or not self.engine.startswith("vllm")
                or gpu.vendor != "NVIDIA" or gpu.arch != "Hopper" or self.version() < VLLM_FLASHMLA_FROM):
            return None
        return FLASHMLA_BLOCK

    def on(self, m: Any, gpu: Any) -> EngineSettings:
        """These settings as the engine runs ``m`` on ``gpu``: the KV block it forces (forced_page_tokens) written in
        as block_size, unless the given --block-size is a multiple of it (kept); else unchanged."""
        forced = self.forced_page_tokens(m, gpu)
        if forced and not (self.block_size and self.block_size % forced == 0):
            return self.model_copy(update={"block_size": forced})
        return self

    def page_tokens(self) -> int:
        """Tokens per KV page: vLLM 16, TRT-LLM 32 (tokens_per_block), SGLang 1 (page_size); --block-size where
        given (the block vLLM forces for an MLA model on Hopper: ``on``)."""
        if self.block_size:
            return self.block_size
        return {"sglang": 1, "trtllm": TRTLLM_TOKENS_PER_BLOCK}.get(self.accounting(), 16)

    def mem_fraction(self, tp: int, gpu_memory_bytes: int = 0, pp: int = 1) -> float:
        """SGLang's mem_fraction_static: as given, else the default of its version."""
        if self.mem_fraction_static:
            return self.mem_fraction_static
        if self.version() >= SGLANG_HEURISTIC_FROM and gpu_memory_bytes:
            mib = gpu_memory_bytes / 2**20
            chunk, graph_bs = sglang_buckets(mib, tp)
            return sglang_heuristic_fraction(mib, tp, pp, self.chunked_prefill_size or chunk, graph_bs)
        return sglang_mem_fraction_default(tp)


def vllm_v0_chunked_batched_tokens(version: tuple[int, ...]) -> int:
    """vLLM V0's max_num_batched_tokens when chunked prefill is on and none is given (vllm/config.py
    SchedulerConfig, single-step scheduling): 512 before 0.6.5, 2048 from 0.6.5."""
    return VLLM_CHUNKED_BATCHED_TOKENS if version >= VLLM_V0_CHUNK_2048_FROM else VLLM_V0_CHUNKED_BATCHED_TOKENS_OLD


def whole_blocks(tokens: int, block: int) -> int:
    """Blocks a request of ``tokens`` occupies: ceil(tokens / block)."""
    return math.ceil(tokens / block)
