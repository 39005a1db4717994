"""How a model is served: the engine and its memory/scheduling settings (the *execution* input for
serving, kept apart from the model and the hardware as calculon does).

Defaults follow the engines' own defaults:
- vLLM (vllm/config.py, EngineArgs): gpu_memory_utilization 0.9, block_size 16, max_num_seqs 256,
  max_model_len = the model's max_position_embeddings. Chunked prefill is switched on automatically
  for contexts above 32K (V0 behaviour), and then max_num_batched_tokens defaults to 2048; without
  it the profile run batches max(max_model_len, 2048) tokens.
- SGLang (python/sglang/srt/server_args.py): mem_fraction_static by TP size (0.88 at TP 1, 0.87 at 2,
  0.85 at 4, 0.81 at 8, 0.79 at 16+), chunked_prefill_size 8192 (2048 on GPUs under 25 GB).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from calc.specs import _Spec

Engine = Literal["vllm", "sglang"]

VLLM_CHUNKED_PREFILL_ABOVE = 32768  # vLLM V0 enables chunked prefill for max_model_len > 32K
VLLM_CHUNKED_BATCHED_TOKENS = 2048  # its max_num_batched_tokens default once chunked prefill is on
SGLANG_SMALL_GPU_BYTES = 25 * 10**9  # SGLang halves chunked_prefill_size below this capacity


def sglang_mem_fraction_default(tp: int) -> float:
    """SGLang's default mem_fraction_static for a TP size (server_args.py, 0.4.x)."""
    for min_tp, fraction in ((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87)):
        if tp >= min_tp:
            return fraction
    return 0.88


class EngineSettings(_Spec):
    """Engine settings; ``None`` means "the engine's own default" (resolved by the methods below)."""

    engine: Engine = "vllm"
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vLLM: fraction of device memory it may use")
    max_model_len: int | None = Field(None, ge=1, description="context limit per request (default: the model's)")
    max_num_batched_tokens: int | None = Field(None, ge=1, description="vLLM: tokens per scheduler step")
    enable_chunked_prefill: bool | None = Field(None, description="default: on above 32K context (vLLM V0)")
    max_num_seqs: int = Field(256, ge=1, description="requests running at once (vLLM max_num_seqs)")
    block_size: int = Field(16, ge=1, description="KV tokens per paged block (vLLM) / page (SGLang: 1)")
    mem_fraction_static: float | None = Field(None, gt=0, le=1, description="SGLang: weights + KV pool fraction")
    chunked_prefill_size: int | None = Field(None, ge=1, description="SGLang: prefill tokens per step")

    def context_len(self, model_max: int) -> int:
        return self.max_model_len or model_max

    def chunked(self, model_max: int) -> bool:
        if self.engine == "sglang":
            return True
        if self.enable_chunked_prefill is not None:
            return self.enable_chunked_prefill
        context = self.context_len(model_max)
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens < context:
            return True  # vLLM refuses a step budget below the context unless prefill is chunked
        return context > VLLM_CHUNKED_PREFILL_ABOVE

    def batched_tokens(self, model_max: int, gpu_memory_bytes: int) -> int:
        """Tokens in one scheduler step: the profile run's size and the per-step prefill budget."""
        if self.engine == "sglang":
            if self.chunked_prefill_size:
                return self.chunked_prefill_size
            return 2048 if gpu_memory_bytes < SGLANG_SMALL_GPU_BYTES else 8192
        if self.max_num_batched_tokens:
            return self.max_num_batched_tokens
        if self.chunked(model_max):
            return VLLM_CHUNKED_BATCHED_TOKENS
        return max(self.context_len(model_max), VLLM_CHUNKED_BATCHED_TOKENS)

    def page_tokens(self) -> int:
        """vLLM allocates whole blocks; SGLang's token pool has a page size of 1 by default."""
        return self.block_size if self.engine == "vllm" else 1

    def mem_fraction(self, tp: int) -> float:
        return self.mem_fraction_static or sglang_mem_fraction_default(tp)


def whole_blocks(tokens: int, block: int) -> int:
    """Blocks a request of ``tokens`` occupies: ceil(tokens / block)."""
    return math.ceil(tokens / block)
