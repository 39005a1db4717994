"""Peak derivation vs datasheets (reference section 4)."""

from __future__ import annotations

import pytest

from calc.hardware.peaks import derived_peak_tflops, summarize_gpu
from calc.sources.catalog import list_gpus, load_gpu


def test_a800_seed_derivation() -> None:
    # Seed 001: 2*(8*4*8) = 512 FLOPs/clk/TC x 4 TC/SM x 108 SMs x 1410 MHz = 311.86944 TFLOPS ("311.8").
    assert derived_peak_tflops(load_gpu("a800"))["bf16"] == pytest.approx(311.86944, rel=1e-9)


def test_h100_sxm_derivation() -> None:
    # 132 SMs x 4 x 1024 FLOPs/clock x 1830 MHz = 989.42976 TFLOPS dense BF16 (datasheet 989.4).
    assert derived_peak_tflops(load_gpu("h100"))["bf16"] == pytest.approx(989.42976, rel=1e-9)


@pytest.mark.parametrize("gpu", list_gpus(), ids=lambda g: g.name)
def test_derived_within_one_percent_or_explained(gpu) -> None:
    summary = summarize_gpu(gpu)
    for check in summary.checks:
        if check.derived_tflops is None or abs(check.diff_pct) > 1.0:
            assert gpu.peak_note, f"{gpu.name} {check.dtype}: derived {check.derived_tflops} vs {check.datasheet_tflops}"


def test_memory_capacity_units() -> None:
    # A800 reports 81920 MiB = 80 GiB = 85,899,345,920 bytes; H20 reports 97871 MiB (nvidia-smi,
    # DeepGEMM issue 268) = 102,625,181,696 bytes; without a device reading the datasheet 96 GB = 96e9.
    assert load_gpu("a800").memory_bytes == 80 * 2**30
    assert load_gpu("h20").memory_bytes == 102_625_181_696
    datasheet_only = load_gpu("h20").model_copy(update={"memory_visible_mib": None})
    assert datasheet_only.memory_bytes == 96 * 10**9


def test_every_gpu_uses_the_memory_the_device_reports() -> None:
    # nvidia-smi / rocm-smi totals from public logs (cited in each YAML): MI300X 205,822,885,888 B
    # = 196288 MiB, RTX 4090 24564 MiB, L4 23034 MiB, L40S 46068 MiB, H100 PCIe 81559 MiB.
    reported = {"mi300x": 196288, "rtx4090": 24564, "l4": 23034, "l40s": 46068, "h100-pcie": 81559,
                "h100-sxm": 81559, "a100-80g": 81920, "h200": 143771, "b200": 183359, "h20": 97871,
                "rtx3090": 24576, "t4": 15360, "a100-40g": 40960, "a800": 81920, "h800": 81559}
    for name, mib in reported.items():
        assert load_gpu(name).memory_bytes == mib * 2**20, name
    assert load_gpu("mi300x").memory_bytes == 205_822_885_888
    # Every GPU carries what its device reports (MI325X / MI355X: the ROCm GPU specs table's GiB, no rocm-smi
    # reading found; their YAMLs say so).
    for gpu in list_gpus():
        assert gpu.memory_visible_mib, f"{gpu.name}: device-reported memory"
    assert load_gpu("mi325x").memory_bytes == 256 * 2**30 and load_gpu("mi355x").memory_bytes == 288 * 2**30


def test_aliases_and_case() -> None:
    assert load_gpu("H100").name == "h100-sxm"
    assert load_gpu("4090").name == "rtx4090"
