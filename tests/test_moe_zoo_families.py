"""MiniMax-M2, LongCat-Flash, Arcee AFM and AFMoE (Trinity) from config.json fixtures (tests/fixtures/hf, sources
and what was assembled in SOURCES.md). Every total is worked out by hand from the shapes in the family's modeling
file (comments), checked against the model card's rounded figure, and never read back from the code's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calc.errors import LLMCalcError
from calc.memory.kv import kv_cache_bytes_for_tokens, kv_cache_bytes_per_token
from calc.model.params import count_params
from calc.sources.catalog import load_model
from calc.sources.hf import hf_mapping, model_from_hf_config

FIXTURES = Path(__file__).parent / "fixtures" / "hf"

# MiniMax-M2 (H 3072, 62 layers, 48 heads / 8 KV of 128, 256 experts of 1536, top-8, vocab 200064, untied):
#   attention q 3072*6144 + k,v 2*3072*1024 + o 6144*3072 = 44,040,192; q_norm 6144 + k_norm 1024 (RMSNorm over the
#   whole projection, qk_norm_type per_layer) = 7,168; experts 256 x 3*3072*1536 = 3,623,878,656 (one: 14,155,776);
#   gate 3072*256 = 786,432 + e_score_correction_bias 256; norms 2*3072
#   -> 3,668,718,848 per layer; 62 x 3,668,718,848 + 2*200064*3072 + 3072 = 228,689,764,864. Card: 230B total.
#   active: 62 x (44,040,192 + 7,168 + 8 x 14,155,776 + 786,688 + 6,144) + 1,229,196,288 = 11,030,553,088
MINIMAX_M2 = 228_689_764_864
MINIMAX_M2_ACTIVE = 62 * (44_040_192 + 7_168 + 8 * 14_155_776 + 786_688 + 6_144) + 2 * 200064 * 3072 + 3072
# LongCat-Flash-Chat (H 6144, 28 layers of 2 sublayers, 64 heads, MLA r_q 1536 / r_kv 512 / nope 128 / rope 64 / v 128,
# dense MLPs of 12288, 512 FFN experts of 2048 + 256 zero experts, top-12, vocab 131072, untied):
#   MLA q_a 6144*1536 + 1536 + q_b 1536*64*192 + kv_a 6144*576 + 512 + kv_b 512*64*256 + o 8192*6144 = 90,572,800
#   dense MLP 3*6144*12288 = 226,492,416; one expert 3*6144*2048 = 37,748,736
#   MoE 512 x 37,748,736 = 19,327,352,832 + router 6144*768 = 4,718,592 + correction bias 768
#   layer = 2 x 90,572,800 + 2 x 226,492,416 + 19,327,352,832 + 4,718,592 + 768 + 4 x 6144 = 19,966,227,200
#   28 x 19,966,227,200 + 2*131072*6144 + 6144 = 560,664,980,480. Card: 560B total.
#   active with the expected 8 FFN experts (12 x 512 / 768): 28 x (19,966,227,200 - 504 x 37,748,736) + 1,610,618,880
LONGCAT = 560_664_980_480
LONGCAT_EXPERT = 3 * 6144 * 2048
LONGCAT_ACTIVE = 28 * (19_966_227_200 - 504 * LONGCAT_EXPERT) + 2 * 131072 * 6144 + 6144
# AFM-4.5B (H 2560, 36 layers, 20 heads / 4 KV of 128, ungated ReLU^2 MLP of 18432, vocab 128004, untied):
#   attention 2*2560*2560 + 2*2560*512 = 15,728,640; MLP up + down 2*2560*18432 = 94,371,840; norms 2*2560
#   36 x 110,105,600 + 2*128004*2560 + 2560 = 4,619,184,640. Card / name: 4.5B.
AFM = 4_619_184_640
# Trinity-Mini (H 2048, 32 layers, 32 heads / 4 KV of 128, 2 dense layers of 6144, 128 experts of 1024 top-8,
# 1 shared expert of 1024, vocab 200192, untied):
#   attention q 2048*4096 + k,v 2*2048*512 + o 4096*2048 + gate_proj 2048*4096 = 27,262,976 + q/k norm 2*128
#   norms 4*2048 = 8,192; dense MLP 3*2048*6144 = 37,748,736 -> dense layer 65,020,160
#   MoE 128 x 3*2048*1024 = 805,306,368 + shared 6,291,456 + router 2048*128 + expert_bias 128 -> layer 839,131,520
#   2 x 65,020,160 + 30 x 839,131,520 + 2*200192*2048 + 2048 = 26,123,974,400. Card: 26B total, 3B active.
#   active: 30 x (27,271,424 + 9 x 6,291,456 + 262,272) + 130,040,320 + 819,988,480 = 3,474,732,800
TRINITY = 26_123_974_400
TRINITY_ACTIVE = 30 * (27_271_424 + 9 * 6_291_456 + 262_272) + 2 * 65_020_160 + 2 * 200192 * 2048 + 2048

TOTALS = {
    "minimax-m2": (MINIMAX_M2, MINIMAX_M2_ACTIVE),
    "longcat-flash-chat": (LONGCAT, LONGCAT_ACTIVE),
    "afm-4.5b": (AFM, AFM),
    "trinity-mini": (TRINITY, TRINITY_ACTIVE),
}


def _data(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _load(name: str):
    return load_model(str(FIXTURES / f"{name}.json"))


def test_hand_worked_blocks() -> None:
    assert 3072 * 6144 + 2 * 3072 * 1024 + 6144 * 3072 == 44_040_192
    assert 44_040_192 + 7_168 + 256 * 3 * 3072 * 1536 + 3072 * 256 + 256 + 2 * 3072 == 3_668_718_848
    assert 62 * 3_668_718_848 + 2 * 200064 * 3072 + 3072 == MINIMAX_M2
    mla = 6144 * 1536 + 1536 + 1536 * 64 * 192 + 6144 * 576 + 512 + 512 * 64 * 256 + 8192 * 6144
    assert mla == 90_572_800
    layer = 2 * mla + 2 * 3 * 6144 * 12288 + 512 * LONGCAT_EXPERT + 6144 * 768 + 768 + 4 * 6144
    assert layer == 19_966_227_200 and 28 * layer + 2 * 131072 * 6144 + 6144 == LONGCAT
    assert 36 * (15_728_640 + 2 * 2560 * 18432 + 2 * 2560) + 2 * 128004 * 2560 + 2560 == AFM
    assert 2 * 65_020_160 + 30 * 839_131_520 + 2 * 200192 * 2048 + 2048 == TRINITY


@pytest.mark.parametrize("name", sorted(TOTALS))
def test_real_config_total_is_exact(name: str) -> None:
    counted = count_params(_load(name))
    assert (counted.total_params, counted.active_params) == TOTALS[name]


def test_published_figures() -> None:
    # MiniMax-M2 card: 230B total, 10B active (the active figure leaves out the embedding gather).
    assert round(MINIMAX_M2 / 1e10) * 10 == 230
    assert round((MINIMAX_M2_ACTIVE - 200064 * 3072) / 1e9) == 10
    # LongCat-Flash (arXiv 2509.01322; card): 560B total, 18.6B-31.3B active (~27B on average), embedding gather left
    # out; 0 and 12 FFN experts bound it, the expected 8 gives the average. The report truncates to 0.1B.
    no_experts = LONGCAT_ACTIVE - 8 * 28 * LONGCAT_EXPERT - 131072 * 6144
    assert int(LONGCAT / 1e9) == 560
    assert (int(no_experts / 1e8), int((no_experts + 12 * 28 * LONGCAT_EXPERT) / 1e8)) == (186, 313)
    assert round((LONGCAT_ACTIVE - 131072 * 6144) / 1e9) == 27
    # AFM-4.5B: the name's 4.5B; the count from the shapes is 4.62B (3.96B without the two embeddings).
    assert round(AFM / 1e9, 1) == 4.6 and round((AFM - 2 * 128004 * 2560) / 1e9, 1) == 4.0
    # Trinity-Mini card: 26B total, 3B active (embedding gather left out: 3.06B).
    assert int(TRINITY / 1e9) == 26 and int((TRINITY_ACTIVE - 200192 * 2048) / 1e9) == 3


def test_kv_bytes_per_token_by_hand() -> None:
    assert kv_cache_bytes_per_token(_load("minimax-m2")) == 62 * 2 * 8 * 128 * 2  # every layer full, GQA 8 x 128
    # LongCat: 56 MLA sublayers each cache the 512-wide latent + the 64-wide RoPE key
    assert kv_cache_bytes_per_token(_load("longcat-flash-chat")) == 56 * (512 + 64) * 2
    assert kv_cache_bytes_per_token(_load("afm-4.5b")) == 36 * 2 * 4 * 128 * 2
    trinity = _load("trinity-mini")
    assert kv_cache_bytes_per_token(trinity) == 32 * 2 * 4 * 128 * 2
    # 24 sliding layers keep at most their 2048-token window, the 8 full layers every token
    assert kv_cache_bytes_for_tokens(trinity, 100_000) == (8 * 100_000 + 24 * 2048) * 2 * 4 * 128 * 2


def test_longcat_zero_experts_take_router_slots_only() -> None:
    data = _data("longcat-flash-chat")
    spec = model_from_hf_config(data)
    assert (spec.num_layers, spec.ffn_types[:2], spec.moe.router_slots) == (56, ["moe", "dense"], 768)
    assert spec.moe.experts_per_token == 8  # 12 slots x 512 / 768: the FFN experts a token reaches on average
    # without identity experts: the router and its bias shrink by 256 slots a layer, no expert weight moves,
    # and all 12 picks are FFN experts
    plain = count_params(model_from_hf_config(data | {"zero_expert_num": 0}))
    assert LONGCAT - plain.total_params == 28 * (6144 * 256 + 256)
    assert plain.active_params - LONGCAT_ACTIVE == 28 * (4 * LONGCAT_EXPERT - 6144 * 256 - 256)
    with pytest.raises(LLMCalcError, match="moe_topk"):
        model_from_hf_config(data | {"moe_topk": 769})


def test_arcee_mlp_is_ungated() -> None:
    spec = model_from_hf_config(_data("afm-4.5b"))
    assert (spec.gated_mlp, spec.activation, spec.head_dim) == (False, "relu2", 128)
    assert count_params(spec).components["mlp"] == 36 * 2 * 2560 * 18432
    # yarn x20 over 4096 = 81920 is not max_position_embeddings (65536): the config's length is the usable one
    assert spec.context_window == 65536


def test_trinity_layout_and_defaults() -> None:
    data = _data("trinity-mini")
    spec = model_from_hf_config(data)
    assert [i for i, k in enumerate(spec.layer_types) if k == "full"] == [3, 7, 11, 15, 19, 23, 27, 31]
    assert (spec.sliding_window, spec.norms_per_layer, spec.moe.num_dense_layers) == (2048, 4, 2)
    # without layer_types, configuration_afmoe's rule (every global_attn_every_n_layers-th layer full) gives the same
    assert model_from_hf_config({k: v for k, v in data.items() if k != "layer_types"}).layer_types == spec.layer_types
    # no experts or every layer dense: a dense model
    assert "moe" not in hf_mapping(data | {"num_dense_layers": 32})


def test_import_accepts_the_fixtures() -> None:
    for name in TOTALS:
        hf_mapping(_data(name), strict=True)  # every shape is in the config, none from a family default
    with pytest.raises(LLMCalcError, match="zero_expert_num"):
        hf_mapping({k: v for k, v in _data("longcat-flash-chat").items() if k != "zero_expert_num"}, strict=True)


@pytest.mark.parametrize(("name", "tp"), [("minimax-m2", "4"), ("longcat-flash-chat", "16"), ("afm-4.5b", "1"),
                                          ("trinity-mini", "1")])
def test_cli_params_and_memory(cli, name: str, tp: str) -> None:
    path = str(FIXTURES / f"{name}.json")
    r = cli("params", path)
    assert r.code == 0 and f"{TOTALS[name][0]:,}" in r.out
    if tp == "1":
        assert cli("memory", path, "--gpu", "h100").code == 0
    else:  # one H100 cannot hold 229B / 561B: refused with the GPU count it needs, then fits on that many
        refused = cli("memory", path, "--gpu", "h100")
        assert refused.code == 2 and "needs" in refused.err
        assert cli("memory", path, "--gpu", "h100", "--tp", tp).code == 0


def test_moe_active_width_and_routed_share() -> None:
    """DeepSeek-V3 (config.json: 8 routed experts per token of moe_intermediate_size 2048, 1 shared expert of the
    same width): a token passes 8 x 2048 + 2048 = 18,432 FFN columns, 16,384 / 18,432 = 8/9 of them routed;
    Mixtral 8x7B (top-2 of 14,336, no shared expert): 28,672, all routed."""
    v3, mixtral = load_model("deepseek-v3").moe, load_model("mixtral-8x7b").moe
    assert (v3.active_width, v3.routed_share) == (18_432, pytest.approx(8 / 9))
    assert (mixtral.active_width, mixtral.routed_share) == (28_672, 1.0)
