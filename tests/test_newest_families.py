"""The newest families (issue 22, fourth pass), from config.json fixtures (tests/fixtures/hf, sources in
SOURCES.md). Every total is worked out by hand from the shapes in the family's modeling file (comments),
and agrees with the model card's rounded figure quoted beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calc.errors import LLMCalcError
from calc.model.params import count_params
from calc.sources.catalog import load_model
from calc.sources.hf import model_from_hf_config

FIXTURES = Path(__file__).parent / "fixtures" / "hf"

# ERNIE-4.5-21B-A3B (H 2560, 28 layers, 20 heads / 4 KV of 128; layer 0 dense, layers 1..27 MoE):
#   attention 2*2560*2560 + 2*2560*512 = 15,728,640; norms 2*2560
#   dense MLP 3*2560*12288 = 94,371,840
#   MoE 64 x 3*2560*1536 = 754,974,720 + shared (2 experts fused) 3*2560*3072 = 23,592,960 + router 2560*64
#       + e_score_correction_bias 64 = 778,731,584
#   110,105,600 + 27 x 794,465,344 + 103424*2560 (tied) + 2560 = 21,825,437,888. Card: 21B total, 3B activated.
#   active: 27 x (15,728,640 + 6 x 11,796,480 + 23,592,960 + 163,840 + 64 + 5120) + 110,105,600 + 264,768,000
ERNIE = 21_825_437_888
ERNIE_ACTIVE = 110_105_600 + 27 * 110_269_504 + 103424 * 2560 + 2560
# Apertus-8B (H 4096, 32 layers, 32 heads / 8 KV of 128, plain MLP of 21504 with xIELU):
#   attention 2*4096^2 + 2*4096*1024 = 41,943,040 + q/k norms 2*128; MLP up + down 2*4096*21504 = 176,160,768
#   + xIELU alpha_p, alpha_n 2; norms 2*4096 -> 218,112,258 per layer
#   32 x 218,112,258 + 2 x 131072*4096 (untied) + 4096 = 8,053,338,176. Card: 8B.
APERTUS = 8_053_338_176

TOTALS = {"ernie-4.5-21b-a3b-pt": (ERNIE, ERNIE_ACTIVE), "apertus-8b-2509": (APERTUS, APERTUS)}


def _load(name: str):
    return load_model(str(FIXTURES / f"{name}.json"))


@pytest.mark.parametrize("name", sorted(TOTALS))
def test_real_config_total_is_exact(name: str) -> None:
    total, active = TOTALS[name]
    counted = count_params(_load(name))
    assert (counted.total_params, counted.active_params) == (total, active)


@pytest.mark.parametrize(("name", "catalog"), [("ernie-4.5-21b-a3b-pt", "ernie4.5-21b-a3b"),
                                                   ("apertus-8b-2509", "apertus-8b")])
def test_catalog_entry_counts_the_same(name: str, catalog: str) -> None:
    assert count_params(load_model(catalog)).total_params == TOTALS[name][0]


def test_hand_worked_blocks() -> None:
    assert 2 * 2560 * 2560 + 2 * 2560 * 512 == 15_728_640
    assert 64 * 3 * 2560 * 1536 + 3 * 2560 * 3072 + 2560 * 64 + 64 == 778_731_584
    assert 15_728_640 + 3 * 2560 * 12288 + 2 * 2560 + 27 * (15_728_640 + 778_731_584 + 2 * 2560) \
        + 103424 * 2560 + 2560 == ERNIE
    assert 32 * (41_943_040 + 2 * 128 + 2 * 4096 * 21504 + 2 + 2 * 4096) + 2 * 131072 * 4096 + 4096 == APERTUS
    assert ERNIE // 10**9 == 21 and ERNIE_ACTIVE // 10**9 == 3  # the card truncates: "21B", "3B"


def test_ernie_moe_layer_range() -> None:
    data = json.loads((FIXTURES / "ernie-4.5-21b-a3b-pt.json").read_text())
    # interval 2 from layer 1 to 6: MoE at 1, 3, 5 (modeling_ernie4_5_moe: (i + 1) % interval == 0, start <= i <= end)
    spec = model_from_hf_config(data | {"moe_layer_interval": 2, "moe_layer_end_index": 6})
    assert [i for i, f in enumerate(spec.ffn_types) if f == "moe"] == [1, 3, 5]
    # end -1 means the last layer (configuration_ernie4_5_moe)
    assert model_from_hf_config(data | {"moe_layer_end_index": -1}).ffn_types.count("moe") == 27
    with pytest.raises(LLMCalcError, match="use_bias"):
        model_from_hf_config(data | {"use_bias": True})


def test_apertus_xielu_scalars_only_with_xielu() -> None:
    data = json.loads((FIXTURES / "apertus-8b-2509.json").read_text())
    spec = model_from_hf_config(data)
    assert (spec.gated_mlp, spec.activation, spec.qk_norm) == (False, "xielu", "head")
    # the same block with a parameterless activation loses exactly the 2 xIELU scalars per layer
    assert count_params(model_from_hf_config(data | {"hidden_act": "relu2"})).total_params == APERTUS - 32 * 2
    # llama3 RoPE scaling: max_position_embeddings (65536 = 8 x 8192) already includes it
    assert spec.context_window == 65536
