"""NVLink bridges join pairs (H100 PCIe / NVL, RTX A6000, RTX 3090) or four GPUs (H200 NVL): a group that sits on
one bridge talks over it, a wider ring passes the PCIe hop and waits on it; GeForce cards without peer-to-peer go
through host memory. Before, a GPU without a shipped node was priced on a made-up 8-GPU node at half its bridge
figure for any TP (QA finding: h100-nvl TP 4 at 300 GB/s per direction)."""

from __future__ import annotations

import pytest

from calc.hardware.collectives import chain_p2p_time, collective_time, pcie_factor
from calc.sources.catalog import load_gpu, load_system, system_for_gpu
from calc.specs.system import SystemSpec


def test_a_pair_rings_over_its_bridge_a_wider_ring_over_pcie() -> None:
    nvl = load_system("pcie-h100-nvl")  # bridge pairs 300 GB/s per direction, PCIe Gen5 63, 5 us a step
    # ring all-reduce of 1 GB: 2 (n-1)/n x S / B + 2 (n-1) x latency
    assert collective_time("allreduce", nvl, 1e9, 2) == pytest.approx(2 * 1 / 2 * 1e9 / 300e9 + 2 * 5e-6)
    # a ring over PCIe takes its alpha-beta time / the fitted PCIe factor (calc.hardware.collectives.pcie_factor)
    assert collective_time("allreduce", nvl, 1e9, 4) == pytest.approx((2 * 3 / 4 * 1e9 / 63e9 + 6 * 5e-6) / pcie_factor())
    # a DP pair two ranks apart (stride 2) sits on two bridges: PCIe
    assert collective_time("allreduce", nvl, 1e9, 2, stride=2) == pytest.approx((1e9 / 63e9 + 2 * 5e-6) / pcie_factor())
    # H200 NVL's 4-way bridge (450 GB/s) holds a TP-4 ring, not a TP-8 one
    h200 = load_system("pcie-h200-nvl")
    assert collective_time("allreduce", h200, 1e9, 4) == pytest.approx(2 * 3 / 4 * 1e9 / 450e9 + 6 * 5e-6)
    assert collective_time("allreduce", h200, 1e9, 8) == pytest.approx((2 * 7 / 8 * 1e9 / 63e9 + 14 * 5e-6) / pcie_factor())


def test_a_pipeline_chain_crosses_bridges_over_pcie() -> None:
    nvl = load_system("pcie-h100-nvl")  # stages 0-1 and 2-3 bridged, hop 1 -> 2 over PCIe
    hops = 2 * (1e6 / 300e9 + 5e-6) + (1e6 / 63e9 + 5e-6)
    assert chain_p2p_time(nvl, 1e6, 4, 1) == pytest.approx(hops)


def test_every_bridged_or_consumer_card_has_its_node() -> None:
    found = {g: system_for_gpu(load_gpu(g)) for g in ("h100-nvl", "h200-nvl", "a6000", "rtx3090", "rtx5090")}
    assert {g: (s.intra_node_gb_s, s.bridge_gpus) for g, s in found.items()} == {
        "h100-nvl": (63, 2), "h200-nvl": (63, 4), "a6000": (31.5, 2), "rtx3090": (12.0, 2), "rtx5090": (12.0, 0)}


def test_a_bridge_needs_its_bandwidth() -> None:
    with pytest.raises(ValueError, match="bridge_gpus"):
        SystemSpec(name="n", gpu="g", intra_node_gb_s=63, inter_node_gb_s=25, bridge_gpus=2)


def test_an_expert_parallel_pair_dispatches_over_its_bridge() -> None:
    from calc.serving.assumptions import ServingAssumptions
    from calc.serving.moe import a2a_s
    from calc.sources.catalog import load_model

    m, a = load_model("mixtral-8x7b"), ServingAssumptions()
    nvl, pcie = load_system("pcie-h100-nvl"), load_system("pcie-h100-nvl").model_copy(update={"bridge_gpus": 0, "bridge_gb_s": 0})
    bridged, plain = a2a_s(m, nvl, a, 4096, 1, 2), a2a_s(m, pcie, a, 4096, 1, 2)
    # 4,096 tokens x 2 experts x 4,096 x 3 B (fp8 dispatch + bf16 combine) x 1/2 leave the GPU: 300 vs 63 GB/s
    assert bridged < plain / 3
