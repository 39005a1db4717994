"""Pipeline stages as Megatron-Core splits them, and a plan MFU that moves smoothly with the GPU count."""

from __future__ import annotations

import pytest

from calc.cli.options import DEFAULT_SEQ
from calc.errors import LLMCalcError
from calc.sources.catalog import load_gpu, load_model, load_system, system_for_gpu
from calc.training.cost import ModelCost
from calc.training.layout import Layout, check_training_layout, pipeline_stage_layers
from calc.training.plan import SearchSpace, best_plan, search_plans
from calc.training.step import train_step


def test_llama3_405b_stages_as_published() -> None:
    # arXiv 2407.21783 sec. 3.3.2: 126 layers on PP 16, one layer fewer on the first and last stages -> 7 + 14 x 8 + 7
    assert pipeline_stage_layers(126, 16) == [7] + [8] * 14 + [7]


def test_uneven_forms_for_32_layers() -> None:
    assert pipeline_stage_layers(32, 4) == [8, 8, 8, 8]
    # PP 3: middle ceil(32/3) = 11, the ends share 32 - 11 = 21 -> 11 and 10
    assert pipeline_stage_layers(32, 3) == [11, 11, 10]
    # PP 5: middle 7 x 3 = 21, the ends share 11 -> 6 and 5
    assert pipeline_stage_layers(32, 5) == [6, 7, 7, 7, 5]
    # PP 25: ceil = 2, the 23 middle stages alone need 46 > 32 layers: Megatron-Core cannot place it
    assert pipeline_stage_layers(32, 25) is None
    m = load_model("llama3-8b")
    with pytest.raises(LLMCalcError, match="--pp"):
        check_training_layout(m, Layout(pp=25, dp=1), 25, 8, 4096)


def test_uneven_plan_string_names_megatron_flags() -> None:
    cost = ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), 4096)
    r = train_step(cost, Layout(tp=8, pp=3, dp=1), global_batch=24)
    assert " first11 last10" in r.layout  # Megatron-Core --decoder-first/last-pipeline-num-layers 11 / 10
    assert " first" not in train_step(cost, Layout(tp=8, pp=4, dp=1), global_batch=24).layout


def test_search_enumerates_what_megatron_places() -> None:
    # 96 GPUs of a 32-layer model: PP 1, 2, 3, 4, 6, 8, 12, 16, 24, 32 divide the GPUs; Megatron-Core places all but
    # 24 (ceil 2: 22 middle stages need 44 > 32 layers); 12 is [1, 3 x 10, 1]
    cost = ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), 4096)
    r = search_plans(cost, 96, 96, top=100000)
    assert 24 not in {p.pp for p in r.plans} and {3, 12} <= {p.pp for p in r.plans}
    pinned = search_plans(cost, 40, 40, top=5, space=SearchSpace(fixed=(("pp", 5),)))
    assert all(" first6 " in p.layout + " " for p in pinned.plans)


def test_mfu_smooth_over_node_counts() -> None:
    """llama3-8b on N = 256, 264, ..., 2048 H100 (whole 8-GPU nodes, the default batch): neighbouring counts differ
    by at most 5% of the MFU (relative), 15% where the batch per GPU halves.
    Physics of the bound: one node more changes N by <= 8/256 = 3%; at a fixed layout the
    ring all-reduce per GPU, 2 (N-1)/N x P bytes, changes by < 8/N^2 (nothing). The default batch per GPU (B/N
    sequences of 4,096) only steps once, from 2 to 1 at N = 1,024, halving the micro-batch: GEMM rows 8K -> 4K
    (both past the tile plateau, a few %) and twice the per-token share of the per-step DP tail and optimizer
    (about 5% of a step) and ZeRO-3's per-micro-batch weight gathers (fixed bytes) hidden under half the compute: together
    10-15% of the MFU (the faster the GEMMs, the larger that fixed share: 11% at the fitted Hopper plateau 0.68),
    and nowhere else more than the node's 3% plus a ZeRO/micro-batch switch (<= 5%). The old search jumped
    21% <-> 58% there (PP 25 for 32 layers; 264 GPUs had no layout at all)."""
    m, g = load_model("llama3-8b"), load_gpu("h100")
    cost = ModelCost(m, g, system_for_gpu(g), DEFAULT_SEQ)
    mfus = [best_plan(cost, n).mfu for n in range(256, 2049, 8)]
    steps = {n: abs(b - a) / a for n, a, b in zip(range(264, 2049, 8), mfus, mfus[1:], strict=False)}
    assert steps.pop(1024) <= 0.15  # the batch per GPU halves here (2 048 sequences over 1 024 GPUs)
    assert max(steps.values()) <= 0.05
    assert 0.2 < min(mfus) and max(mfus) < 0.7


def test_embedding_and_loss_counted_in_the_pipeline_split() -> None:
    # Megatron-Core transformer_block.get_num_layers_to_build with --account-for-embedding-in-pipeline-split and
    # --account-for-loss-in-pipeline-split: L' = 126 + 1 + 1 = 128 over PP 16 = 8 per stage; the first stage builds
    # 8 - 1 = 7 decoder layers (the embedding is its eighth), the last 8 - 1 = 7 (the loss)
    assert pipeline_stage_layers(126, 16, embedding=True, loss=True) == [7] + [8] * 14 + [7]
    # Qwen3-235B: 94 + 2 = 96 over PP 32 = 3 per stage: [2, 3 x 30, 2]; embedding only: 95 over PP 5 = 19 -> [18, 19 x 4]
    assert pipeline_stage_layers(94, 32, embedding=True, loss=True) == [2] + [3] * 30 + [2]
    assert pipeline_stage_layers(94, 5, embedding=True) == [18] + [19] * 4
    # 128 mod 12 = 8: Megatron-Core asserts num_layers % pipeline_model_parallel_size == 0
    assert pipeline_stage_layers(126, 12, embedding=True, loss=True) is None


def test_account_for_flags_admit_one_layer_per_virtual_stage() -> None:
    # PP 16 x VPP 8 = 128 virtual stages over 126 layers: refused as plain layers (128 > 126), accepted when the
    # embedding and the loss count as layers: 128 / 16 = 8 per rank, / 8 = 1 per virtual stage (transformer_config.py:
    # the per-rank count must divide by VPP); the first virtual stage builds 1 - 1 = 0 layers (the embedding alone)
    m = load_model("llama3.1-405b")
    plain = Layout(tp=4, pp=16, vpp=8, dp=4, sp=True, zero=1)
    with pytest.raises(LLMCalcError, match="exceeds the 126 layers") as refused:
        check_training_layout(m, plain, 256, 1536, 8192)
    assert "--pp-embedding --pp-loss" in str(refused.value) and "126 + 2 = 128 slots" in str(refused.value)  # the way in
    assert check_training_layout(m, plain.with_(pp_embedding=True, pp_loss=True), 256, 1536, 8192) == 1536 // 4
    # Qwen3-235B, PP 32 x VPP 3 over 94 + 2 = 96: one layer per virtual stage
    q = load_model("qwen3-235b-a22b")
    with pytest.raises(LLMCalcError, match="exceeds the 94 layers") as refused:
        check_training_layout(q, Layout(tp=2, pp=32, vpp=3, dp=4, ep=8, etp=1, sp=True, zero=1), 256, 2048, 4096)
    assert "94 + 2 = 96 slots" in str(refused.value)
    with pytest.raises(LLMCalcError, match="exceeds the 94 layers") as refused:  # 96 + ... : no slot count divides 100
        check_training_layout(q, Layout(tp=2, pp=25, vpp=4, dp=4, ep=8, etp=1, sp=True, zero=1), 200, 2048, 4096)
    assert "--pp-embedding" not in str(refused.value)
    ok = Layout(tp=2, pp=32, vpp=3, dp=4, ep=8, etp=1, sp=True, zero=1, pp_embedding=True, pp_loss=True)
    assert check_training_layout(q, ok, 256, 2048, 4096) == 512
    # ... and PP 16 x VPP 3 = 48 does not divide 96 + ... = 128 for the 405B: Megatron's own rule refuses it
    with pytest.raises(LLMCalcError, match="must divide by PP 16 x VPP 3"):
        check_training_layout(m, plain.with_(vpp=3, pp_embedding=True, pp_loss=True), 256, 1536, 8192)


def test_account_for_flags_in_the_plan_string() -> None:
    cost = ModelCost(load_model("llama3.1-405b"), load_gpu("h100"), load_system("dgx-h100"), 4096)
    r = train_step(cost, Layout(tp=8, pp=16, dp=1, sp=True, zero=1, pp_embedding=True, pp_loss=True), global_batch=32)
    assert r.layout.endswith(" +embedding +loss")


def test_chunks_that_do_not_divide_a_stage_are_priced_by_the_fullest() -> None:
    # Llama 3 8B, 32 layers on PP 8: 4 layers a stage. VPP 2 runs chunks of 2; VPP 3 (a --pipeline-model-parallel-
    # layout only: Megatron-Core refuses 4 % 3 with its first/last flags) runs chunks of 2, 1, 1, so its warm-up and
    # cool-down wait 2 layers a step as VPP 2 does: the same bubble (p - 1) x 2/4 x t_mb, not (p - 1)/3 x t_mb.
    cost = ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), 4096)
    two = train_step(cost, Layout(pp=8, vpp=2, dp=1), global_batch=64)
    three = train_step(cost, Layout(pp=8, vpp=3, dp=1), global_batch=64)
    four = train_step(cost, Layout(pp=8, vpp=4, dp=1), global_batch=64)
    t_mb = two.compute_s / two.num_microbatches  # the same stage time in all three (no recompute, no TP/EP/CP)
    assert two.pp_bubble_s == pytest.approx(7 * t_mb / 2, rel=1e-6)
    assert three.pp_bubble_s == pytest.approx(two.pp_bubble_s, rel=1e-9)
    assert four.pp_bubble_s == pytest.approx(7 * t_mb / 4, rel=1e-6)
    assert three.layout.endswith(" layout") and not two.layout.endswith(" layout")


def test_405b_planner_no_longer_gains_from_unequal_chunks() -> None:
    # 126 layers on PP 16 (7 / 8 x 14 / 7): any VPP from 4 to 7 runs chunks of at most 2 layers, one bubble.
    m = load_model("llama3.1-405b")
    cost = ModelCost(m, load_gpu("h100"), load_system("dgx-h100"), 8192)
    lay = Layout(tp=8, pp=16, dp=64, cp=2, sp=True, zero=1, recompute="none")
    bubbles = {v: train_step(cost, lay.with_(vpp=v), global_batch=2048).pp_bubble_s for v in (4, 5, 6, 7)}
    assert max(bubbles.values()) == pytest.approx(min(bubbles.values()), rel=1e-9)
