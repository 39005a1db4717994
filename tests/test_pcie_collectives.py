"""Collectives over a PCIe node link (calc.hardware.collectives.pcie_factor): the alpha-beta time of the link as the
node spec gives it, divided by the fitted PCIe factor; NVLink nodes and NVLink-bridged pairs are not touched."""

from __future__ import annotations

import pytest

from calc.hardware.collectives import collective_time, pcie_factor
from calc.sources.catalog import load_system


def test_a_pcie_ring_takes_its_alpha_beta_time_over_the_factor() -> None:
    l40s = load_system("pcie-l40s")  # PCIe Gen4 x16: 31.5 GB/s per direction, 5 us per step
    # ring all-reduce of 1 MB on 8 GPUs at efficiency 1: 2 x 7 steps x 5 us + 2 x 7/8 x 1e6 B / 31.5e9 B/s
    ring = 14 * 5e-6 + 2 * 7 / 8 * 1e6 / 31.5e9
    assert collective_time("allreduce", l40s, 1e6, 8) == pytest.approx(ring / pcie_factor())
    assert l40s.pcie_link(8) and 0 < pcie_factor() <= 1.1


def test_nvlink_bridged_pairs_and_host_staged_links_keep_the_link_as_given() -> None:
    # a GeForce workstation stages through host memory: its 12 GB/s is the staged rate itself, not a link rate
    ws = load_system("workstation-rtx4090")
    assert not ws.pcie_link(4)
    assert collective_time("allreduce", ws, 1e6, 4) == pytest.approx(6 * 5e-6 + 2 * 3 / 4 * 1e6 / 12e9)
    dgx = load_system("dgx-h100")  # NVLink4: 450 GB/s per direction, 3 us per step
    assert not dgx.pcie_link(8)
    assert collective_time("allreduce", dgx, 1e6, 8) == pytest.approx(14 * 3e-6 + 2 * 7 / 8 * 1e6 / 450e9)
    nvl = load_system("pcie-h100-nvl")  # H100 NVL pairs on an NVLink bridge, PCIe between pairs
    assert not nvl.pcie_link(2) and nvl.pcie_link(4)
    bridge_gb_s, lat = nvl.node_link(2)
    assert collective_time("allreduce", nvl, 1e6, 2) == pytest.approx(2 * lat + 1e6 / (bridge_gb_s * 1e9))


def test_the_factor_is_the_fitted_one_and_explained() -> None:
    from calc.fitted import fitted

    entry = fitted()["parameters"]["pcie_collective_factor"]["pcie"]
    assert pcie_factor() == entry["value"]
    from conftest import run_cli

    r = run_cli("latency", "llama3.1-70b", "--gpu", "l40s", "--num-gpus", "8", "--dtype", "fp8", "--prompt", "1000",
                "--output", "1000", "--batch", "8", "--explain")
    assert r.code == 0 and f"PCIe node link (no NVLink between its GPUs) takes its time / {pcie_factor():g}" in r.out


def test_a_measured_link_takes_no_factor_on_top() -> None:
    """A `bench` calibration that measured the node's all-reduce holds that link's own efficiency: the factor fitted for
    unmeasured PCIe nodes is not applied again (calc.hardware.efficiency.measured_pcie_factor)."""
    from calc.hardware.calibration import Calibration, OpPoint, Roofline
    from calc.serving.step import allreduce_s

    l40s = load_system("pcie-l40s")
    measured = Calibration(gpu="l40s", device_name="NVIDIA L40S", is_gpu=True, dtype="bf16", date="2026-12-05",
                           roofline=Roofline(peak_tflops=362, peak_gb_s=864, source="datasheet"),
                           ops={"allreduce": [OpPoint(size=1e9, measured_s=1.0, efficiency=0.5)]})
    # 1 MB on 8 GPUs, the faster of NCCL's ring (2 x 7 steps of 5 us, 2 x 7/8 of the bytes) and tree (2 x log2 8
    # steps, 2 x the bytes), at the measured 50% of 31.5 GB/s
    def fastest(eff: float) -> float:
        return min(14 * 5e-6 + 2 * 7 / 8 * 1e6 / (eff * 31.5e9), 6 * 5e-6 + 2 * 1e6 / (eff * 31.5e9))

    assert allreduce_s(l40s, 1e6, 8, measured) == pytest.approx(fastest(0.5))
    # without the calibration: the default 80% efficiency and the fitted factor
    assert allreduce_s(l40s, 1e6, 8) == pytest.approx(fastest(0.8) / pcie_factor())
