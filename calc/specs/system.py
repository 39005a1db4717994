"""A system: which GPU, how many per node, the link inside a node and the network between nodes.

Bandwidths are per GPU and per direction (the figure a ring collective divides by); latencies are
per hop of a collective step. Kept apart from GPUSpec (what chip) and Parallelism (how it is run),
as Calculon keeps system / application / execution apart.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt

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
    intra_node_latency_s: float = Field(3e-6, ge=0, description="per-step latency of a collective inside a node")
    inter_node_latency_s: float = Field(10e-6, ge=0, description="per-step latency of a collective across nodes")
