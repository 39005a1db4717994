"""PyTorch's caching allocator in the training peak of FSDP2 stacks (calc.memory.training.caching_allocator_cached),
the peak read by metric (peak_by_metric) and the corpus rows' published card memory (hardware.memory_gb)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from calc.memory.training import FSDP_PP, peak_by_metric, training_bytes_per_gpu
from calc.sources.catalog import load_gpu, load_model, system_for_gpu
from calc.training.cost import Efficiencies, ModelCost
from calc.training.layout import Layout
from calc.training.step import memory_per_gpu

FREED = "allocator: freed bf16 logits (best fit, loss backward)"
RS_POOL = "allocator: reduce-scatter stream pool (sharded fp32 gradients)"


def _titan_8b(**kw: object) -> dict[str, int]:
    # torchtitan Table 1 layout: Llama 3.1 8B (8,030,261,248 parameters, V = 128,256), FSDP 8, local batch 2 x 8192
    args = dict(params=8_030_261_248, tp=1, pp=1, dp=8, zero=3, micro_batch=2, seq=8192, recompute="sac", loss="fp32")
    args.update(kw)
    return training_bytes_per_gpu(load_model("llama3.1-8b"), **args)  # type: ignore[arg-type]


def test_cached_blocks_of_an_fsdp2_step() -> None:
    """Freed bf16 logits: 2 x 8192 tokens x 128,256 x 2 B = 4,202,692,608 B (the hole nll_loss's gradient leaves in the
    forward's freed 2 + 4 B per logit); reduce-scatter stream pool: fp32 sharded gradients 4 x 8,030,261,248 / 8 =
    4,015,130,624 B. Without the allocator the other parts are unchanged: the cached blocks only add."""
    with_pools, without = _titan_8b(caching_allocator=True), _titan_8b()
    assert with_pools[FREED] == 4_202_692_608
    assert with_pools[RS_POOL] == 4_015_130_624
    assert FREED not in without and RS_POOL not in without
    assert sum(with_pools.values()) - sum(without.values()) == 4_202_692_608 + 4_015_130_624


def test_no_cached_blocks_without_their_cause() -> None:
    # Megatron-Core's CE keeps its logits alive (no freed hole); ZeRO-1 keeps no FSDP2 reduce-scatter outputs
    parts = _titan_8b(caching_allocator=True, loss="megatron", zero=1)
    assert FREED not in parts and RS_POOL not in parts
    # one data-parallel rank: no reduce-scatter, no sharded gradients on a side stream
    assert RS_POOL not in _titan_8b(caching_allocator=True, dp=1)


def test_rs_pool_under_fsdp_with_pp() -> None:
    # torchtitan's FSDP2 + PP over TP 8 x PP 8 x DP 8: the rank priced is the last (its logits), 4 layers x 218,112,000
    # + the final norm 4,096 + the head 128,256 x 4,096 = 1,397,788,672 parameters, its fp32 gradient shards
    # 4 x 1,397,788,672 / (TP 8 x DP 8) = 87,361,792 B
    parts = _titan_8b(caching_allocator=True, tp=8, pp=8, dp=8, sharding=FSDP_PP, micro_batch=1, recompute="full", sp=True)
    assert parts[RS_POOL] == 4 * (4 * 218_112_000 + 4_096 + 128_256 * 4_096) // 64 == 87_361_792


def test_train_step_prices_the_allocator_for_fsdp_stacks_only() -> None:
    m, gpu = load_model("llama3.1-8b"), load_gpu("h100")
    layout = Layout(dp=8, zero=3, micro_batch=2, recompute="sac")
    fsdp = memory_per_gpu(ModelCost(m, gpu, system_for_gpu(gpu), 8192, eff=Efficiencies(stack="torchtitan", loss="fp32")),
                          layout, 1)
    megatron = memory_per_gpu(ModelCost(m, gpu, system_for_gpu(gpu), 8192, eff=Efficiencies(stack="megatron", loss="fp32")),
                              layout, 1)
    assert fsdp[RS_POOL] == 4_015_130_624 and fsdp[FREED] == 4_202_692_608
    assert not any(k.startswith("allocator:") for k in megatron)


def test_peak_by_metric() -> None:
    parts = {"weights": 10, "activations": 20, "allocator fragmentation": 3, RS_POOL: 4, "CUDA context": 5}
    assert peak_by_metric(parts, "device") == 42
    assert peak_by_metric(parts, "reserved") == 37  # torch.cuda.max_memory_reserved: no CUDA context
    assert peak_by_metric(parts, "allocated") == 30  # max_memory_allocated: no allocator blocks either
    with pytest.raises(ValueError, match="metric"):
        peak_by_metric(parts, "nvidia-smi")


def test_published_card_memory_replaces_only_the_capacity() -> None:
    """torchtitan's 2024-12 tables ran on 'H100 96GB HBM2e' (benchmarks/llama3_h100_202412_torchtitan.md): the rows
    name h100-sxm for the generation and hardware.memory_gb 96 for the card, 96e9 B; the peaks stay the SXM's."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import corpus_predict as cp
    from corpus_schema import load_corpus

    rows = [row for row, _group, _ in load_corpus() if row.id.startswith("titan-202412-")]
    assert rows
    sxm = load_gpu("h100-sxm")
    for row in rows:
        gpu = cp.row_gpu(row)
        assert gpu.memory_bytes == 96 * 10**9
        assert gpu.datasheet_peak_tflops == sxm.datasheet_peak_tflops and gpu.hbm_tb_s == sxm.hbm_tb_s
    assert cp.peak_metric("Memory(GiB) as published (torchtitan logs max_memory_reserved)") == "reserved"
    assert cp.peak_metric("torch.cuda.max_memory_allocated") == "allocated"
