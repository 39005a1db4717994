"""Pass 21: a generation without its own fitted GEMM plateau (Volta) in the corpus and the fit, and the V100 node
the BigScience tr1-13B rows ran on."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks")]

import corpus_predict as cp  # noqa: E402
from corpus_schema import load_corpus  # noqa: E402

from calc.hardware import efficiency  # noqa: E402
from calc.sources.catalog import load_gpu  # noqa: E402


def test_a_volta_row_reads_the_other_plateau_and_the_deepspeed_factor() -> None:
    """The fit keys a row by the parameters the engine reads for it: V100 has no fitted plateau of its own, so its
    rows read (and inform) "other", never a key the fit does not hold (the first fit run stopped on KeyError 'Volta')."""
    rows = [r for r, _, _ in load_corpus() if r.id.startswith("bigscience-tr1-13b-")]
    assert len(rows) == 2
    for row in rows:
        assert cp.parameter_keys(row) == {"gemm_plateau": "other", "stack_efficiency": "deepspeed"}


def test_the_engine_reads_an_other_override_for_a_generation_without_a_key() -> None:
    v100 = load_gpu("v100-32g")
    shipped = json.loads((ROOT / "calc" / "data" / "fitted_defaults.json").read_text())
    other = shipped["parameters"]["gemm_plateau"]["other"]["value"]
    assert efficiency.gemm_plateau(v100, "fp16") == other
    saved = dict(efficiency.GEMM_PLATEAU)
    try:
        efficiency.GEMM_PLATEAU["other"] = 0.5
        assert efficiency.gemm_plateau(v100, "fp16") == 0.5
        assert efficiency.gemm_plateau(load_gpu("h100"), "bf16") == saved["Hopper"]  # a keyed generation keeps its own
    finally:
        efficiency.GEMM_PLATEAU.clear()
        efficiency.GEMM_PLATEAU.update(saved)


def test_the_v100_node_pairs_talk_over_two_nvlink2_links() -> None:
    """V100 SXM2 datasheet: NVLink 300 GB/s = 6 links x 25 GB/s x 2 directions. On a 4-GPU SXM2 board each GPU reaches
    its 3 peers over 2 links each: a TP 2 pair gets 2 x 25 = 50 GB/s per direction. Omni-Path 400 Gb/s per 4-GPU node:
    400 / 8 / 4 = 12.5 GB/s per GPU."""
    node = yaml.safe_load((ROOT / "benchmarks/data/corpus/configs/jean-zay-v100-32g.yaml").read_text())
    assert node["gpus_per_node"] == 4
    assert node["intra_node_gb_s"] == 300 / 2 / 6 * 2
    assert node["inter_node_gb_s"] == 400 / 8 / 4


def test_four_bit_weight_only_experts_read_their_own_moe_serving_rate() -> None:
    """gpt-oss ships MXFP4 experts: on an fp4 GPU (B200) they run at the fp4 tensor peak and read the Blackwell/fp4
    rate; on H100 / MI300X (no fp4 peak) they are dequantised to bf16 in the kernel (W4A16) and read their own
    "<generation>/w4a16" rate, not the 16-bit grouped GEMM's; a bf16 MoE (Qwen3-30B-A3B) keeps the generation's."""
    from calc.serving.moe import moe_rate_key
    from calc.serving.weights import weight_format
    from calc.sources.catalog import load_model

    oss, qwen = load_model("gpt-oss-120b"), load_model("qwen3-30b-a3b")

    def key(m, gpu_name: str) -> str:
        gpu = load_gpu(gpu_name)
        return moe_rate_key(gpu, weight_format(m, gpu, None).gemm(gpu, "experts", 1024)[1])

    assert key(oss, "h100") == "Hopper/w4a16"
    assert key(oss, "mi300x") == "CDNA3/w4a16"
    assert key(oss, "b200") == "Blackwell/fp4"
    assert key(qwen, "h100") == "Hopper"
    assert moe_rate_key(load_gpu("b200"), "int4") == "Blackwell"  # no w4a16 key where the fit holds none
    gpt_oss_rows = [r for r, _, _ in load_corpus() if r.id.startswith("vllm-30326-gptoss120b-h200")]
    assert gpt_oss_rows and all(cp.parameter_keys(r)["moe_serving_rate"] == "Hopper/w4a16" for r in gpt_oss_rows)


def test_vllm_async_scheduling_rows_keep_their_own_step_overhead_key() -> None:
    """vLLM V1 with --async-scheduling overlaps the next step's host work with the GPU step: its rows read (and
    inform) "vllm-async", never the synchronous V1 "vllm" overhead the engine's --engine vllm prints; the same
    source's engine without the flag stays "vllm", a release before 0.8 "vllm-v0"."""
    rows = {r.id: r for r, _, _ in load_corpus()}
    assert cp.engine_family(rows["vllm-30326-gptoss120b-h200-tp8-conc8-1k1k-output-tps"]) == "vllm-async"
    assert cp.engine_family(rows["gpustack-gptoss20b-h100-vllm-tp1-async-mxfp4-sharegpt"]) == "vllm-async"
    assert cp.engine_family(rows["gpustack-gptoss20b-h100-vllm-tp1-mxfp4-random-32k-input"]) == "vllm"
    assert {cp.engine_family(r) for r in rows.values() if r.id.startswith("dstack-") and r.stack.name == "vllm"} == {"vllm-v0"}


def test_a_band_wholly_on_one_side_of_its_figure_says_so() -> None:
    """An 80% band is the q10-q90 of its group's residuals about the figure; where q10 > 1 (nearly every measured run
    of the group took longer than predicted) the band lies above the figure, and the line says which way."""
    from calc.bands import Band
    from calc.report.confidence import Figure, band_line

    ttft = Figure("serving_ttft", "TTFT", "s")
    above = band_line(ttft, 0.297, Band(low=0.304, high=0.620, level=0.8, rows=44, group="serving_prefill"))
    assert above == ("TTFT 297 ms (304-620, 80%, 44 rows: serving_prefill; the band lies above the figure: this "
                     "group's measurements came out higher than predicted)")
    inside = band_line(ttft, 0.31, Band(low=0.304, high=0.620, level=0.8, rows=44, group="serving_prefill"))
    assert inside == "TTFT 310 ms (304-620, 80%, 44 rows: serving_prefill)"
    below = band_line(Figure("serving_throughput", "tokens/s", "tokens/s"), 9000.0,
                      Band(low=6000.0, high=8000.0, level=0.8, rows=10, group="g"))
    assert below.endswith("; the band lies below the figure: this group's measurements came out lower than predicted)")
