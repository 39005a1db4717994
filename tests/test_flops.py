"""FLOPs with hand-derived values (reference section 2) and properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from calc.model.flops import decode_flops, forward_flops, fused_parallel_shapes
from calc.sources.catalog import load_model


def test_llama2_7b_forward() -> None:
    # 2*2048*6,607,077,376 = 27,062,588,932,096; 4*L*S*S'*h*d = 4*32*2048*2048*32*128 = 2,199,023,255,552.
    assert forward_flops(load_model("llama2-7b"), 1, 2048).forward_flops == 29_261_612_187_648


def test_gpt2_training() -> None:
    # Matmul weights: 12 x (768*2304 + 768^2 + 2*768*3072) = 84,934,656 + tied head 768*50257
    # = 38,597,376 -> 123,532,032. Forward = 2*256*123,532,032 + 4*12*2*128*128*768
    # = 63,248,400,384 + 1,207,959,552 = 64,456,359,936; training = 3x = 193,369,079,808.
    assert forward_flops(load_model("gpt2"), 2, 128).training_flops == 193_369_079_808


def test_gqa_mistral_decode_step() -> None:
    # Mistral-7B matmul weights: 32 x (4096*6144 + 4096^2 + 3*4096*14336) + head 4096*32000
    # = 32 x 218,103,808 + 131,072,000 = 7,110,393,856. One decode step at S' = 1001 (P=1000, t=1):
    # 2*7,110,393,856 + 32*2*32*(128+128)*1001 = 14,220,787,712 + 524,812,288 = 14,745,600,000.
    # GQA changes the K/V projections (4096*1024), not the score FLOPs (32 query heads).
    d = decode_flops(load_model("mistral-7b"), 1, 1000, 1)
    assert d.first_step_flops == 14_745_600_000


def test_mla_decode_step_runs_absorbed_over_the_latent() -> None:
    # DeepSeek-V3 decodes absorbed (DeepSeek-V2 arXiv 2405.04434 sec. 2.1.3): each of 128 heads scores the cached
    # latent + RoPE key (512 + 64) and mixes the latent (512): 2*128*(576+512) = 278,528 FLOPs per key, not the
    # decompressed 2*128*(192+128) = 81,920. One step after P = 4096: 61 layers x 4097 keys = 249,917; matmuls
    # 2 x 36,624,596,992 = 73,249,193,984 (the active matmul weights `flops` prints as M).
    d = decode_flops(load_model("deepseek-v3"), 1, 4096, 1)
    assert d.first_step_flops == 73_249_193_984 + 278_528 * 61 * 4097 == 142_858_076_160
    assert any("81,920 per key" in line for line in d.explain)


def test_moe_mixtral_per_token() -> None:
    # Active matmul weights: 32 x (41,943,040 + 2*176,160,768 + router 32,768) + head 131,072,000
    # = 32 x 394,297,344 + 131,072,000 = 12,748,587,008. Forward B=1, S=1: 2x that
    # + 4*32*1*1*32*128 = 25,497,174,016 + 524,288 = 25,497,698,304.
    assert forward_flops(load_model("mixtral-8x7b"), 1, 1).forward_flops == 25_497_698_304


def test_mla_deepseek_v3_attention_term() -> None:
    # MLA scores use d_qk = 128 + 64 = 192 and the weighted sum d_v = 128:
    # L*2*B*h*(192+128)*S*S' = (61*2*1*128*320 = 4,997,120) * 1024*1024 = 5,239,860,101,120 at S = S' = 1024.
    f = forward_flops(load_model("deepseek-v3"), 1, 1024)
    assert f.forward_attention_flops == 5_239_860_101_120
    # Matmul part: active matmul weights = 671,026,419,200 - 248 idle experts x 44,040,192 x 58 layers
    # (633,474,121,728) - embedding 926,679,040 - norms 1,006,592 - router bias 14,848
    # = 36,624,596,992; times 2 x 1024 tokens.
    assert f.forward_matmul_flops == 2 * 1024 * 36_624_596_992


def test_causal_halves_scores_exactly() -> None:
    # S = S' = 4: pairs 4*5/2 = 10 instead of 16.
    m = load_model("llama2-7b")
    full = forward_flops(m, 1, 4).forward_attention_flops
    causal = forward_flops(m, 1, 4, causal=True).forward_attention_flops
    assert causal * 16 == full * 10


def test_fused_parallel_layer_same_flops_fewer_bytes() -> None:
    # GPT-J, T = 2048 tokens, bf16: QKV [2048,4096]@[4096,12288], MLP-in [2048,4096]@[4096,16384].
    # Fused reads the [2048,4096] input once: saves 2048*4096*2 = 16,777,216 bytes.
    f = fused_parallel_shapes(load_model("gpt-j-6b"), 2048, "bf16")
    assert f.qkv_out == 12288 and f.mlp_in_out == 16384
    assert f.flops_equal
    assert f.bytes_saved == 16_777_216


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 64), s=st.integers(1, 4096))
def test_linear_in_batch_and_training_is_3x(b: int, s: int) -> None:
    m = load_model("llama2-7b")
    one = forward_flops(m, 1, s)
    many = forward_flops(m, b, s)
    assert many.forward_flops == b * one.forward_flops
    assert many.training_flops == 3 * many.forward_flops


@settings(max_examples=40, deadline=None)
@given(s=st.integers(1, 8192))
def test_only_attention_is_quadratic_in_seq(s: int) -> None:
    m = load_model("llama2-7b")
    f1, f2 = forward_flops(m, 1, s), forward_flops(m, 1, 2 * s)
    assert f2.forward_matmul_flops == 2 * f1.forward_matmul_flops
    assert f2.forward_attention_flops == 4 * f1.forward_attention_flops


def test_per_token_inference_tends_to_2x_matmul_params() -> None:
    f = forward_flops(load_model("llama2-7b"), 1, 1)
    assert f.per_token_inference_flops == 2 * f.matmul_params + 4 * 32 * 32 * 128
