"""Checkpoints as shipped against their published safetensors totals (issue 22): fbgemm_fp8, compressed-tensors,
ModelOpt NVFP4 and AutoGPTQ. Published figures and sources are in benchmarks/data/checkpoints.json; each total
below is worked out by hand from the tensor layout of the format (the comments), then compared with the figure.

Llama-3.1-8B: per block the Linear weights are 4096*(4096 + 1024 + 1024 + 4096) + 3*4096*14336 = 218,103,808
(x 32 = 6,979,321,856), 32 x 43,008 output rows and 32 x 38,912 input columns (q/k/v/gate/up 5 x 4096 in, o 4096,
down 14336); 224 Linears. bf16 outside: embedding + untied head 2 x 128256*4096*2 = 2,101,346,304, norms
65*4096*2 = 532,480.
Llama-3.3-70B: per block 8192*(8192 + 1024 + 1024 + 8192) + 3*8192*28672 = 855,638,016 (x 80 = 68,451,041,280),
83,968 output rows and 6*8192 + 28672 = 77,824 input columns per block; 560 Linears. bf16 outside: 2 x
128256*8192*2 = 4,202,692,608, norms 161*8192*2 = 2,637,824.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calc.memory.weights import weight_bytes_by_group
from calc.sources.catalog import load_model
from calc.sources.hf import model_from_hf_config

DATA = Path(__file__).resolve().parents[1] / "benchmarks/data"
PUBLISHED = {row["model"]: row for row in json.loads((DATA / "checkpoints.json").read_text())["checkpoints"]}

L8_OUTSIDE = 2_101_346_304 + 532_480
L70_OUTSIDE = 4_202_692_608 + 2_637_824

HAND = {
    # compressed-tensors fp8 channel, dynamic activations: 1 B/weight + bf16 scale per output row.
    "configs/llama-3.1-8b-instruct-fp8-dynamic.json": 6_979_321_856 + 32 * 43_008 * 2 + L8_OUTSIDE,
    # AutoGPTQ int4 g128: qweight n/2, fp16 scales n/128*2, qzeros n/128/2, int32 g_idx per input column, and the
    # zero fp16 bias AutoGPTQ 0.7.1 writes per QuantLinear (2 B per output row).
    "configs/llama-3.1-8b-instruct-w4a16-gptq.json": 3_489_660_928 + 109_051_904 + 27_262_976 + 32 * 38_912 * 4
    + 32 * 43_008 * 2 + L8_OUTSIDE,
    # compressed-tensors pack-quantized int4 g128 actorder group: n/2 + bf16 scales n/128*2 + weight_shape 2 x int64
    # per Linear + int32 weight_g_idx per input column.
    "configs/llama-3.3-70b-instruct-w4a16.json": 34_225_520_640 + 1_069_547_520 + 560 * 16 + 80 * 77_824 * 4
    + L70_OUTSIDE,
    # ModelOpt NVFP4 g16, lm_head excluded: n/2 + one e4m3 scale per 16 + fp32 weight_scale_2 and input_scale per
    # Linear (the FP8 KV-cache setting adds no tensor: the total matches without k/v scales).
    "configs/llama-3.3-70b-instruct-nvfp4.json": 34_225_520_640 + 4_278_190_080 + 560 * 8 + L70_OUTSIDE,
    # fbgemm_fp8 (Meta): fp8 + fp32 weight_scale per output row for the MLPs of layers 1..124 only; attention, layers
    # 0 and 125 and lm_head bf16. MLP per block 3*16384*53248 = 2,617,245,696 weights and 2*53,248 + 16,384 output
    # rows; attention per block 16384*(16384 + 2*1024 + 16384) = 570,425,344; norms 2 per block + the final one.
    "corpus/configs/llama-3.1-405b-instruct-fp8.json": 124 * (2_617_245_696 + 4 * (2 * 53_248 + 16_384))
    + 2 * 2_617_245_696 * 2 + 126 * 570_425_344 * 2 + 2 * 128_256 * 16_384 * 2 + (126 * 2 + 1) * 16_384 * 2,
}


def _shipped(name: str) -> int:
    return sum(weight_bytes_by_group(load_model(str(DATA / name))).values())


@pytest.mark.parametrize("name", sorted(HAND))
def test_checkpoint_priced_as_hand_worked_and_within_1pct_of_published(name: str) -> None:
    row = PUBLISHED[name]
    assert _shipped(name) == HAND[name]
    assert abs(HAND[name] / row["published_bytes"] - 1) < 0.01
    if row.get("exact", True):  # a byte-exact safetensors total: every tensor is accounted for
        assert HAND[name] == row["published_bytes"]


def test_405b_fp8_published_gib_rounding_holds() -> None:
    # "454 GB" (GiB) bounds the total to [453.5, 454.5) GiB; 487,229,259,776 B is 453.77 GiB
    assert 453.5 * 2**30 <= HAND["corpus/configs/llama-3.1-405b-instruct-fp8.json"] < 454.5 * 2**30


TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 100, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16"}


def _attention(q: dict, **config) -> int:
    return weight_bytes_by_group(model_from_hf_config({**TINY, **config, "quantization_config": q}))["attention"]


def test_compressed_tensors_actorder_group_adds_g_idx() -> None:
    # 64x64 int4 g32 packed: 2048 + 64*2*2 scales + 16 weight_shape = 2320; actorder group + 64 inputs x int32.
    w = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 32}
    q = {"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
         "config_groups": {"group_0": {"targets": ["Linear"], "weights": w}}}
    assert _attention(q) == 2 * 4 * 2320
    for order in ("group", "dynamic", True):
        q["config_groups"]["group_0"]["weights"] = {**w, "actorder": order}
        assert _attention(q) == 2 * 4 * (2320 + 64 * 4)
    for order in ("weight", "static", None, False):  # reorders the weight only: no g_idx stored
        q["config_groups"]["group_0"]["weights"] = {**w, "actorder": order}
        assert _attention(q) == 2 * 4 * 2320


def test_gptq_bias_only_where_autogptq_wrote_the_config() -> None:
    # 64x64 int4 g32: 2048 + fp16 scales 2*64*2 + qzeros 2*64/2 + g_idx 64*4 = 2624; AutoGPTQ adds 64 x fp16 bias.
    plain = {"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True, "desc_act": False}
    assert _attention(plain) == 2 * 4 * 2624
    autogptq = {**plain, "model_name_or_path": None, "model_file_base_name": "model", "is_marlin_format": False}
    assert _attention(autogptq) == 2 * 4 * (2624 + 128)
    gptqmodel = {**autogptq, "meta": {"quantizer": ["gptqmodel:1.7.0"]}}
    assert _attention(gptqmodel) == 2 * 4 * 2624
    # a Linear with its own bias (attention_bias: q, k, v, o biased): AutoGPTQ stores that one bias, which the
    # parameter count holds already (64 x bf16), not a second zero one: the same 2624 + 128 a matrix
    assert _attention(autogptq, attention_bias=True) == 2 * 4 * (2624 + 128)
    assert _attention(plain, attention_bias=True) == 2 * 4 * (2624 + 128)
