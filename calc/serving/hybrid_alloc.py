"""vLLM V1's hybrid KV-cache allocator: one block pool shared by softmax-attention layers and state-space /
linear-attention layers (Qwen3-Next, Nemotron-H, Jamba, Falcon-H1, Bamba, Granite-4.0-H, LFM2, MiniMax-M1,
Kimi-Linear, Zamba2). Read at vllm-project/vllm commits 1936cf38 (vllm/model_executor/models/config.py),
001cabc1 (vllm/v1/core/kv_cache_utils.py), vllm/v1/kv_cache_interface.py and
vllm/v1/core/single_type_kv_cache_manager.py.

1. Block size (config.py HybridAttentionMambaModelConfig.verify_and_update_config): with a = attention bytes per
   token per layer on a rank (FullAttentionSpec(block_size=1).page_size_bytes = 2 g/t d x bytes(kv dtype); MLA:
   (r_kv + d_rope) x bytes) and s = one state layer's page (MambaSpec.page_size_bytes: conv + recurrent state of
   one request, get_mamba_state_shape_from_config / _dtype_from_config, calc.model.mixers.state_bytes),
       B = k x ceil(s / (k x a)),  k = 16 (64 for MLA attention, the MLA kernels' alignment)
   unless --block-size is larger; "Setting attention block size to B tokens ...". One page = B x a bytes; the
   state page is padded to it ("Padding mamba page size by 100 (B a - s) / s %").
2. Groups (kv_cache_utils.py get_kv_cache_groups -> _get_kv_cache_groups_uniform_page_size): layers grouped by
   spec (full attention, each sliding window, state); group size n = the smallest count, or the largest when
   largest < 1.5 x smallest (fewer padding layers); each type splits into ceil(count / n) groups, layers[i::groups].
3. Pool (get_kv_cache_config_from_groups -> get_num_blocks): n tensors (one per position in a group), each shared
   by one layer of every group; num_blocks = available // page // n_rank, n_rank = the most layers a group has on
   the rank (pipeline stages project the global groups, _project_kv_cache_groups_to_worker), the minimum over ranks.
4. Per request (single_type_kv_cache_manager.py): a full-attention group holds ceil(slots / B) blocks
   (FullAttentionManager), a sliding one those of its window (SlidingWindowManager), a state group one block
   (MambaManager: MambaSpec block_size = max_model_len, mamba_cache_mode 'none': "MambaManager should only
   allocate 1 block for each request"). A request's blocks come from the one pool.
5. Logs (_report_kv_cache_config): "GPU KV cache size: num_blocks // groups x min block size tokens" (min over the
   groups' block sizes: B, or max_model_len when shorter, the state groups' block size);
   "Maximum concurrency for L tokens per request: num_blocks / (sum over groups of blocks at L)"
   (get_max_concurrency_for_kv_cache_config; a state group counts one block, MambaSpec.max_memory_usage_bytes;
   a sliding group cdiv(min(W - 1 + max_num_batched_tokens, L), B) + 1, SlidingWindowSpec, and a chunked one
   cdiv(min(C + max_num_batched_tokens, L), B), ChunkedLocalAttentionSpec: vllm/v1/kv_cache_interface.py, 0.19.0).
Prefix caching stays off: vllm/engine/arg_utils.py defaults enable_prefix_caching False for hybrid models, so
mamba_cache_mode is 'none' (no shared-prefix blocks, one state block per request).

Attention-only hybrids (full attention mixed with sliding-window or chunked local layers: Gemma 2 / 3, gpt-oss,
Llama 4, Cohere 2, EXAONE 4) take the same grouping (steps 2 - 5) with the page of --block-size (default 16)
tokens and no state: vLLM V1 builds it from 0.9.1 (the 0.9.1 and 0.9.2 sdists' kv_cache_utils.py
_get_kv_cache_config_uniform_page_size, "GPU KV cache size" = num_blocks // len(grouped_layers) x block_size;
SchedulerConfig.disable_hybrid_kv_cache_manager defaults False and VllmConfig turns it on only off-GPU or with a KV
connector / KV events; 0.16 - 0.20 also for chunked local attention unless
VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=0, default 1 in their envs.py). Group padding is what moves the
log: Gemma 3 27B has 52 sliding and 10 full layers -> groups of 10, 6 sliding groups (8 padding layers) + 1 full,
so "GPU KV cache size" = budget / (10 pages) // 7 x 16 = budget / (70 layers' KV per token), not 62. Earlier V1
releases (not read here) are charged as one group (unify_hybrid_kv_cache_specs turns local layers into full ones).
Prefix caching keeps its default (on) for them: no state layer.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from calc.memory.kv import kv_bytes_for_layer_tokens
from calc.model.layers import attention_layers, mixer_layer_flags
from calc.model.mixers import state_bytes
from calc.model.parallel import busiest_stage_sum
from calc.specs import ModelSpec

VLLM_HYBRID_FROM = (0, 10)  # V1 runs hybrid SSM / attention models from 0.10.0 (PR #20016; earlier V1 fell back to V0)
VLLM_HYBRID_ATTENTION_FROM = (0, 9, 1)  # full + sliding / chunked groups (module docstring; in the 0.9.1 sdist)
# Chunked local attention (Llama 4) under the hybrid allocator: a ChunkedLocalAttentionSpec from 0.10.0; from 0.10.1
# VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE defaults to "0" (PR #21761, "Disable chunked local attention by
# default with llama4": VllmConfig.__post_init__ sets disable_hybrid_kv_cache_manager), "1" again from 0.14.0 (read in
# the 0.10.1, 0.11.0, 0.12.0, 0.13.0 and 0.14.0 sdists' vllm/envs.py).
VLLM_CHUNKED_SPEC_FROM = (0, 10)
VLLM_CHUNKED_OFF = ((0, 10, 1), (0, 14))
ALIGN = 16  # attention kernels' block-size multiple (FlashAttention / FlashInfer)
MLA_ALIGN = 64  # MLA backends other than CUTLASS_MLA


class KVGroup(BaseModel):
    """KV-cache groups of one layer type: ``kind`` full / sliding / chunked / state, ``window`` for local layers."""

    kind: str
    window: int | None
    layers: int
    groups: int


class HybridPool(BaseModel):
    """vLLM V1's shared block pool for a model mixing softmax-attention and state layers (one rank)."""

    block_size: int  # attention tokens per block
    attention_bytes_per_token: int  # one attention layer, one token, one rank
    state_page_bytes: int  # one state layer's state before padding
    page_bytes: int  # one layer's page: block_size x attention_bytes_per_token (the state page padded to it)
    group_size: int  # layers per KV-cache group
    rank_group_layers: int  # the most layers a group has on the busiest rank: tensors sharing a block index
    types: list[KVGroup]
    max_model_len: int
    batched_tokens: int = 0  # max_num_batched_tokens: the chunk a local group's log bound adds to its window

    @property
    def block_bytes(self) -> int:
        """Bytes one block index holds on a rank: page x layers per group."""
        return self.page_bytes * self.rank_group_layers

    @property
    def has_state(self) -> bool:
        """Whether a state-space / linear-attention group shares the pool (else full + local attention only)."""
        return any(t.kind == "state" for t in self.types)

    @property
    def num_groups(self) -> int:
        return sum(t.groups for t in self.types)

    def request_blocks(self, slots: int) -> int:
        """Blocks a request holding ``slots`` KV slots takes from the pool: ceil(slots / B) per full-attention
        group, ceil(min(those tokens, window) / B) per local group, one per state group."""
        whole = math.ceil(slots / self.block_size) * self.block_size
        per = {"state": 1}
        return sum(t.groups * per.get(t.kind, math.ceil(min(whole, t.window or whole) / self.block_size))
                   for t in self.types)

    def window_capped(self, slots: int) -> bool:
        """Whether a local group holds fewer blocks than a full one for a request of ``slots`` KV slots."""
        whole = math.ceil(slots / self.block_size)
        return any(t.window and math.ceil(min(whole * self.block_size, t.window) / self.block_size) < whole
                   for t in self.types if t.kind != "state")

    def shared_bytes(self, tokens: int) -> int:
        """Bytes a shared prefix of ``tokens`` (whole blocks) stores once with prefix caching on (attention-only
        pools): its blocks in every full-attention group; local groups keep each request's own window."""
        if self.has_state:
            return 0
        full = sum(t.groups for t in self.types if t.kind == "full")
        return tokens // self.block_size * full * self.block_bytes

    def log_tokens(self, num_blocks: int) -> int:
        """"GPU KV cache size": num_blocks // groups x the smallest block size of any group."""
        smallest = min(self.block_size, self.max_model_len) if self.has_state else self.block_size
        return num_blocks // self.num_groups * smallest

    def max_len_blocks(self) -> int:
        """Blocks per request in the "Maximum concurrency" log (max_memory_usage_bytes of each group's spec):
        a full group cdiv(max_model_len, B), a sliding one cdiv(min(W - 1 + batched, max_model_len), B) + 1, a
        chunked one cdiv(min(C + batched, max_model_len), B), a state group one block."""
        n = self.max_model_len

        def per_group(t: KVGroup) -> int:
            if t.kind == "state":
                return 1
            if t.kind == "sliding" and t.window:
                return math.ceil(min(t.window - 1 + self.batched_tokens, n) / self.block_size) + 1
            if t.kind == "chunked" and t.window:
                return math.ceil(min(t.window + self.batched_tokens, n) / self.block_size)
            return math.ceil(n / self.block_size)

        return sum(t.groups * per_group(t) for t in self.types)

    def log(self) -> list[str]:
        if not self.has_state:
            return []
        line = (f"Setting attention block size to {self.block_size} tokens to ensure that attention page size is "
                f">= mamba page size.")
        if self.page_bytes == self.state_page_bytes:
            return [line]
        pad = 100 * (self.page_bytes - self.state_page_bytes) / self.state_page_bytes
        return [line, f"Padding mamba page size by {pad:.2f}% to ensure that mamba page size and attention page "
                      f"size are exactly equal."]

    def describe(self) -> str:
        parts = ", ".join(f"{t.layers} {t.kind}{f' (window {t.window})' if t.window else ''} layers in {t.groups}"
                          for t in self.types)
        return (f"hybrid allocator: page = {self.block_size} tokens x {self.attention_bytes_per_token:,} B = "
                f"{self.page_bytes:,} B" + (f" (state {self.state_page_bytes:,} B padded)" if self.has_state else "")
                + f"; groups of {self.group_size} "
                f"layers: {parts}; block = page x {self.rank_group_layers} layers on a rank = {self.block_bytes:,} B")


def local_layers_cached_whole(m: ModelSpec, accounting: str, version: tuple[int, ...]) -> bool:
    """Whether the engine release caches the whole context on the model's local layers (sliding window, attention
    chunk) beside its full ones: it runs every attention layer under one full-attention KV spec, the local layers
    still computing over their window. vLLM V1 without the hybrid allocator for them: before 0.9.1 every release
    (vllm/v1/core/kv_cache_utils.py unify_hybrid_kv_cache_specs turns each SlidingWindowSpec into a FullAttentionSpec:
    "we do not enable any optimizations for saving KV cache memory"), and for chunked layers before 0.10 (no chunked
    spec) and from 0.10.1 to 0.13 (the hybrid manager off by default, VLLM_CHUNKED_OFF). vLLM V0's block manager keeps
    one block table a request for every layer, so a model mixing local and full layers caches the whole context there
    too (a model whose every layer is local, Mistral 7B v0.1, runs V0's sliding window). A model of one attention kind
    is never affected.

    >>> from calc.sources.catalog import load_model
    >>> m = load_model("llama4-scout")
    >>> [local_layers_cached_whole(m, "vllm-v1", v) for v in ((0, 10, 0), (0, 11), (0, 14))]
    [False, True, False]
    """
    kinds = {a.kind for a in attention_layers(m) if a.softmax}
    if "full" not in kinds or not kinds & {"sliding", "chunked"}:
        return False
    if accounting == "vllm-v0":
        return True
    if accounting != "vllm-v1":
        return False
    if version < VLLM_HYBRID_ATTENTION_FROM:
        return True
    chunked_off = version < VLLM_CHUNKED_SPEC_FROM or VLLM_CHUNKED_OFF[0] <= version < VLLM_CHUNKED_OFF[1]
    return "chunked" in kinds and chunked_off


def hybrid_pool(m: ModelSpec, kv_dtype: str, tp: int, pp: int, block_size: int | None,
                max_model_len: int, version: tuple[int, ...] = VLLM_HYBRID_FROM,
                batched_tokens: int = 0) -> HybridPool | None:
    """The pool vLLM V1 ``version`` builds for a model with both softmax-attention and state layers (>= 0.10) or
    with full and local (sliding-window / chunked) attention layers (>= 0.9.1); None for any other model (one
    attention kind keeps the one-group accounting; pure state-space models one page per request)."""
    flags = mixer_layer_flags(m)
    kinds: dict[tuple[str, int | None], list[int]] = {}
    for i, (a, state) in enumerate(zip(attention_layers(m), flags, strict=True)):
        if a.softmax:
            kinds.setdefault((a.kind, a.window), []).append(i)
        if state:
            kinds.setdefault(("state", None), []).append(i)
    has_state = ("state", None) in kinds
    if len(kinds) < 2 or (has_state and (m.mixer is None or version < VLLM_HYBRID_FROM)) \
            or (not has_state and local_layers_cached_whole(m, "vllm-v1", version)):
        return None
    a = kv_bytes_for_layer_tokens(m, 1, kv_dtype, tp)
    s = state_bytes(m.mixer, m.checkpoint_dtype, tp) if has_state else 0
    k = MLA_ALIGN if m.mla else ALIGN
    block = max(k * math.ceil(s / (k * a)), block_size or 0) if has_state else block_size or ALIGN
    counts = [len(v) for v in kinds.values()]
    size = max(counts) if max(counts) < 1.5 * min(counts) else min(counts)
    groups: list[list[int]] = []
    types = []
    for (kind, window), layers in kinds.items():
        n = math.ceil(len(layers) / size)
        groups += [layers[i::n] for i in range(n)]
        types.append(KVGroup(kind=kind, window=window, layers=len(layers), groups=n))
    # the most layers one group has on one pipeline stage (vLLM's stage split, parallel.pp_stage_layers)
    rank_layers = max(busiest_stage_sum([i in members for i in range(m.num_layers)], pp)
                      for members in map(set, groups))
    return HybridPool(block_size=block, attention_bytes_per_token=a, state_page_bytes=s, page_bytes=block * a,
                      group_size=size, rank_group_layers=rank_layers, types=types, max_model_len=max_model_len,
                      batched_tokens=batched_tokens)
