"""Every current family from a real config.json (tests/fixtures/hf, sources in SOURCES.md).

Totals are worked out by hand from the shapes (comments) and agree with the published model-card
figure quoted beside them; MoE rows also check the active count.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calc.model.params import count_params
from calc.sources.catalog import load_model

FIXTURES = Path(__file__).parent / "fixtures" / "hf"

# file: (total, active or None, published figure it rounds to)
EXPECTED = {
    # 36 x [q 4096*4096 + k,v 2*4096*1024 + o 4096*4096 + q/k norm 2*128 + MLP 3*4096*12288 + 2*4096]
    # = 36 x 192,946,432 + 4096 + 2*151936*4096 -> card: 8.2B total, 6.95B non-embedding.
    "qwen3-8b": (8_190_735_360, None, "8.2B"),
    # 48 x [attention 18,874,368 + 256 + 128 x 3*2048*768 + router 2048*128 + 4096] + 2048 + 2*151936*2048;
    # active uses 8 experts: 48 x 56,889,600 + 2048 + 622,329,856. Card: 30.5B total, 3.3B activated.
    "qwen3-30b-a3b": (30_532_122_624, 3_353_032_704, "30.5B / 3.3B"),
    # 26 x [q 1152*1024 + k,v 2*1152*256 + o 1024*1152 + q/k norm 512 + 3*1152*6912 + 4*1152] + 1152
    # + 262144*1152 (tied). Gemma 3 report Table 1: 302M embedding + 698M non-embedding.
    "gemma-3-1b-it": (999_885_952, None, "1B"),
    # Gemma3ForConditionalGeneration: language model 34 x [q 2560*2048 + k,v 2*2560*1024 + o 2048*2560 + q/k norm
    # 2*256 + 3*2560*10240 + 4*2560] + 2560 + 262208*2560 (tied; heads/vocab from Gemma3TextConfig defaults)
    # = 3,880,263,168; SigLIP tower: patch 3*14*14*1152 + 1152, positions 4096*1152, 27 x [4*1152 + 4*(1152^2
    # + 1152) + 2*1152*4304 + 4304 + 1152], post-norm 2*1152 = 416,866,032 (report: 417M); projector
    # 1152*2560 + 1152. Hub: 4.3B.
    "gemma-3-4b-it": (4_300_079_472, 3_880_263_168, "4.3B"),
    # 42 x [44,040,192 + 154,140,672 + 14,336] + 3584 + 256000*3584 (tied). Published 9.24B.
    "gemma-2-9b": (9_241_705_984, None, "9.24B"),
    "mistral-7b-v0.1": (7_241_732_096, None, "7,241,732,096 (REFERENCE.md)"),
    # 40 x [q 5120*4096 + k,v 2*5120*1024 + o 4096*5120 + 3*5120*14336 + 2*5120] + 5120 + 2*131072*5120
    "mistral-nemo-instruct-2407": (12_247_782_400, None, "12.2B"),
    "mistral-small-24b-instruct-2501": (23_572_403_200, None, "24B (23.6B)"),
    # Mistral3ForConditionalGeneration: the 24B language model above + Pixtral: patch 3*14*14*1024 + ln_pre 1024
    # + 24 x [4*1024^2 + 3*1024*4096 + 2*1024]; projector norm 1024 + merger 4096*1024 + 1024*5120 + 5120^2
    # = 438,958,080. Hub: 24B.
    "mistral-small-3.1-24b-instruct-2503": (24_011_361_280, 23_572_403_200, "24B"),
    # 24 x [attention 26,550,080 + sinks 64 + 32 x 2880*8640 + biases 32*8640 + router 2880*32+32 + 2*2880]
    # + 2880 + 2*201088*2880. Model card (arXiv 2508.10925 Table 1): 20.91B total, 3.61B active
    # excluding the embedding gather (ours counts it: 3,608,307,264 + 579,133,440).
    "gpt-oss-20b": (20_914_757_184, 4_187_440_704, "20.91B / 3.61B"),
    "gpt-oss-120b": (116_829_156_672, 5_711_982_912, "116.83B / 5.13B"),
    # dense layer 0: 109,066,240 + 3*4096*10944 + 8192; 45 MoE layers: 109,066,240 + 128 x 3*4096*1408
    # + shared 3*4096*1408 + router 4096*128 + bias 128 + 8192; + 2*151552*4096 + 4096. Published 106B / 12B.
    "glm-4.5-air": (106_852_251_264, 13_424_129_664, "106B / 12B"),
    # 32 x [41,953,280 + 16 x 3*4096*6400 + 4096*16 + 4*4096] + 2*32064*4096 + 32064 + 8192. Card: 41.9B / 6.6B.
    "phi-3.5-moe-instruct": (41_873_153_344, 6_640_999_744, "41.9B / 6.6B"),
    # 32 x [4*4096^2 + q/k norm 2*4096 + 3*4096*11008 + 2*4096] + 4096 + 2*100352*4096. Published 7.30B.
    "olmo-2-1124-7b": (7_298_617_344, None, "7.30B"),
    # 40 x [81,788,928 + 13,312 bias + 2*6144*24576 + 24576 + 6144 + 4*6144] + 2*6144 + 2*49152*6144. 15.96B.
    "starcoder2-15b": (15_957_889_024, None, "15.96B"),
    # 32 x [4096*6144 wqkv + 4096*4096 wo + 3*4096*14336 + 2*4096] + 4096 + 2*92544*4096. Published 7.74B.
    "internlm2_5-7b-chat": (7_737_708_544, None, "7.74B"),
    # 40 x [4*8192^2 + 3*8192*22528 + 8192] + 8192 + 256000*8192 (tied). Published 35B.
    "c4ai-command-r-v01": (34_980_831_232, None, "35B"),
    # 32 x [2*4096^2 + 2*4096*1024 + 3*4096*14336 + 4096] + 4096 + 256000*4096 (tied). Published 8.03B.
    "c4ai-command-r7b-12-2024": (8_028_033_024, None, "8.03B"),
    # 40 x [2*4096^2 + 2*4096*1024 + 3*4096*12800 + 2*4096] + 4096 + 49155*4096 (tied). Published 8.17B.
    "granite-3.1-8b-instruct": (8_170_848_256, None, "8.17B"),
    # 32 x [2*1536^2 + 2*1536*512 + 40 x 3*1536*512 + 1536*40 + 2*1536] + 1536 + 49155*1536. 3.3B / 800M.
    "granite-3.1-3b-a800m-instruct": (3_298_793_472, 882_874_368, "3.3B / 0.8B"),
    # 32 x [2*4096^2 + 2*4096*1024 + 3*4096*14336 + 2*4096] + 4096 + 2*102400*4096. Published 7.82B.
    "exaone-3.5-7.8b-instruct": (7_818_448_896, None, "7.82B"),
    # language model: 48 x [attention 2*5120*5120 + 2*5120*1024 + 16 x 3*5120*8192 + router 5120*16
    # + shared 3*5120*8192 + 2*5120] + 5120 + 2*202048*5120 = 107,769,861,120; vision: unfold patch 3*14*14*1408
    # + class 1408 + positions 577*1408 + 2 LayerNorms 2*2816 + 34 x [4*(1408^2+1408) + 2*1408*5632 + 5632 + 1408
    # + 4*1408] + adapter 5632*4096 + 4096^2 + projector 4096*5120 = 871,932,416. Published 109B / 17B active.
    "llama-4-scout-17b-16e-instruct": (108_641_793_536, 17_172_894_720, "109B / 17B"),
}


def _load(name: str):
    return load_model(str(FIXTURES / f"{name}.json"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_config_total_is_exact(name: str) -> None:
    total, active, _published = EXPECTED[name]
    counted = count_params(_load(name))
    assert counted.total_params == total
    assert counted.active_params == (active if active is not None else total)


def test_every_family_has_a_real_fixture() -> None:
    from calc.sources.hf import MAPPERS

    types = {json.loads(p.read_text()).get("model_type") for p in FIXTURES.glob("*.json")}
    new = {"qwen3", "qwen3_moe", "gemma3_text", "gpt_oss", "glm4_moe", "phimoe", "olmo2", "starcoder2", "cohere",
           "cohere2", "granite", "granitemoe", "internlm2", "mistral", "llama4", "gemma2", "exaone"}
    assert new <= types
    assert types - {"llama4", "gemma3", "mistral3"} <= set(MAPPERS)  # multimodal wrappers map their text_config


def test_gpt_oss_checks_published_active_without_embedding() -> None:
    # The gpt-oss card counts the unembedding but not the embedding gather in "active".
    counted = count_params(_load("gpt-oss-120b"))
    assert round((counted.active_params - 201088 * 2880) / 1e9, 2) == 5.13
    assert round(counted.total_params / 1e9, 2) == 116.83


def test_glm_mtp_counted_separately() -> None:
    # MTP layer: one MoE block 2,341,492,864 + eh_proj 2*4096*4096 + enorm/hnorm 2*4096 + shared_head.norm 4096
    # + its embed/head copies 2*151552*4096 = 3,616,573,568; with MTP 110.5B (the hub's "110B").
    counted = count_params(_load("glm-4.5-air"))
    assert counted.mtp_params == 3_616_573_568
    assert counted.total_params_with_mtp == 106_852_251_264 + 3_616_573_568


def test_layer_attention_from_configs() -> None:
    gemma3 = _load("gemma-3-1b-it")
    assert [i for i, k in enumerate(gemma3.layer_types) if k == "full"] == [5, 11, 17, 23]
    assert gemma3.sliding_window == 512
    assert _load("gemma-2-9b").layer_types[:2] == ["sliding", "full"]
    assert set(_load("mistral-7b-v0.1").layer_types) == {"sliding"}
    scout = _load("llama-4-scout-17b-16e-instruct")
    assert scout.layer_types.count("full") == 12 and scout.attention_chunk_size == 8192
    assert _load("qwen3-8b").layer_types is None
    assert _load("c4ai-command-r7b-12-2024").layer_types[:4] == ["sliding", "sliding", "sliding", "full"]


def test_context_window() -> None:
    # gpt-oss: yarn factor 32 over original 4096 -> max_position_embeddings 131072 already includes it.
    assert _load("gpt-oss-20b").context_window == 131072
    # Qwen3 with the card's yarn snippet (factor 4, original 32768) on max_position_embeddings 32768.
    from calc.sources.hf import model_from_hf_config

    data = json.loads((FIXTURES / "qwen3-8b.json").read_text())
    data |= {"max_position_embeddings": 32768,
             "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}
    assert model_from_hf_config(data).context_window == 131072
