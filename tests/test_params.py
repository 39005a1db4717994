"""Exact parameter counts against published figures and hand derivations (reference section 1)."""

from __future__ import annotations

import pytest

from calc.model.params import count_params
from calc.sources.catalog import load_model

# Published totals (HF model cards / safetensors metadata / papers). Where a figure is derived by
# hand, the derivation is in the comment.
PUBLISHED = {
    "llama2-7b": 6_738_415_616,
    "llama2-13b": 13_015_864_320,
    "llama2-70b": 68_976_648_192,
    "llama3-8b": 8_030_261_248,
    "llama3-70b": 70_553_706_496,
    "llama3.1-405b": 405_853_388_800,
    "mistral-7b": 7_241_732_096,
    "qwen2-7b": 7_615_616_512,
    "qwen2-72b": 72_706_203_648,
    "gemma-7b": 8_537_680_896,
    "gpt2": 124_439_808,
    "gpt2-xl": 1_557_611_200,
    "gpt-neox-20b": 20_554_567_680,
    "falcon-7b": 6_921_720_704,
    "bloom-7b1": 7_069_016_064,
    "opt-6.7b": 6_658_473_984,
    "phi-2": 2_779_683_840,
}


@pytest.mark.parametrize(("name", "expected"), sorted(PUBLISHED.items()))
def test_published_totals(name: str, expected: int) -> None:
    assert count_params(load_model(name)).total_params == expected


def test_mixtral_total_and_active() -> None:
    # Per layer: attention 4096*4096*2 + 4096*1024*2 = 41,943,040; 8 experts x 3*4096*14336
    # = 1,409,286,144; router 4096*8 = 32,768; 2 RMSNorms 8,192 -> 1,451,270,144.
    # Total = 32*1,451,270,144 + 2*32000*4096 + 4096 = 46,702,792,704 (published 46.7B).
    # Active: experts 2 of 8 -> 41,943,040 + 352,321,536 + 32,768 + 8,192 = 394,305,536 per layer
    # -> 32*394,305,536 + 262,144,000 + 4096 = 12,879,925,248 (published 12.9B).
    p = count_params(load_model("mixtral-8x7b"))
    assert p.total_params == 46_702_792_704
    assert p.active_params == 12_879_925_248


def test_qkv_bias_qwen2_7b() -> None:
    # q/k/v biases: 3584 + 512 + 512 = 4,608 per layer x 28 layers.
    p = count_params(load_model("qwen2-7b"))
    no_bias = load_model("qwen2-7b").model_copy(update={"qkv_bias": False})
    assert p.total_params - count_params(no_bias).total_params == 28 * 4_608


def test_tied_embedding_gpt2_has_no_head_params() -> None:
    p = count_params(load_model("gpt2"))
    assert p.components["lm_head"] == 0
    assert p.components["embedding"] == 50257 * 768
    assert p.components["position_embedding"] == 1024 * 768


def test_head_dim_not_hidden_over_heads_gemma() -> None:
    # Gemma-7B: d = 256 while H/h = 192. Attention per layer = 4 * 3072 * (16*256) = 50,331,648.
    p = count_params(load_model("gemma-7b"))
    assert p.components["attention"] == 28 * 50_331_648


def test_mqa_falcon_7b_attention() -> None:
    # Falcon-7B: fused QKV 4544 x (71 + 2)*64 = 21,229,568 plus dense 4544^2 = 20,647,936.
    p = count_params(load_model("falcon-7b"))
    assert p.components["attention"] == 32 * (21_229_568 + 20_647_936)


def test_parallel_block_gpt_j() -> None:
    # GPT-J: one ln_1 per layer (2*4096), MLP with biases 2*4096*16384 + 16384 + 4096, attention
    # 4*4096^2 without biases; lm_head with bias. Per layer 201,355,264 x 28 = 5,637,947,392;
    # + wte 50400*4096 = 206,438,400 + lm_head 206,438,400 + 50,400 + ln_f 8,192 = 6,050,882,784.
    assert count_params(load_model("gpt-j-6b")).total_params == 6_050_882_784


def test_falcon_40b_new_decoder() -> None:
    # 60 x [qkv 8192*(128+16)*64 + dense 8192^2 + MLP 2*8192*32768 + 2 LayerNorms 4*8192]
    # = 60 x 679,510,016 = 40,770,600,960; + tied embedding 65024*8192 + ln_f 16384.
    assert count_params(load_model("falcon-40b")).total_params == 40_770_600_960 + 532_676_608 + 16_384


def test_mla_deepseek_v3() -> None:
    # Attention per layer: q_a 7168*1536 + 1536 + q_b 1536*128*192 + kv_a 7168*576 + 512
    #   + kv_b 512*128*256 + o 16384*7168 = 187,107,328.
    # Dense MLP 3*7168*18432 = 396,361,728 (3 layers). MoE layer: 256 x 3*7168*2048
    #   + shared 3*7168*2048 + router 256*7168 + bias 256 = 11,320,164,608 (58 layers).
    # Norms 2*7168 per layer; embeddings 2*129280*7168; final norm 7168.
    # = 61*(187,107,328 + 14,336) + 3*396,361,728 + 58*11,320,164,608 + 1,853,358,080 + 7,168
    # = 671,026,419,200 (published: 671B total).
    p = count_params(load_model("deepseek-v3"))
    assert p.total_params == 671_026_419_200
    # Active: 8 of 256 routed experts. Published "37B activated".
    assert 37e9 < p.active_params < 38e9


def test_textbook_beside_exact() -> None:
    # 12*32*4096^2 + 32000*4096 = 6,573,522,944; (6,573,522,944 - 6,738,415,616)/6,738,415,616 = -2.447%
    p = count_params(load_model("llama2-7b"))
    assert p.textbook_params == 6_573_522_944
    assert p.textbook_diff_pct == pytest.approx(-2.447, abs=1e-3)


def test_components_sum_to_total_for_every_catalog_model() -> None:
    from calc.sources.catalog import list_models

    for m in list_models():
        p = count_params(m)
        assert sum(p.components.values()) == p.total_params, m.name
        assert sum(k.count * k.params_per_layer for k in p.layer_kinds) <= p.total_params


def test_matmul_params_llama2_7b() -> None:
    # Weights multiplied per token: everything but the embedding gather and the 65 RMSNorms:
    # 6,738,415,616 - 131,072,000 - 65*4096 = 6,607,077,376 (the figure).
    assert count_params(load_model("llama2-7b")).matmul_params == 6_607_077_376
