"""A system: which GPU, how many per node, the link inside a node and the network between nodes.

Bandwidths are per GPU and per direction (the figure a ring collective divides by); latencies are
per hop of a collective step. Kept apart from GPUSpec (what chip) and Parallelism (how it is run),
as Calculon keeps system / application / execution apart.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt, model_validator

from calc.specs import _Spec


class SystemSpec(_Spec):
    """One node type of a training cluster, per GPU: NVLink/NVSwitch inside, NIC across nodes."""

    name: str = Field(min_length=1)
    description: str = ""
    source: str = Field("", description="datasheets the link figures come from")
    aliases: list[str] = Field(default_factory=list)
    gpu: str = Field(min_length=1, description="GPU catalog name (hardware_specs/)")
    gpus_per_node: PositiveInt = 8
    intra_node_link: str = Field("", description="e.g. NVLink4 + NVSwitch, PCIe Gen5")
    intra_node_gb_s: float = Field(gt=0, description="GPU-GPU bandwidth inside a node, GB/s per GPU per direction")
    network: str = Field("", description="e.g. 8 x 400 Gb/s InfiniBand NDR")
    inter_node_gb_s: float = Field(gt=0, description="NIC bandwidth per GPU across nodes, GB/s per direction")
    bridge_gpus: int = Field(0, ge=0, description="GPUs one NVLink bridge joins (H100 NVL / A6000 pairs, H200 NVL "
                             "4-way); 0 = none. A group of at most this many adjacent ranks talks over it")
    bridge_gb_s: float = Field(0.0, ge=0, description="the bridge's GB/s per GPU per direction (0 without a bridge)")
    intra_node_latency_s: float = Field(3e-6, ge=0, description="per-step latency of a collective inside a node")
    inter_node_latency_s: float = Field(10e-6, ge=0, description="per-step latency of a collective across nodes")

    @model_validator(mode="after")
    def _bridge_whole(self) -> SystemSpec:
        if (self.bridge_gpus > 1) != (self.bridge_gb_s > 0):
            raise ValueError("bridge_gpus (> 1) and bridge_gb_s (> 0) go together: the GPUs one bridge joins and its GB/s")
        if self.bridge_gpus > self.gpus_per_node or (self.bridge_gpus and self.gpus_per_node % self.bridge_gpus):
            raise ValueError(f"bridge_gpus {self.bridge_gpus} must divide gpus_per_node {self.gpus_per_node}")
        return self

    def pcie_link(self, members: int, stride: int = 1) -> bool:
        """Whether a group's link inside one node is PCIe peer-to-peer: the node's link is PCIe (``intra_node_link``
        names it first, as every PCIe node type in system_specs/ does), not staged through host memory ("via host":
        the GeForce workstations, whose intra_node_gb_s is already the staged rate NCCL reaches, not a link rate), and
        the group is not all on one NVLink bridge (node_link). calc.hardware.collectives prices such a collective at
        its fitted PCIe factor.

        >>> SystemSpec(name="n", gpu="g", intra_node_link="PCIe Gen4 x16", intra_node_gb_s=31.5, inter_node_gb_s=6).pcie_link(8)
        True
        >>> SystemSpec(name="n", gpu="g", intra_node_link="PCIe Gen5 x16; NVLink bridge pairs", intra_node_gb_s=63,
        ...            inter_node_gb_s=25, bridge_gpus=2, bridge_gb_s=300).pcie_link(2)
        False
        """
        link = self.intra_node_link.strip().lower()  # a node type of one's own may spell it "pcie gen4"
        return link.startswith("pcie") and "via host" not in link and not (
            self.bridge_gpus and members * stride <= self.bridge_gpus)

    def node_link(self, members: int, stride: int = 1) -> tuple[float, float]:
        """(GB/s per direction, latency s) of a group's link inside one node: the NVLink bridge when the ``members``
        ranks of the node (``stride`` apart, ranks laid out contiguously) all sit on one bridge, else the node's link.
        A ring of the bridged pair runs over the bridge; a wider ring (or one whose ranks sit on two bridges) passes a
        PCIe hop and waits on it (NCCL rings over the slowest hop).

        >>> SystemSpec(name="n", gpu="g", intra_node_gb_s=63, inter_node_gb_s=25, bridge_gpus=2, bridge_gb_s=300).node_link(2)
        (300.0, 3e-06)
        """
        if self.bridge_gpus and members * stride <= self.bridge_gpus:
            return self.bridge_gb_s, self.intra_node_latency_s
        return self.intra_node_gb_s, self.intra_node_latency_s


def one_gpu_node(gpu: str) -> SystemSpec:
    """A node of one ``gpu``: a single GPU moves nothing between GPUs, so no link figure is read (the 1 GB/s are
    placeholders no collective uses). What the training commands place a one-GPU plan on when no node type ships for
    the GPU (train-step, train-plan, train-time and report --mode train alike)."""
    return SystemSpec(name=f"{gpu} (one GPU)", gpu=gpu, gpus_per_node=1, intra_node_gb_s=1.0, inter_node_gb_s=1.0,
                      description="a single GPU: no collective, no link")
