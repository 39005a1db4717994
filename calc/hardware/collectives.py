"""Collective communication times (reference section 10).

Cost model (Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication operations
in MPICH", IJHPCA 19(1); the alpha-beta model): a collective on n GPUs moving S bytes takes
    steps x alpha + (bytes each GPU sends) / (B x efficiency)
with B the per-GPU, per-direction bandwidth of the slowest hop and alpha the per-step latency.
Bytes each GPU sends (NCCL docs, "Performance reported by NCCL tests": busBW = algBW x factor):
    ring all-reduce       2 (n-1)/n x S     2 (n-1) steps
    tree all-reduce       2 S               2 ceil(log2 n) steps (pipelined double binary tree, NCCL)
    reduce-scatter        (n-1)/n x S       n-1 steps      (S = the whole, unsharded buffer)
    all-gather            (n-1)/n x S       n-1 steps      (S = the gathered buffer)
    all-to-all            (n-1)/n x S       1 step         (S = what one GPU holds; peers in flight together)
    point-to-point        S                 1 step
A group spanning nodes runs hierarchically (NCCL's NVLS/tree-across-rails, Megatron's DP groups):
reduce-scatter inside the node over n_in GPUs, the collective across n_out nodes on each GPU's own NIC
with S/n_in bytes, all-gather inside the node. Efficiency (achieved busBW / link bandwidth) is a named
input; calc.hardware.efficiency holds its default and calibration can replace it.
"""

from __future__ import annotations

import math
from typing import Literal

from calc.errors import LLMCalcError
from calc.fitted import parameter
from calc.specs.system import SystemSpec

# A collective over a PCIe peer-to-peer node link (SystemSpec.pcie_link: no NVLink between the group's GPUs, not staged
# through host memory, whose node types already give the staged rate) takes its alpha-beta
# time / this factor, fitted (benchmarks/fit_corpus.py) on the fit split's serving rows whose TP or EP group runs over
# PCIe: the link rate and the per-step latency of system_specs/ are a switch's, but a ring of 8 PCIe GPUs crosses the
# host's root complexes and the CPU sockets' link, where NCCL reaches a fraction of the x16 rate (NVIDIA/nccl issue
# 1639: 8 x RTX 5090 on PCIe Gen5, 28 GB/s busBW with 8 GPUs, 35 with 4, of 63 GB/s per direction). One factor on the
# whole time (latency and bandwidth terms alike), so a step's time is affine in its inverse.
PCIE_COLLECTIVE_FACTOR: dict[str, float] = parameter("pcie_collective_factor")

Collective = Literal["allreduce", "tree_allreduce", "reduce_scatter", "all_gather", "all_to_all", "p2p"]


def ring_allreduce_seconds(num_bytes: float, tp: int, link_gb_s: float) -> float:
    """Ring all-reduce: each GPU sends and receives 2*(t-1)/t of the buffer at the per-direction
    link bandwidth (half the bidirectional figure)."""
    if tp == 1:
        return 0.0
    if link_gb_s <= 0:
        raise LLMCalcError("--gpu", "this GPU has no GPU-GPU link recorded; TP > 1 needs one")
    return 2 * (tp - 1) / tp * num_bytes / (link_gb_s / 2 * 1e9)


def _check(n: int, bw_gb_s: float, efficiency: float) -> None:
    if n < 1:
        raise LLMCalcError("--num-gpus", f"a collective needs a group of >= 1 GPU, got {n}")
    if bw_gb_s <= 0 or not 0 < efficiency <= 1:
        raise LLMCalcError("--system", f"link bandwidth must be > 0 and efficiency in (0, 1]; got {bw_gb_s}, {efficiency}")


def _alpha_beta(sent_bytes: float, steps: float, bw_gb_s: float, latency_s: float, efficiency: float) -> float:
    return steps * latency_s + sent_bytes / (bw_gb_s * 1e9 * efficiency)


def ring_allreduce_time(num_bytes: float, n: int, bw_gb_s: float, latency_s: float = 0.0, efficiency: float = 1.0) -> float:
    """Ring all-reduce: 2(n-1) alpha + 2(n-1)/n S / (B eff) (Thakur et al. 2005 sec. 4.4; NCCL busBW)."""
    _check(n, bw_gb_s, efficiency)
    if n == 1:
        return 0.0
    return _alpha_beta(2 * (n - 1) / n * num_bytes, 2 * (n - 1), bw_gb_s, latency_s, efficiency)


def tree_allreduce_time(num_bytes: float, n: int, bw_gb_s: float, latency_s: float = 0.0, efficiency: float = 1.0) -> float:
    """Pipelined (double binary) tree all-reduce: 2 ceil(log2 n) alpha + 2 S / (B eff): a reduce up
    the tree and a broadcast down it, each moving S through every GPU (NCCL 2.4 double binary trees;
    Thakur et al. 2005 sec. 4.4 binomial tree). Latency grows with log n, bandwidth term does not shrink."""
    _check(n, bw_gb_s, efficiency)
    if n == 1:
        return 0.0
    return _alpha_beta(2 * num_bytes, 2 * math.ceil(math.log2(n)), bw_gb_s, latency_s, efficiency)


def reduce_scatter_time(num_bytes: float, n: int, bw_gb_s: float, latency_s: float = 0.0, efficiency: float = 1.0) -> float:
    """Ring reduce-scatter of an S-byte buffer: (n-1) alpha + (n-1)/n S / (B eff) (Thakur et al. 2005 sec. 4.3)."""
    _check(n, bw_gb_s, efficiency)
    if n == 1:
        return 0.0
    return _alpha_beta((n - 1) / n * num_bytes, n - 1, bw_gb_s, latency_s, efficiency)


def all_gather_time(num_bytes: float, n: int, bw_gb_s: float, latency_s: float = 0.0, efficiency: float = 1.0) -> float:
    """Ring all-gather into an S-byte buffer: (n-1) alpha + (n-1)/n S / (B eff) (Thakur et al. 2005 sec. 4.1)."""
    return reduce_scatter_time(num_bytes, n, bw_gb_s, latency_s, efficiency)


def all_to_all_time(num_bytes: float, n: int, bw_gb_s: float, latency_s: float = 0.0, efficiency: float = 1.0) -> float:
    """All-to-all of the S bytes one GPU holds: alpha + (n-1)/n S / (B eff), the n-1 peer transfers in flight together.

    Volume: Thakur et al. 2005 sec. 4.5 (each GPU sends the (n-1)/n of its buffer bound for the others). Latency: one
    step, not the n-1 of a pairwise exchange: PyTorch's all_to_all_single issues one ncclSend / ncclRecv per peer inside
    a single ncclGroupStart / ncclGroupEnd, which NCCL progresses concurrently over its channels, and DeepEP's measured
    low-latency dispatch (deepseek-ai/DeepEP docs/legacy.md, H800 + CX7 400 Gb/s, 128 tokens x 7168 x top-8 fp8 per
    rank) takes 192 us at EP 128 and 194 us at EP 256, its bytes over its 39 GB/s: no (n-1) x alpha (1.3 ms at 10 us)
    anywhere in it."""
    _check(n, bw_gb_s, efficiency)
    if n == 1:
        return 0.0
    return _alpha_beta((n - 1) / n * num_bytes, 1, bw_gb_s, latency_s, efficiency)


def p2p_time(num_bytes: float, bw_gb_s: float, latency_s: float = 0.0, efficiency: float = 1.0) -> float:
    """Point-to-point send: alpha + S / (B eff) (pipeline stage boundaries, CP ring steps)."""
    _check(1, bw_gb_s, efficiency)
    return _alpha_beta(num_bytes, 1, bw_gb_s, latency_s, efficiency)


def chain_p2p_time(system: SystemSpec, num_bytes: float, stages: int, stride: int, efficiency: float = 1.0) -> float:
    """A message handed down a chain of ``stages`` ranks ``stride`` apart in order (a serving forward through the
    pipeline stages): each of the stages - 1 hops on its own link, the node link when both ends sit in one node
    (ranks laid out contiguously, G per node), else the NIC:

        sum over hops i = 0 .. stages - 2 of p2p(S, link of i -> i + 1),
        hop i crosses nodes when floor(i x stride / G) != floor((i + 1) x stride / G)

    >>> from calc.sources.catalog import load_system
    >>> dgx = load_system("dgx-h100")  # TP 2 x PP 8: stages 0-3 and 4-7 in two nodes, hop 3 -> 4 on the NIC
    >>> round(chain_p2p_time(dgx, 1e6, 8, 2) * 1e6, 3)  # 6 x (3 + 1e6 / 450e3) + (10 + 1e6 / 50e3) us
    61.333
    """
    per_node = system.gpus_per_node
    total = 0.0
    for i in range(stages - 1):
        crosses = (i * stride) // per_node != ((i + 1) * stride) // per_node
        bridged = system.bridge_gpus and (i * stride) // system.bridge_gpus == ((i + 1) * stride) // system.bridge_gpus
        bw, lat = ((system.inter_node_gb_s, system.inter_node_latency_s) if crosses
                   else (system.bridge_gb_s, system.intra_node_latency_s) if bridged
                   else (system.intra_node_gb_s, system.intra_node_latency_s))
        total += p2p_time(num_bytes, bw, lat, efficiency)
    return total


def fastest_allreduce_time(system: SystemSpec, num_bytes: float, group_size: int, efficiency: float = 1.0,
                           pcie: float | None = None) -> float:
    """An all-reduce as NCCL's tuner (and vLLM's custom all-reduce for small messages) runs it: the faster of the ring
    and the tree (collective_time "allreduce" / "tree_allreduce"); at decode sizes the per-step latency decides."""
    return min(collective_time(kind, system, num_bytes, group_size, efficiency=efficiency, pcie=pcie)
               for kind in ("allreduce", "tree_allreduce"))


def group_shape(system: SystemSpec, group_size: int, stride: int = 1) -> tuple[int, int]:
    """(GPUs of the group per node, nodes it spans) for a group of ``group_size`` ranks ``stride`` apart.

    Ranks are laid out TP fastest, so a TP group has stride 1, the CP group stride t, DP stride t*c, ...
    A node of G GPUs holds max(1, G // stride) consecutive members (at most the group).

    >>> from calc.sources.catalog import load_system
    >>> group_shape(load_system("dgx-h100"), 16, stride=2)   # 4 per node, 4 nodes
    (4, 4)
    """
    if group_size < 1 or stride < 1:
        raise LLMCalcError("--num-gpus", f"group size and stride must be >= 1, got {group_size}, {stride}")
    per_node = min(group_size, max(1, system.gpus_per_node // stride))
    return per_node, math.ceil(group_size / per_node)


def group_link(system: SystemSpec, group_size: int, stride: int = 1) -> tuple[float, float]:
    """(GB/s per direction, latency s) of the slowest hop of a group: the node link when the whole group
    sits in one node (its NVLink bridge when the group shares one, SystemSpec.node_link), else the NIC per GPU (a
    ring across nodes passes every NIC)."""
    per_node, nodes = group_shape(system, group_size, stride)
    if nodes == 1:
        return system.node_link(per_node, stride)
    return system.inter_node_gb_s, system.inter_node_latency_s


_FLAT = {
    "allreduce": ring_allreduce_time,
    "tree_allreduce": tree_allreduce_time,
    "reduce_scatter": reduce_scatter_time,
    "all_gather": all_gather_time,
    "all_to_all": all_to_all_time,
}


def collective_time(
    kind: Collective, system: SystemSpec, num_bytes: float, group_size: int, stride: int = 1, efficiency: float = 1.0,
    nic_scale: float = 1.0, pcie: float | None = None,
) -> float:
    """Time of a collective of ``num_bytes`` on a group laid out on ``system``.

    One node: the flat ring on the node link; over a PCIe node link (SystemSpec.pcie_link) its time / pcie_factor(),
    as the node parts of a group spanning nodes. Across nodes (n_in per node, n_out nodes):
      all-reduce      = RS_in(S) + AR_out(S/n_in on the NIC) + AG_in(S)
      reduce-scatter  = RS_in(S) + RS_out(S/n_in on the NIC)   (all-gather: the mirror image)
      all-to-all      = max(inside part on NVLink, the (n - n_in)/n share crossing the NIC x nic_scale)
    p2p: one message on the slowest hop of a ring of ``group_size`` ranks ``stride`` apart (2: the pair), every rank
    sending to its successor at once, so a ring that leaves the node waits on the NIC hop. ``nic_scale`` (all-to-all only): the
    bytes that cross the NIC relative to a plain all-to-all's (a dispatcher that sends a token once per node, DeepEP:
    calc.hardware.moe_ops.deepep_nic_scale). ``pcie``: the factor of a PCIe node part; None: the fitted pcie_factor()
    (1 where a calibration measured the link: calc.hardware.efficiency.measured_pcie_factor).
    """
    if kind == "p2p":
        bw, lat = group_link(system, max(group_size, 2), stride)
        return p2p_time(num_bytes, bw, lat, efficiency)
    if group_size == 1:
        return 0.0
    n_in, n_out = group_shape(system, group_size, stride)
    b_in, a_in = system.node_link(n_in, stride)  # NVLink bridge when the node's members share one (SystemSpec)
    b_out, a_out = system.inter_node_gb_s, system.inter_node_latency_s
    slow = 1 / (pcie or pcie_factor()) if n_in > 1 and system.pcie_link(n_in, stride) else 1.0  # the node part over PCIe
    flat = _FLAT[kind]
    if n_out == 1:
        return flat(num_bytes, group_size, b_in, a_in, efficiency) * slow
    if kind == "all_to_all":
        inside = ((n_in - 1) / group_size * num_bytes / (b_in * 1e9 * efficiency) + a_in) * slow
        outside = nic_scale * (group_size - n_in) / group_size * num_bytes / (b_out * 1e9 * efficiency) + a_out
        return max(inside, outside)
    outer = flat(num_bytes / n_in, n_out, b_out, a_out, efficiency)
    if kind in ("reduce_scatter", "all_gather"):
        return reduce_scatter_time(num_bytes, n_in, b_in, a_in, efficiency) * slow + outer
    return 2 * reduce_scatter_time(num_bytes, n_in, b_in, a_in, efficiency) * slow + outer


def pcie_factor() -> float:
    """The fitted factor a collective over a PCIe node link runs at (PCIE_COLLECTIVE_FACTOR; 1: the alpha-beta model
    of the link as given)."""
    return PCIE_COLLECTIVE_FACTOR["pcie"]
