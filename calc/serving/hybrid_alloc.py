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
   (get_max_concurrency_for_kv_cache_config; a state group counts one block, MambaSpec.max_memory_usage_bytes).
Prefix caching stays off: vllm/engine/arg_utils.py defaults enable_prefix_caching False for hybrid models, so
mamba_cache_mode is 'none' (no shared-prefix blocks, one state block per request).
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from calc.memory.kv import kv_elements_per_layer_token
from calc.model.layers import attention_layers, mixer_layer_flags
from calc.model.mixers import state_bytes
from calc.model.parallel import busiest_stage_sum
from calc.specs import ModelSpec
from calc.units import exact_bytes

VLLM_HYBRID_FROM = (0, 10)  # V1 runs hybrid SSM / attention models from 0.10.0 (PR #20016; earlier V1 fell back to V0)
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

    @property
    def block_bytes(self) -> int:
        """Bytes one block index holds on a rank: page x layers per group."""
        return self.page_bytes * self.rank_group_layers

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

    def log_tokens(self, num_blocks: int) -> int:
        """"GPU KV cache size": num_blocks // groups x the smallest block size of any group."""
        smallest = min(self.block_size, self.max_model_len) if any(t.kind == "state" for t in self.types) else self.block_size
        return num_blocks // self.num_groups * smallest

    def max_len_blocks(self) -> int:
        """Blocks per request in the "Maximum concurrency" log: every attention group at max_model_len
        (cdiv(max_model_len, B); sliding groups as the engine bounds them are not modelled: capped at the window),
        one per state group."""
        return self.request_blocks(self.max_model_len)

    def log(self) -> list[str]:
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
                f"{self.page_bytes:,} B (state {self.state_page_bytes:,} B padded); groups of {self.group_size} "
                f"layers: {parts}; block = page x {self.rank_group_layers} layers on a rank = {self.block_bytes:,} B")


def hybrid_pool(m: ModelSpec, kv_dtype: str, tp: int, pp: int, block_size: int | None,
                max_model_len: int) -> HybridPool | None:
    """The pool vLLM V1 builds for a model with both softmax-attention and state layers; None for any other
    model (pure attention keeps the one-group accounting; pure state-space models one page per request)."""
    flags = mixer_layer_flags(m)
    kinds: dict[tuple[str, int | None], list[int]] = {}
    for i, (a, state) in enumerate(zip(attention_layers(m), flags, strict=True)):
        if a.softmax:
            kinds.setdefault((a.kind, a.window), []).append(i)
        if state:
            kinds.setdefault(("state", None), []).append(i)
    if m.mixer is None or ("state", None) not in kinds or len(kinds) < 2:
        return None
    a = exact_bytes(kv_elements_per_layer_token(m, tp), kv_dtype, "--kv-dtype")
    s = state_bytes(m.mixer, m.checkpoint_dtype, tp)
    k = MLA_ALIGN if m.mla else ALIGN
    block = max(k * math.ceil(s / (k * a)), block_size or 0)
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
                      group_size=size, rank_group_layers=rank_layers, types=types, max_model_len=max_model_len)
