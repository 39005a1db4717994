"""The time activation offloading to host memory costs a training step.

Megatron-Core's CPU offloading (--cpu-offloading-num-layers N: Transformer Engine's group offload handler,
transformer_engine/pytorch/cpu_offload.py) and its fine-grained offloading (--offload-modules) copy saved tensors to
pinned host memory on a side stream as each layer's forward ends and copy them back ahead of its backward. Per
micro-batch on the stage's GPU, X bytes (calc.memory.training.host_offload_bytes: the same tensors the memory engine
takes off the GPU) cross the GPU-host link each way:
    t_copy  = X / (host link GB/s per direction x HOST_COPY_EFFICIENCY)
    exposed = exposed_time(t_copy, forward) + exposed_time(t_copy, backward)
each copy hidden under that pass's compute at the overlap efficiency, what does not fit in it exposed
(calc.hardware.efficiency.exposed_time, as the other overlapped transfers of the step model).
"""

from __future__ import annotations

from calc.errors import LLMCalcError
from calc.specs import GPUSpec

# Share of the link's rate a pinned-memory cudaMemcpyAsync sustains: PCIe x16 moves ~25 of 32 GB/s (Gen4) and
# ~50-55 of 64 GB/s (Gen5) per direction (the TLP and flow-control overhead of the protocol); an assumption shown in
# --explain, replaced by --host-copy-gb-s.
HOST_COPY_EFFICIENCY = 0.8


def host_copy_rate(gpu: GPUSpec, measured_gb_s: float | None, flag: str) -> tuple[float, str]:
    """(bytes/s one direction of an offload copy runs at, how it was found): ``measured_gb_s`` (--host-copy-gb-s) as
    given, else the GPU's host link (GPUSpec.host_link_gb_s) x HOST_COPY_EFFICIENCY; refused, naming ``flag``, when
    the GPU spec states no host link."""
    if measured_gb_s is not None:
        return measured_gb_s * 1e9, f"{measured_gb_s:g} GB/s (--host-copy-gb-s)"
    if gpu.host_link_gb_s is None:
        raise LLMCalcError(flag, f"{gpu.name}'s spec states no host link (host_link_gb_s, GB/s per direction), so the "
                                 "offload copies cannot be timed: add it to the GPU spec or give --host-copy-gb-s")
    rate = gpu.host_link_gb_s * HOST_COPY_EFFICIENCY
    return rate * 1e9, (f"{rate:g} GB/s = {gpu.host_link_gb_s:g} GB/s host link x {HOST_COPY_EFFICIENCY:g} "
                        "(pinned-memory copy; --host-copy-gb-s replaces it)")
