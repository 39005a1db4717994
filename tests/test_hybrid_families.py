"""Hybrid attention / state-space families and the newest dense ones, from real config.json files
(tests/fixtures/hf, sources in SOURCES.md). Every total below is worked out by hand from the shapes in the
family's modeling file (comments), and agrees with the model card's figure quoted beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from calc.memory.kv import kv_cache_bytes_for_tokens, kv_cache_bytes_per_token, request_cache_bytes, state_bytes_per_request
from calc.model.flops import decode_flops, forward_flops
from calc.model.params import count_params, layer_kinds
from calc.sources.catalog import load_model

FIXTURES = Path(__file__).parent / "fixtures" / "hf"

# Qwen3-Next-80B-A3B (H 2048, 48 layers, every 4th full attention):
#   gated attention: q_proj 2048*(2*16*256) + k,v 2*2048*(2*256) + o 4096*2048 + q/k norm 2*256 = 27,263,488
#   Gated DeltaNet: in_proj_qkvz 2048*(2*16*128 + 2*32*128) + in_proj_ba 2048*64 + conv1d 8192*4
#                   + dt_bias, A_log 2*32 + norm 128 + out_proj 4096*2048 = 33,718,464
#   MoE: 512 x 3*2048*512 + router 2048*512 + shared 3*2048*512 + shared gate 2048 = 1,614,809,088; norms 2*2048
#   12 x (27,263,488 + 1,614,809,088 + 4096) + 36 x (33,718,464 + 1,614,809,088 + 4096)
#   + 2 x 151936*2048 + 2048 = 79,674,391,296. Card: 80B total.
QWEN3_NEXT = 79_674_391_296
# Nemotron-H-8B (52 blocks "M-M-M-M*-...": 24 Mamba-2, 4 attention, 24 MLP; one RMSNorm each):
#   Mamba-2: in_proj 4096*(2*8192 + 2*8*128 + 128) + conv1d (8192 + 2048)*4 + bias 10240 + 3*128
#            + gated norm 8192 + out_proj 8192*4096 = 109,635,968
#   attention 2*4096^2 + 2*4096*1024 = 41,943,040; MLP (relu2, no gate) 2*4096*21504 = 176,160,768
#   24 x 109,640,064 + 4 x 41,947,136 + 24 x 176,164,864 + 2 x 131072*4096 + 4096 = 8,100,852,736. Card: 8B.
NEMOTRON_H = 8_100_852_736
# Mamba-Codestral-7B (mamba2): 64 x (109,635,968 + 4096) + 2 x 32768*4096 + 4096 = 7,285,403,648. Card: 7.3B.
CODESTRAL = 7_285_403_648
# Jamba-v0.1 (32 layers; attention at i % 8 == 4, MoE at odd i):
#   Mamba-1: in_proj 4096*16384 + conv1d 8192*4 + 8192 + x_proj 8192*(256 + 32) + dt_proj 256*8192 + 8192
#            + A_log 8192*16 + D 8192 + dt/B/C norms 256 + 32 + out_proj 8192*4096 = 105,308,448
#   attention 41,943,040; MLP 3*4096*14336 = 176,160,768; MoE 16 x 176,160,768 + router 4096*16; norms 2*4096
#   12 x 281,477,408 + 16 x 2,923,954,464 + 4 x 218,112,000 + 2 x 65536*4096 + 4096 = 51,570,323,328.
#   Card: 52B total, 12B active (active: 2 of 16 experts).
JAMBA = 51_570_323_328
JAMBA_ACTIVE = JAMBA - 16 * 14 * 176_160_768
# MPT-7B: 32 x (12*4096^2 + 2 LayerNorms without bias 2*4096) + 50432*4096 (tied) + 4096 = 6,649,286,656 (card 6.7B).
MPT = 6_649_286_656
# Minitron-8B (nemotron): 32 x (q 4096*6144 + k,v 2*4096*1024 + o 6144*4096 + 2*4096*16384 + 2 LayerNorm1P 4*4096)
#   + 2 x 256000*4096 + 2*4096 = 8,271,699,968 (card 8B).
MINITRON = 8_271_699_968
# Seed-OSS-36B: 64 x (q 5120*10240 + 10240 + k,v 2*(5120*1024 + 1024) + o 10240*5120 + 3*5120*27648 + 2*5120)
#   + 2 x 155136*5120 + 5120 = 36,151,104,512 (card 36B).
SEED_OSS = 36_151_104_512
# Olmo-3-7B: 32 x (4*4096^2 + q/k norm 2*4096 + 3*4096*11008 + 2*4096) + 2 x 100278*4096 + 4096 = 7,298,011,136.
OLMO3 = 7_298_011_136
# DeepSeek-V3.2-Exp: DeepSeek-V3's 671,026,419,200 + 61 lightning indexers of wq_b 1536*(64*128) + wk 7168*128
#   + k_norm 2*128 + weights_proj 7168*64 = 13,959,424 -> 671,877,944,064; with its MTP layer (V3's 13,465,424,896
#   + one indexer) 685,355,329,792. Card: 685B.
DSV32 = 671_026_419_200 + 61 * 13_959_424
# Falcon-H1-0.5B-Base (36 layers, each attention + Mamba-2 side by side + gated MLP, 2 RMSNorms):
#   attention q 1024*512 + k,v 2*1024*128 + o 512*1024 = 1,310,720
#   Mamba-2 (d_ssm 1536, 24 heads x 64, N 128, 1 group, no gated norm): in_proj 1024*(2*1536 + 2*128 + 24)
#            + conv1d (1536 + 256)*4 + bias 1792 + 3*24 + out_proj 1536*1024 = 5,014,344
#   MLP 3*1024*2048 = 6,291,456; norms 2*1024
#   36 x 12,618,568 + 2 x 32784*1024 + 1024 = 521,411,104. Derived cards (emberian/h-05b-replay): 521M.
FALCON_H1 = 521_411_104


def _load(name: str):
    return load_model(str(FIXTURES / f"{name}.json"))


@pytest.mark.parametrize(("name", "total"), [
    ("qwen3-next-80b-a3b-instruct", QWEN3_NEXT), ("nemotron-h-8b-base-8k", NEMOTRON_H),
    ("mamba-codestral-7b-v0.1", CODESTRAL), ("jamba-v0.1", JAMBA), ("mpt-7b", MPT), ("minitron-8b-base", MINITRON),
    ("seed-oss-36b-instruct", SEED_OSS), ("olmo-3-1025-7b", OLMO3), ("deepseek-v3.2-exp", DSV32),
    ("falcon-h1-0.5b-base", FALCON_H1),
])
def test_real_config_total_is_exact(name: str, total: int) -> None:
    assert count_params(_load(name)).total_params == total


def test_hand_worked_blocks() -> None:
    assert 12 * (27_263_488 + 1_614_809_088 + 4096) + 36 * (33_718_464 + 1_614_809_088 + 4096) \
        + 2 * 151936 * 2048 + 2048 == QWEN3_NEXT
    assert 2048 * (2 * 16 * 128 + 2 * 32 * 128) + 2048 * 64 + 8192 * 4 + 64 + 128 + 4096 * 2048 == 33_718_464
    mamba2 = 4096 * (2 * 8192 + 2 * 8 * 128 + 128) + 10240 * 4 + 10240 + 3 * 128 + 8192 + 8192 * 4096
    assert mamba2 == 109_635_968
    assert 64 * (mamba2 + 4096) + 2 * 32768 * 4096 + 4096 == CODESTRAL
    mamba1 = 4096 * 16384 + 8192 * 4 + 8192 + 8192 * 288 + 256 * 8192 + 8192 + 8192 * 16 + 8192 + 288 + 8192 * 4096
    assert mamba1 == 105_308_448


def test_jamba_active_and_kinds() -> None:
    m = _load("jamba-v0.1")
    assert count_params(m).active_params == JAMBA_ACTIVE
    assert [(k, n) for k, n, _ in layer_kinds(m)] == [("mamba+mlp", 12), ("mamba+moe", 16), ("attention+mlp", 4)]
    assert [i for i, k in enumerate(m.layer_types) if k == "full"] == [4, 12, 20, 28]


def test_deepseek_v32_with_mtp() -> None:
    # The MTP block repeats one MoE layer (its indexer too): 685.36B with MTP, the card's 685B.
    counted = count_params(_load("deepseek-v3.2-exp"))
    assert round(counted.total_params_with_mtp / 1e9) == 685


def test_kv_only_for_softmax_layers() -> None:
    # Qwen3-Next: 12 full layers x 2 (K, V) x 2 KV heads x 256 x 2 B; Nemotron-H and Jamba: 4 x 2 x 8 x 128 x 2 B.
    assert kv_cache_bytes_per_token(_load("qwen3-next-80b-a3b-instruct")) == 12 * 2 * 2 * 256 * 2
    assert kv_cache_bytes_per_token(_load("nemotron-h-8b-base-8k")) == 4 * 2 * 8 * 128 * 2
    assert kv_cache_bytes_per_token(_load("jamba-v0.1")) == 4 * 2 * 8 * 128 * 2
    assert kv_cache_bytes_for_tokens(_load("mamba-codestral-7b-v0.1"), 100_000) == 0


def test_constant_state_per_request() -> None:
    # Qwen3-Next: 36 Gated DeltaNet layers x (conv (2*16*128 + 32*128) x 3 + state 32 x 128 x 128) x 2 B (bf16).
    assert state_bytes_per_request(_load("qwen3-next-80b-a3b-instruct")) == 36 * (8192 * 3 + 32 * 128 * 128) * 2
    # Mamba-2: (conv (8192 + 2*8*128) x 3 + 128 heads x 64 x 128) x 2 B per layer; Jamba: d_in x (3 + 16) x 2 B.
    assert state_bytes_per_request(_load("nemotron-h-8b-base-8k")) == 24 * (10240 * 3 + 128 * 64 * 128) * 2
    assert state_bytes_per_request(_load("mamba-codestral-7b-v0.1")) == 64 * (10240 * 3 + 128 * 64 * 128) * 2
    assert state_bytes_per_request(_load("jamba-v0.1")) == 28 * 8192 * (3 + 16) * 2
    m = _load("qwen3-next-80b-a3b-instruct")
    short, long = (request_cache_bytes(m, t) - kv_cache_bytes_for_tokens(m, t) for t in (10, 200_000))
    assert short == long == state_bytes_per_request(m)
    # TP splits the heads and conv channels: half on each of 2 ranks.
    assert state_bytes_per_request(m, tp=2) * 2 == state_bytes_per_request(m)


def test_serving_admission_counts_the_state() -> None:
    from calc.serving.engine_memory import request_kv_bytes

    m = _load("nemotron-h-8b-base-8k")
    # 8192 tokens -> 8191 slots -> 512 blocks of 16 -> 8192 tokens of KV on 4 layers, + the 24 layers' state.
    assert request_kv_bytes(m, 8192, "bf16", 1, 1, 16) == 8192 * 16_384 + 51_806_208


def test_scan_flops_linear_in_tokens() -> None:
    # Mamba-2 decode step per layer: conv 2*10240*4 + 5 x (128*64*128) state values; 64 layers; matmuls 2 x M.
    m = _load("mamba-codestral-7b-v0.1")
    step = decode_flops(m, 1, 1000, 1).first_step_flops
    assert step == 2 * count_params(m).matmul_params + 64 * (2 * 10240 * 4 + 5 * 128 * 64 * 128)
    assert decode_flops(m, 1, 100_000, 1).first_step_flops == step  # no context term
    f1, f2 = forward_flops(m, 1, 1024).forward_attention_flops, forward_flops(m, 1, 2048).forward_attention_flops
    assert f2 == 2 * f1


def test_a_pure_state_space_model_admits_requests_by_their_state(cli):
    # Mamba-Codestral-7B: 64 layers, each keeping an SSM state of heads x head_dim x d_state = 128 x 64 x 128
    # values and a conv state of (d_inner + 2 x groups x d_state) x (kernel - 1) = (8192 + 2 x 8 x 128) x 3 values,
    # in bf16: 64 x (1,048,576 + 30,720) x 2 = 138,149,888 bytes per request, whatever its length.
    # No softmax layer, so no KV block: vLLM gives each request one page holding its state.
    r = cli("concurrency", str(FIXTURES / "mamba-codestral-7b-v0.1.json"), "--gpu", "h100", "--max-model-len", "8192",
            "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert d["kv_cache_bytes_per_request"] == 138_149_888
    assert d["max_concurrency"] == d["free_bytes"] // 138_149_888 >= 1


def test_serving_step_adds_the_scan_and_reads_the_state() -> None:
    # One decode step of Mamba-Codestral-7B on an H100: no softmax layer, so everything beyond the weight GEMMs is
    # the recurrent update, 64 layers x (conv 2*10240*4 + 5 x 128*64*128) FLOPs, and the bytes beyond the weights
    # are the request's state, 64 x (10240*3 + 128*64*128) x 2 B.
    from calc.serving.assumptions import DEFAULT_ASSUMPTIONS
    from calc.serving.step import step_time, weight_gemm_time
    from calc.sources.catalog import load_gpu

    m, gpu = _load("mamba-codestral-7b-v0.1"), load_gpu("h100")
    st = step_time(m, gpu, DEFAULT_ASSUMPTIONS, decode_seqs=1, decode_context=1000)
    _, gemm_flops, weight_bytes = weight_gemm_time(m, gpu, 1, 1, 1, "bf16", None, 1, DEFAULT_ASSUMPTIONS)
    assert st.flops - gemm_flops == 64 * (2 * 10240 * 4 + 5 * 128 * 64 * 128)
    assert st.bytes_read - weight_bytes == 64 * (10240 * 3 + 128 * 64 * 128) * 2


def test_training_counts_no_attention_on_linear_layers() -> None:
    # Qwen3-Next: 12 of 48 layers are softmax attention; the 36 Gated DeltaNet layers compute no (query, key) pairs.
    from calc.training.cost import attention_share

    assert attention_share(_load("qwen3-next-80b-a3b-instruct"), 4096) == 12 / 48


def test_falcon_h1_parallel_mixer() -> None:
    assert 36 * (1_310_720 + 5_014_344 + 6_291_456 + 2048) + 2 * 32784 * 1024 + 1024 == FALCON_H1
    assert 1024 * (2 * 1536 + 2 * 128 + 24) + 1792 * 4 + 1792 + 3 * 24 + 1536 * 1024 == 5_014_344
    m = _load("falcon-h1-0.5b-base")
    assert count_params(load_model("falcon-h1-0.5b")).total_params == FALCON_H1  # the catalog YAML agrees
    # every layer attends (36 x 2 x 2 KV heads x 64 x 2 B per token) AND keeps a Mamba-2 state:
    # 36 x (conv 1792 x 3 + 24 x 64 x 128) x 2 B, whatever the length.
    assert kv_cache_bytes_per_token(m) == 36 * 2 * 2 * 64 * 2
    assert state_bytes_per_request(m) == 36 * (1792 * 3 + 24 * 64 * 128) * 2
    assert request_cache_bytes(m, 1000) == 1000 * 36 * 2 * 2 * 64 * 2 + 36 * (1792 * 3 + 24 * 64 * 128) * 2


# Bamba-9B (32 layers, attention at 9, 18, 27; every layer a SwiGLU MLP, two RMSNorms):
#   Mamba-2 (128 heads x 64, N 128, 1 group): in_proj 4096*(2*8192 + 2*128 + 128) + conv1d (8192 + 256)*4 + bias 8448
#            + 3*128 + gated norm 8192 + out_proj 8192*4096 = 102,286,976
#   29 x (102,286,976 + 176,160,768 + 8192) + 3 x (41,943,040 + 176,160,768 + 8192) + 2 x 128256*4096 + 4096
#   = 9,780,235,392. Card: 9B.
BAMBA = 9_780_235_392
# Granite-4.0-H-Tiny (40 layers, attention at 5, 15, 25, 35, NoPE; every layer MoE + shared expert, tied embedding):
#   Mamba-2 (48 heads x 64, N 128): 1536*(2*3072 + 2*128 + 48) + (3072 + 256)*4 + 3328 + 3*48 + 3072 + 3072*1536
#            = 14,642,576; attention 2*1536^2 + 2*1536*512 = 6,291,456
#   MoE 64 x 3*1536*512 + router 1536*64 + shared 3*1536*1024 = 155,811,840; norms 2*1536
#   36 x 170,457,488 + 4 x 162,106,368 + 100352*1536 + 1536 = 6,939,037,248. Card: 7B total, 1B active.
GRANITE_TINY = 6_939_037_248
# LFM2-1.2B (16 layers: 6 GQA, 10 short conv; SwiGLU 8192 = 256*ceil(int(2*12288/3)/256); tied embedding):
#   attention 2*2048^2 + 2*2048*512 + q/k norms 2*64 = 10,485,888; short conv 2048*3*2048 + 2048*3 + 2048^2 = 16,783,360
#   6 x (10,485,888 + 3*2048*8192 + 2*2048) + 10 x (16,783,360 + 50,331,648 + 4096) + 65536*2048 + 2048
#   = 1,170,340,608, the figure the model card's table gives.
LFM2 = 1_170_340_608


@pytest.mark.parametrize(("name", "total", "catalog"), [
    ("bamba-9b", BAMBA, "bamba-9b"), ("granite-4.0-h-tiny", GRANITE_TINY, "granite-4-h-tiny"),
    ("lfm2-1.2b", LFM2, "lfm2-1.2b"),
])
def test_ibm_and_liquid_hybrids_exact(name: str, total: int, catalog: str) -> None:
    assert count_params(_load(name)).total_params == total
    assert count_params(load_model(catalog)).total_params == total  # the catalog YAML agrees


def test_ibm_and_liquid_hand_worked_blocks() -> None:
    bamba_mixer = 4096 * (2 * 8192 + 2 * 128 + 128) + 8448 * 4 + 8448 + 3 * 128 + 8192 + 8192 * 4096
    assert bamba_mixer == 102_286_976
    assert 29 * (bamba_mixer + 3 * 4096 * 14336 + 8192) + 3 * (2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 8192) \
        + 2 * 128256 * 4096 + 4096 == BAMBA
    granite_mixer = 1536 * (2 * 3072 + 2 * 128 + 48) + 3328 * 4 + 3328 + 3 * 48 + 3072 + 3072 * 1536
    moe = 64 * 3 * 1536 * 512 + 1536 * 64 + 3 * 1536 * 1024
    assert 36 * (granite_mixer + moe + 3072) + 4 * (2 * 1536**2 + 2 * 1536 * 512 + moe + 3072) + 100352 * 1536 + 1536 \
        == GRANITE_TINY
    # 6 of 64 experts active: 58 idle experts of 3*1536*512 in each of the 40 layers.
    assert count_params(_load("granite-4.0-h-tiny")).active_params == GRANITE_TINY - 40 * 58 * 3 * 1536 * 512
    assert 6 * (2 * 2048**2 + 2 * 2048 * 512 + 128 + 3 * 2048 * 8192 + 4096) \
        + 10 * (2048 * 3 * 2048 + 2048 * 3 + 2048**2 + 3 * 2048 * 8192 + 4096) + 65536 * 2048 + 2048 == LFM2


def test_ibm_and_liquid_cache_and_state() -> None:
    bamba, granite, lfm2 = _load("bamba-9b"), _load("granite-4.0-h-tiny"), _load("lfm2-1.2b")
    # KV only on the attention layers: 3 x 2 x 8 x 128 x 2 B; 4 x 2 x 4 x 128 x 2 B; 6 x 2 x 8 x 64 x 2 B.
    assert kv_cache_bytes_per_token(bamba) == 3 * 2 * 8 * 128 * 2
    assert kv_cache_bytes_per_token(granite) == 4 * 2 * 4 * 128 * 2
    assert kv_cache_bytes_per_token(lfm2) == 6 * 2 * 8 * 64 * 2
    # State per request (bf16): Mamba-2 conv (d_in + 2N) x 3 + heads x P x N; LFM2's conv keeps H x (L_cache - 1).
    assert state_bytes_per_request(bamba) == 29 * (8448 * 3 + 128 * 64 * 128) * 2
    assert state_bytes_per_request(granite) == 36 * (3328 * 3 + 48 * 64 * 128) * 2
    assert state_bytes_per_request(lfm2) == 10 * 2048 * 2 * 2
    assert request_cache_bytes(lfm2, 100_000) - request_cache_bytes(lfm2, 10) == 99_990 * 6 * 2 * 8 * 64 * 2


def test_ibm_and_liquid_layouts_are_refused_when_malformed(tmp_path) -> None:
    import json

    from calc.errors import LLMCalcError

    data = json.loads((FIXTURES / "bamba-9b.json").read_text().replace("Infinity", "1e9"))
    data["attn_layer_indices"] = [40]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LLMCalcError, match="attn_layer_indices"):
        load_model(str(path))
    data = json.loads((FIXTURES / "lfm2-1.2b.json").read_text())
    data["layer_types"] = ["conv"] * 15
    path.write_text(json.dumps(data))
    with pytest.raises(LLMCalcError, match="layer_types"):
        load_model(str(path))
