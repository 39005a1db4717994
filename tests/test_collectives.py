"""Collective times from hand-worked alpha-beta numbers; system catalog; link choice."""

from __future__ import annotations

import pytest

from calc.errors import LLMCalcError
from calc.hardware.collectives import (
    all_gather_time,
    all_to_all_time,
    chain_p2p_time,
    collective_time,
    group_link,
    group_shape,
    p2p_time,
    reduce_scatter_time,
    ring_allreduce_time,
    tree_allreduce_time,
)
from calc.sources.catalog import list_systems, load_gpu, load_system


def test_ring_allreduce_hand_worked() -> None:
    # 1 GB on 8 GPUs at 450 GB/s, 3 us/step: 2*7/8*1e9/450e9 = 3.8889 ms + 14*3 us = 3.9309 ms
    assert ring_allreduce_time(1e9, 8, 450, 3e-6) == pytest.approx(3.8889e-3 + 42e-6, rel=1e-4)
    # efficiency 0.8 divides the bandwidth term only: 3.8889/0.8 = 4.8611 ms
    assert ring_allreduce_time(1e9, 8, 450, 0.0, 0.8) == pytest.approx(4.8611e-3, rel=1e-4)
    assert ring_allreduce_time(1e9, 1, 450, 3e-6) == 0.0


def test_rs_ag_a2a_p2p_tree_hand_worked() -> None:
    # 256 MB over 4 GPUs at 200 GB/s: 3/4*256e6/200e9 = 0.96 ms (+3 steps x 5 us)
    assert reduce_scatter_time(256e6, 4, 200, 5e-6) == pytest.approx(0.96e-3 + 15e-6)
    assert all_gather_time(256e6, 4, 200, 5e-6) == pytest.approx(0.96e-3 + 15e-6)
    # all-to-all: the same bytes, its 3 peer transfers in flight together: one step of latency
    assert all_to_all_time(256e6, 4, 200, 5e-6) == pytest.approx(0.96e-3 + 5e-6)
    # p2p 100 MB at 50 GB/s = 2 ms + 10 us
    assert p2p_time(100e6, 50, 10e-6) == pytest.approx(2.01e-3)
    # tree: 2*S/B = 2*1e9/25e9 = 80 ms + 2*ceil(log2 64)=12 steps x 10 us
    assert tree_allreduce_time(1e9, 64, 25, 10e-6) == pytest.approx(80e-3 + 120e-6)


def test_group_shape_and_link_on_dgx_h100() -> None:
    dgx = load_system("dgx-h100")
    assert group_shape(dgx, 8) == (8, 1)
    assert group_shape(dgx, 16) == (8, 2)
    assert group_shape(dgx, 64, stride=8) == (1, 64)  # a DP group under TP 8: one GPU per node
    assert group_link(dgx, 8) == (450, 3e-6)
    assert group_link(dgx, 16) == (50, 10e-6)


def test_tp_allreduce_crossing_a_node_is_slower() -> None:
    dgx = load_system("dgx-h100")
    inside = collective_time("allreduce", dgx, 64e6, 8)
    across = collective_time("allreduce", dgx, 64e6, 16)
    # inside: 2*7/8*64e6/450e9 = 0.2489 ms + 14*3 us = 0.2909 ms
    assert inside == pytest.approx(0.24889e-3 + 42e-6, rel=1e-4)
    # across, hierarchical: 2 x RS_in(64 MB, 8) = 2*(7/8*64e6/450e9 + 7*3e-6) = 0.29089 ms
    # + AR over 2 nodes of 8 MB on 50 GB/s = 2*1/2*8e6/50e9 + 2*10e-6 = 0.18 ms  -> 0.47089 ms
    assert across == pytest.approx(0.29089e-3 + 0.18e-3, rel=1e-4)
    assert across > inside


def test_all_to_all_across_nodes_is_nic_bound() -> None:
    dgx = load_system("dgx-h100")
    # 16 GPUs on 2 nodes, 100 MB each: 8/16 of it leaves the node at 50 GB/s = 1 ms (+1 step x 10 us);
    # the 7/16 staying inside at 450 GB/s takes 0.097 ms + 21 us: the NIC share dominates.
    assert collective_time("all_to_all", dgx, 100e6, 16) == pytest.approx(1e-3 + 10e-6)
    # 128 ranks two per node over 64 nodes (EP 128 four apart): 126/128 of 40 MB leave at 50 GB/s = 0.7875 ms
    # + one 10 us step (not 63 x 10 us: every peer's transfer is in flight at once, as DeepEP's EP-128 dispatch shows)
    assert collective_time("all_to_all", dgx, 40e6, 128, stride=4) == pytest.approx(126 / 128 * 40e6 / 50e9 + 10e-6)


def test_system_catalog() -> None:
    names = {s.name for s in list_systems()}
    assert {"dgx-a100", "hgx-a800", "dgx-h100", "hgx-h800", "hgx-h200", "dgx-b200", "mi300x-platform"} <= names
    for system in list_systems():
        assert system.source and load_gpu(system.gpu).name == system.gpu
    # DGX A100: 8 x 200 Gb/s HDR = 25 GB/s per GPU per direction; NVLink3 600/2 = 300
    a100 = load_system("dgx-a100")
    assert (a100.inter_node_gb_s, a100.intra_node_gb_s) == (25, 300)
    assert load_system("hgx-h800").intra_node_gb_s == 200


def test_unknown_system_is_one_line() -> None:
    with pytest.raises(LLMCalcError, match="unknown system"):
        load_system("dgx-z900")


def test_systems_command_lists_the_catalog(cli) -> None:
    r = cli("systems", "--json")
    assert r.code == 0, r.err
    rows = r.json()
    assert {s["name"] for s in rows} >= {"dgx-h100", "hgx-h800", "mi300x-platform"}
    assert all(s["source"] and s["intra_node_gb_s"] > 0 and s["inter_node_gb_s"] > 0 for s in rows)


def test_a_chain_of_pipeline_stages_pays_each_hop_on_its_own_link():
    # dgx-h100: 8 GPUs a node, NVLink 450 GB/s + 3 us, NIC 50 GB/s + 10 us. TP 4 x PP 4 (stride 4): stages 0, 1 in
    # node 0, 2, 3 in node 1 -> hops 0->1 and 2->3 on NVLink, 1->2 on the NIC. 1 MB a hop, efficiency 1.
    dgx = load_system("dgx-h100")
    nvlink, nic = 3e-6 + 1e6 / 450e9, 10e-6 + 1e6 / 50e9
    assert chain_p2p_time(dgx, 1e6, 4, 4) == pytest.approx(2 * nvlink + nic, rel=1e-12)
    assert chain_p2p_time(dgx, 1e6, 2, 8) == pytest.approx(nic, rel=1e-12)  # TP 8 x PP 2: one node each
    assert chain_p2p_time(dgx, 1e6, 4, 2) == pytest.approx(3 * nvlink, rel=1e-12)  # TP 2 x PP 4: one node
    assert chain_p2p_time(dgx, 1e6, 1, 8) == 0.0
