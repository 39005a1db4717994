"""The GPUs people buy or rent (issue 22): each one's derived dense peak against its datasheet, its
device-reported memory, its aliases, and the FP4 tensor peaks of Blackwell / CDNA4.

Every expected figure is typed by hand from the source named in the GPU's YAML header (datasheet,
whitepaper, nvidia-smi / rocm-smi / hl-smi log), never read back from the catalog.
"""

from __future__ import annotations

import pytest

from calc.errors import LLMCalcError
from calc.hardware.peaks import derived_peak_tflops, peak_tflops
from calc.sources.catalog import list_systems, load_gpu, load_system
from calc.specs import GPUSpec, spec_from_mapping

# name: (dtype, dense datasheet TFLOPS, SMs x TC/SM x FLOPs/clk/TC x MHz worked by hand)
DATASHEET = {
    "gb200": ("bf16", 2500, 152 * 4 * 2048 * 2007.7e6),  # NVL72 table: 5 PF sparse per GPU
    "gb300": ("bf16", 2500, 152 * 4 * 2048 * 2007.7e6),  # NVL72 table: 360 PF sparse / 72 / 2
    "b300": ("bf16", 2250, 148 * 4 * 2048 * 1856e6),  # HGX B300: 36 PF sparse / 8 / 2
    "rtx5090": ("bf16", 209.5, 170 * 4 * 128 * 2407e6),  # RTX Blackwell whitepaper, FP32 accumulate
    "pro6000": ("bf16", 503.8, 188 * 4 * 256 * 2617e6),
    "ada6000": ("bf16", 364.2, 142 * 4 * 256 * 2505e6),  # 1457 sparse FP8 / 4
    "a6000": ("bf16", 154.8, 84 * 4 * 256 * 1800e6),  # 309.7 sparse / 2
    "l40": ("bf16", 181.05, 142 * 4 * 128 * 2490e6),
    "l20": ("bf16", 119.5, 92 * 4 * 128 * 2520e6),
    "a10": ("bf16", 125, 72 * 4 * 256 * 1695e6),
    "a10g": ("bf16", 70, 80 * 4 * 128 * 1710e6),
    "v100-32g": ("fp16", 125, 80 * 8 * 128 * 1530e6),  # Volta: FP16 tensor cores only
    "h100-nvl": ("bf16", 835.5, 132 * 4 * 1024 * 1545e6),  # 1671 sparse / 2
    "h200-nvl": ("bf16", 835.5, 132 * 4 * 1024 * 1545e6),
    "mi325x": ("bf16", 1307.4, 304 * 4 * 512 * 2100e6),
    "mi355x": ("bf16", 2516.6, 256 * 4 * 1024 * 2400e6),
    "gaudi3": ("bf16", 1835, 8 * 1 * 256 * 256 * 2 * 1750e6),  # 8 MMEs of 256x256 MACs
}

# What the device reports (MiB), from the public logs cited in each YAML.
DEVICE_MIB = {
    "gb200": 189471, "gb300": 284208, "b300": 275040, "rtx5090": 32607, "pro6000": 97887,
    "ada6000": 49140, "a6000": 49140, "l40": 46068, "l20": 46068, "a10": 23028, "a10g": 23028,
    "v100-32g": 32768, "h100-nvl": 95830, "h200-nvl": 143771, "gaudi3": 131072,
}
# No public rocm-smi reading was found for these: AMD's "256 GB" / "288 GB" are binary (the ROCm GPU specs table's
# "VRAM (GiB)" column: MI325X 256, MI355X 288), as MI300X's "192 GB" reads 191.7 GiB on rocm-smi.
ROCM_TABLE_GIB = {"mi325x": 256, "mi355x": 288}
DATASHEET_MEMORY_ONLY: dict[str, float] = {}

ALIASES = {
    "5090": "rtx5090", "rtx-5090": "rtx5090", "RTX 5090": "rtx5090", "a10g": "a10g", "A10G": "a10g",
    "a10": "a10", "v100": "v100-32g", "GB200": "gb200", "nvidia-gb300": "gb300", "B300": "b300",
    "rtx-pro-6000": "pro6000", "rtx-pro-6000-blackwell": "pro6000", "RTX PRO 6000": "pro6000",
    "rtx-6000-ada": "ada6000", "rtx-a6000": "a6000",
    "L40": "l40", "l20": "l20", "h100nvl": "h100-nvl", "H200 NVL": "h200-nvl", "mi325": "mi325x",
    "MI355X": "mi355x", "gaudi-3": "gaudi3", "hl-325l": "gaudi3",
}


@pytest.mark.parametrize("name", sorted(DATASHEET))
def test_derived_dense_peak_matches_the_datasheet(name: str) -> None:
    dtype, sheet, by_hand = DATASHEET[name]
    gpu = load_gpu(name)
    derived = derived_peak_tflops(gpu)[dtype]
    assert derived == pytest.approx(by_hand / 1e12, rel=1e-9)
    assert derived == pytest.approx(sheet, rel=0.01)  # the catalog-wide 1% tolerance
    assert gpu.datasheet_peak_tflops[dtype] == sheet


# The catalog's earlier GPUs, the same check (name: dtype, dense datasheet TFLOPS, derivation by hand, tolerance):
# A100 whitepaper 108 SMs x 4 TCs x 512 dense FLOPs/clk at 1410 MHz; H100 whitepaper SXM5 132 SMs / PCIe 114 SMs x
# 1024 at 1830 / 1620 MHz (H200, H800: the SXM5 die and clock); HGX B200 72 PF sparse FP8 / 8 GPUs / 4 = 2.25 PF
# bf16 dense at 148 SMs x 2048 (1856 MHz implied); Ada whitepaper L4 58 SMs, L40S 142 SMs x 256 (the datasheet
# counts 2490 MHz, the YAML's boost 2520: 1.2%, its peak_note says so); RTX 3090 82 SMs x 128 at 1695 MHz, RTX 4090
# 128 SMs x 128 at 2520 MHz (FP32 accumulate); MI300X 304 CUs x 4 x 512 at 2100 MHz; T4 40 SMs x 8 x 128 at 1590.
EARLIER = {
    "a100-40g": ("bf16", 312.0, 108 * 4 * 512 * 1410e6, 0.01), "a100-80g": ("bf16", 312.0, 108 * 4 * 512 * 1410e6, 0.01),
    "h100-pcie": ("bf16", 756.0, 114 * 4 * 1024 * 1620e6, 0.01), "h200": ("bf16", 989.4, 132 * 4 * 1024 * 1830e6, 0.01),
    "h800": ("bf16", 989.4, 132 * 4 * 1024 * 1830e6, 0.01), "b200": ("bf16", 2250.0, 148 * 4 * 2048 * 1856e6, 0.01),
    "l4": ("bf16", 121.0, 58 * 4 * 256 * 2040e6, 0.01), "l40s": ("bf16", 362.05, 142 * 4 * 256 * 2520e6, 0.015),
    "rtx3090": ("bf16", 71.0, 82 * 4 * 128 * 1695e6, 0.01), "rtx4090": ("bf16", 165.2, 128 * 4 * 128 * 2520e6, 0.01),
    "mi300x": ("bf16", 1307.4, 304 * 4 * 512 * 2100e6, 0.01), "t4": ("fp16", 65.0, 40 * 8 * 128 * 1590e6, 0.01),
}


@pytest.mark.parametrize("name", sorted(EARLIER))
def test_earlier_gpus_derived_peak(name: str) -> None:
    dtype, sheet, by_hand, tol = EARLIER[name]
    gpu = load_gpu(name)
    assert derived_peak_tflops(gpu)[dtype] == pytest.approx(by_hand / 1e12, rel=1e-9)
    assert derived_peak_tflops(gpu)[dtype] == pytest.approx(sheet, rel=tol)
    assert gpu.datasheet_peak_tflops[dtype] == sheet
    assert gpu.source and (tol == 0.01 or gpu.peak_note)


def test_every_gpu_has_a_source_and_a_derivation_test() -> None:
    # H20: NVIDIA publishes no per-SM rate for the cut-down die; datasheet 148 TFLOPS bf16 dense, derivation absent.
    h20 = load_gpu("h20")
    assert derived_peak_tflops(h20) == {} and h20.datasheet_peak_tflops["bf16"] == 148.0 and h20.peak_note
    from calc.sources.catalog import list_gpus

    tested = set(DATASHEET) | set(EARLIER) | {"a800", "h100-sxm", "h20"}  # a800, h100-sxm: tests/test_hardware.py
    for gpu in list_gpus():
        assert gpu.source, gpu.name
        assert gpu.name in tested, f"{gpu.name}: add its derived peak, worked by hand, to a test"


@pytest.mark.parametrize("name", sorted(DATASHEET))
def test_memory_as_the_device_reports_it(name: str) -> None:
    gpu = load_gpu(name)
    if name in ROCM_TABLE_GIB:
        assert gpu.memory_bytes == ROCM_TABLE_GIB[name] * 2**30
    elif name in DATASHEET_MEMORY_ONLY:
        assert gpu.memory_visible_mib is None and gpu.memory_bytes == DATASHEET_MEMORY_ONLY[name]
    else:
        assert gpu.memory_bytes == DEVICE_MIB[name] * 2**20


def test_mi355x_total_as_vllm_sees_it() -> None:
    # SemiAnalysisAI/InferenceX PR 2522 on MI355X: "At --gpu-memory-utilization 0.95 vLLM requests 273.6 GiB"
    assert 0.95 * load_gpu("mi355x").cuda_total_bytes / 2**30 == pytest.approx(273.6, abs=0.05)


def test_fp4_tensor_peaks() -> None:
    # GB200 NVL72: FP4 20 PF sparse per GPU = 10 PF dense; 152 x 4 x 8192 x 2007.7 MHz = 10.0 PF.
    gb200 = load_gpu("gb200")
    assert derived_peak_tflops(gb200)["fp4"] == pytest.approx(152 * 4 * 8192 * 2007.7e6 / 1e12, rel=1e-9)
    assert peak_tflops(gb200, "fp4") == 10000
    # GB300: 1080 PF dense FP4 for 72 GPUs = 15 PF each; RTX 5090: 3352 sparse 'AI TOPS' / 2.
    assert peak_tflops(load_gpu("gb300"), "fp4") == pytest.approx(1080_000 / 72)
    assert peak_tflops(load_gpu("5090"), "fp4") == 3352 / 2
    assert peak_tflops(load_gpu("mi355x"), "fp4") == pytest.approx(10066.3)
    # Hopper has none: asking for it names what the GPU has.
    with pytest.raises(LLMCalcError, match="no fp4 tensor peak"):
        peak_tflops(load_gpu("h100"), "fp4")


def test_fp4_is_the_only_new_tensor_dtype_key() -> None:
    base = {"name": "x", "arch": "Blackwell", "memory_gb": 1, "hbm_tb_s": 1}
    ok = spec_from_mapping(GPUSpec, base | {"datasheet_peak_tflops": {"fp4": 1.0}}, "x.yaml", "--gpu")
    assert ok.datasheet_peak_tflops == {"fp4": 1.0}
    with pytest.raises(LLMCalcError, match="--gpu"):
        spec_from_mapping(GPUSpec, base | {"datasheet_peak_tflops": {"fp6": 1.0}}, "x.yaml", "--gpu")


@pytest.mark.parametrize(("alias", "name"), sorted(ALIASES.items()))
def test_aliases_resolve(alias: str, name: str, cli) -> None:
    assert load_gpu(alias).name == name
    r = cli("show", alias, "--json")
    assert r.code == 0, r.err
    assert r.json()["name"] == name


def test_gpus_lists_them_and_fits_100_columns(cli, monkeypatch) -> None:
    r = cli("gpus", "--json")
    assert r.code == 0, r.err
    assert set(DATASHEET) <= {g["name"] for g in r.json()}
    from calc.report import render

    monkeypatch.setattr(render.console, "_width", 100)
    table = cli("gpus")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert max(len(line) for line in lines) <= 100
    for name in DATASHEET:  # each name whole in its cell, not folded onto a second line
        assert sum(line.startswith(f"│ {name} ") for line in lines) == 1, name


def test_node_types() -> None:
    # GB200 NVL72: one NVLink domain of 72 GPUs; NVLink5 1.8 TB/s bidirectional = 900 GB/s per
    # direction; one 400 Gb/s NIC per GPU = 50 GB/s (GB300: 800 Gb/s ConnectX-8 = 100 GB/s).
    nvl72 = load_system("nvl72")
    assert (nvl72.gpu, nvl72.gpus_per_node, nvl72.intra_node_gb_s, nvl72.inter_node_gb_s) == ("gb200", 72, 900, 50)
    gb300 = load_system("gb300-nvl72")
    assert (gb300.gpus_per_node, gb300.inter_node_gb_s) == (72, 100)
    assert load_system("hgx-b300").gpu == "b300"
    # MI355X: 7 links x 153.6 GB/s bidirectional = 1075.2 aggregate, 537.6 per direction.
    assert load_system("mi355x-platform").intra_node_gb_s == pytest.approx(7 * 153.6 / 2)
    # PCIe 5.0 x16: 32 GT/s x 16 lanes x 128/130 / 8 = 63 GB/s per direction.
    assert load_system("pcie-rtx-pro-6000").intra_node_gb_s == pytest.approx(32 * 16 * 128 / 130 / 8, abs=0.1)
    names = {s.name for s in list_systems()}
    assert {"gb200-nvl72", "gb300-nvl72", "hgx-b300", "mi325x-platform", "mi355x-platform"} <= names


@pytest.mark.parametrize("name, gpu", [
    ("NVIDIA B200", "b200"), ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA A100-SXM4-80GB", "a100-80g"),
    ("NVIDIA GeForce RTX 4090", "rtx4090"), ("AMD Instinct MI300X", "mi300x"), ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "pro6000"), ("h100-80gb", "h100-sxm"),
])
def test_device_query_names_resolve(name: str, gpu: str) -> None:
    # as nvidia-smi --query-gpu=name / amd-smi print them (QA: "NVIDIA B200" was offered GB200)
    assert load_gpu(name).name == gpu
