"""The device total CUDA reports (GPUSpec.memory_cuda_total_mib / cuda_total_bytes) against the public readings
quoted in hardware_specs/*.yaml, and an engine budget worked from a vLLM log's own arithmetic."""

from __future__ import annotations

import pytest

from calc.serving.engine_memory import engine_memory
from calc.sources.catalog import list_gpus, load_gpu, load_model
from calc.specs import GPUSpec
from calc.specs.serving import EngineSettings

MIB, GIB = 2**20, 2**30


@pytest.mark.parametrize(("gpu", "total_bytes"), [
    # deviceQuery 'Total amount of global memory: ... (N bytes)', github.com/thamada/nvidia-smi gls/*_deviceQuery.py
    ("h100-sxm", 85_045_477_376),  # 81105.69 MiB
    ("a100-80g", 85_100_068_864),  # 81157.75
    ("h100-nvl", 99_861_594_112),  # 95235.44
    ("l40s", 47_803_596_800),  # 45589.06
    ("l4", 23_570_219_008),  # 22478.31
    ("rtx3090", 25_327_697_920),  # 24154.38
    ("rtx4090", 25_386_352_640),  # 24210.31
    ("ada6000", 51_002_867_712),  # 48640.13
])
def test_device_query_readings(gpu: str, total_bytes: int) -> None:
    # the field holds the whole MiB of the bytes deviceQuery prints
    assert load_gpu(gpu).memory_cuda_total_mib == total_bytes // MIB


@pytest.mark.parametrize(("gpu", "printed", "decimals"), [
    ("h200", 139.81, 2),  # vLLM 'total_gpu_memory (139.81GiB)' on NVIDIA H200
    ("mi300x", 191.45, 2),  # vLLM ROCm 'total_gpu_memory (191.45GiB)' on one MI300X
    ("b300", 267.7, 1),  # sglang #25225: mem_get_info 'free: 267.1 GiB / 267.7 GiB' on SM103
    ("b200", 178.4, 1),  # sglang #25225: '177.7 GiB / 178.4 GiB' on SM100 (the field: torch's 182642 MB)
])
def test_logged_totals_round_to_the_quote(gpu: str, printed: float, decimals: int) -> None:
    assert round(load_gpu(gpu).cuda_total_bytes / GIB, decimals) == printed


def test_h100_inside_the_logged_range() -> None:
    # vLLM logs on H100 80GB read total_gpu_memory 79.11 - 79.33 GiB (driver-dependent); deviceQuery's 81105 MiB
    # = 79.20 GiB lies inside, nvidia-smi's 81559 MiB = 79.65 GiB does not.
    gpu = load_gpu("h100")
    assert 79.11 <= gpu.cuda_total_bytes / GIB <= 79.33
    assert gpu.memory_bytes / GIB > 79.33


def test_every_reading_below_nvidia_smi_by_a_driver_reserve() -> None:
    # The readings quoted sit 243 (MI300X) to 915 (B300) MiB below nvidia-smi's total: never above it, never a
    # gigabyte-scale gap (a GB / GiB mix-up would be 2.4 - 7% off).
    for gpu in list_gpus():
        if gpu.memory_cuda_total_mib:
            reserve = gpu.memory_bytes // MIB - gpu.memory_cuda_total_mib
            assert 0 < reserve <= 1024, gpu.name
        else:  # no reading: the budget falls back on the device's memory
            assert gpu.cuda_total_bytes == gpu.memory_bytes, gpu.name


def test_cuda_total_above_the_device_is_refused() -> None:
    data = load_gpu("h100").model_dump() | {"memory_cuda_total_mib": 81560}
    with pytest.raises(ValueError, match="memory_cuda_total_mib"):
        GPUSpec(**data)


def test_vllm_budget_starts_from_the_logged_total() -> None:
    # The H200 log: 'total_gpu_memory (139.81GiB) x gpu_memory_utilization (0.85) = 118.84GiB'. 143165 MiB x 0.85
    # = 121,690.25 MiB = 118.838 GiB -> 118.84; from nvidia-smi's 143771 MiB it would be 119.34.
    mem = engine_memory(load_model("llama3-8b"), load_gpu("h200"), settings=EngineSettings(gpu_memory_utilization=0.85))
    assert mem.capacity_bytes == 143_165 * MIB
    assert round(mem.usable_bytes / GIB, 2) == 118.84
