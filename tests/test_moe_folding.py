"""MoE parallel folding (Megatron-Core's expert grid ETP x EP x EDP over TP x CP x DP; calc.training.layout): which
ranks form the EP group, where its all-to-all runs, the expert GEMM shapes and the expert states per GPU, each worked
by hand from megatron/core/parallel_state.py's rank order and the node's datasheet links."""

from __future__ import annotations

import pytest

from calc.errors import LLMCalcError
from calc.hardware.collectives import group_shape
from calc.memory.training import shard_states
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost
from calc.training.layout import Layout, check_training_layout

# dgx-h100: 8 GPUs per node, NVLink 450 GB/s per direction (3 us per step), one 400 Gb/s NIC per GPU = 50 GB/s
# (10 us); collectives at 80% of the link (calc.hardware.efficiency.COLLECTIVE_EFFICIENCY)
NVLINK, NVLINK_LAT, NIC, NIC_LAT, EFF = 450e9, 3e-6, 50e9, 1e-5, 0.8


def _qwen3_30b(seq: int = 4096) -> ModelCost:
    # Qwen3-30B-A3B: H 2048, 128 experts, top-8, expert FFN 768; per-batch expert load CV 0 (balanced) so the
    # all-to-all carries exactly the balanced share
    return ModelCost(load_model("qwen3-30b-a3b"), load_gpu("h100"), load_system("dgx-h100"), seq, "bf16",
                     Efficiencies(expert_load_cv=0.0))


def _ranks(tp: int, cp: int, dp: int, ep: int, etp: int) -> list[list[int]]:
    """EP groups of one stage built as Megatron-Core's expert RankGenerator (order tp-ep-dp, ETP fastest) does:
    rank = etp_rank + ETP x ep_rank + ETP x EP x edp_rank."""
    edp = tp * cp * dp // (etp * ep)
    return [[u + etp * j + etp * ep * d for j in range(ep)] for d in range(edp) for u in range(etp)]


def test_ep_group_ranks_follow_megatron_expert_rank_order() -> None:
    # TP4 DP8 (32 GPUs), EP8. ETP 1 (folding): EP groups are 8 consecutive ranks {0..7}, {8..15}, ...: one node each
    groups = _ranks(4, 1, 8, 8, 1)
    assert groups[0] == [0, 1, 2, 3, 4, 5, 6, 7] and len(groups) == 4
    assert group_shape(load_system("dgx-h100"), 8, stride=1) == (8, 1)
    # ETP = TP = 4 (Megatron's default): EP ranks 4 apart, {0, 4, ..., 28}: 2 per node over 4 nodes
    groups = _ranks(4, 1, 8, 8, 4)
    assert groups[0] == [0, 4, 8, 12, 16, 20, 24, 28] and len(groups) == 4
    assert group_shape(load_system("dgx-h100"), 8, stride=4) == (2, 4)
    assert Layout(tp=4, dp=8, ep=8, etp=1).edp == 4 and Layout(tp=4, dp=8, ep=8).edp == 1


def test_a2a_inside_a_node_over_nvlink_with_etp1() -> None:
    # T = b s = 4096 tokens per rank, the MoE layer takes the sequence-parallel slice T/t = 1024; each sends
    # R = 1024 x k 8 x H 2048 x 2 B = 33,554,432 B. One node: all-to-all = (e-1)/e R / (BW x eff) + one step of latency
    # (every peer's transfer in flight at once)
    R = 1024 * 8 * 2048 * 2
    a2a = 7 / 8 * R / (NVLINK * EFF) + NVLINK_LAT  # 81.56 + 3 us = 84.6 us
    assert a2a == pytest.approx(84.56e-6, rel=1e-3)
    lc = _qwen3_30b().layer(0, 1, 4, 1, 8, True, 1)
    assert lc.ep_fwd == pytest.approx(2 * a2a, rel=1e-9)  # dispatch + combine, no ETP gather
    assert lc.ep_bwd == lc.ep_fwd


def test_a2a_across_nodes_over_the_nic_with_etp_equal_tp() -> None:
    # Same run with ETP = TP = 4: the EP group spans 4 nodes, 2 per node. Across nodes the all-to-all is the slower of
    # the share inside the node (1/8 of R on NVLink) and the 6/8 leaving it on the NIC: 629.1 us + one 10 us step
    R = 1024 * 8 * 2048 * 2
    outside = 6 / 8 * R / (NIC * EFF) + NIC_LAT
    assert outside == pytest.approx(639.1e-6, rel=1e-3)
    # then the ETP all-gather of 4R over the 4 TP ranks of the node (and the mirror reduce-scatter in the combine):
    # 3/4 x 4R / (NVLink x eff) + 3 x 3 us = 279.6 + 9 us
    gather = 3 / 4 * 4 * R / (NVLINK * EFF) + 3 * NVLINK_LAT
    assert gather == pytest.approx(288.6e-6, rel=1e-3)
    lc = _qwen3_30b().layer(0, 1, 4, 1, 8, True, 4)
    assert lc.ep_fwd == pytest.approx(2 * outside + 2 * gather, rel=1e-9)  # 1.86 ms, 11x the folded layout's 0.17 ms
    assert _qwen3_30b().layer(0, 1, 4, 1, 8, True) == lc  # ETP defaults to TP


def test_expert_gemm_shapes_under_folding() -> None:
    # 128 experts / EP 8 = 16 local experts. ETP 1: each expert sees (T/t) k e u / E = 1024 x 8 x 8 x 1 / 128 = 512
    # tokens and keeps its whole [2048, 768] gate; ETP 4: 2048 tokens on a [2048, 192] slice (same FLOPs per rank)
    cost = _qwen3_30b()
    gate = {etp: next(g for g in cost.layer_gemms(0, 1, 4, 1, 8, etp) if g[0].endswith("gate_proj")) for etp in (1, 4)}
    assert gate[1][1:5] == (512, 768, 2048, 16)
    assert gate[4][1:5] == (2048, 192, 2048, 16)
    assert 512 * 768 == 2048 * 192


def test_expert_states_shard_over_edp() -> None:
    # DeepSeek-V3's published H100 layout: TP2 PP8 DP32 EP64 ETP1 (dgxc-benchmarking deepseek_v3/pretraining/launch.sh).
    # EDP = t d / (u e) = 2 x 32 / 64 = 1. Routed experts of P parameters, bf16 weights 2 B, Adam states 12 B:
    # weights 2P / (u p e) = 2P / 512; ZeRO-1 optimizer 12P / 512 / EDP 1
    P = 2**30
    w, _g, o = shard_states((0, 0, 0), (2 * P, 2 * P, 12 * P), tp=2, pp=8, dp=32, ep=64, zero=1, etp=1)
    assert (w, o) == (2 * P // 512, 12 * P // 512)
    # Megatron's default ETP = TP = 2 with EP 16: EDP = 2 x 32 / (2 x 16) = 2; weights 2P / (2 x 8 x 16) = 2P / 256,
    # optimizer 12P / 256 / 2
    w, _g, o = shard_states((0, 0, 0), (2 * P, 2 * P, 12 * P), tp=2, pp=8, dp=32, ep=16, zero=1)
    assert (w, o) == (2 * P // 256, 12 * P // 512)


def test_ep_may_span_tp_ranks_only_when_folded() -> None:
    m = load_model("deepseek-v3")
    with pytest.raises(LLMCalcError, match=r"EP 64 x ETP 2 = 128 must divide TP x CP x DP = 64.*--etp 1"):
        check_training_layout(m, Layout(tp=2, pp=8, dp=32, ep=64), None, 4096, 4096)
    assert check_training_layout(m, Layout(tp=2, pp=8, dp=32, ep=64, etp=1), None, 4096, 4096) == 128


def test_cli_etp(cli) -> None:
    base = ("train-step", "deepseek-v3", "--gpu", "h100", "--num-gpus", "512", "--tp", "2", "--pp", "8", "--ep", "64",
            "--sp", "--global-batch", "4096", "--seq", "4096", "--zero", "1", "--recompute", "full", "--json")
    r = cli(*base, "--etp", "1")
    assert r.code == 0 and r.json()["etp"] == 1 and "ETP1" in r.json()["layout"]
    r = cli(*base)
    assert r.code == 2 and "--etp 1" in r.err
    r = cli(*base, "--etp", "3")  # the expert FFN width 2048 does not split 3 ways
    assert r.code == 2 and "--etp" in r.err and "2048" in r.err
    r = cli("train-step", "llama3-8b", "--gpu", "h100", "--global-batch", "8", "--etp", "1")
    assert r.code == 2 and "--etp" in r.err and "no experts" in r.err
