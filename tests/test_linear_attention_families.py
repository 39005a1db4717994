"""MiniMax-M1 (lightning + softmax attention + MoE) and Kimi Linear (Kimi Delta Attention + MLA + MoE), from their
config.json files (tests/fixtures/hf, sources in SOURCES.md). Every total is worked out by hand in the comments from the
shapes of the modeling files, and set beside the model card's figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calc.errors import LLMCalcError
from calc.memory.kv import kv_cache_bytes_for_tokens, kv_cache_bytes_per_token, request_cache_bytes, state_bytes_per_request
from calc.model.mixers import scan_flops_per_token
from calc.model.params import count_params, layer_kinds
from calc.sources.catalog import load_model

FIXTURES = Path(__file__).parent / "fixtures" / "hf"
MINIMAX_FILE = FIXTURES / "minimax-m1-80k.json"
KIMI_FILE = FIXTURES / "kimi-linear-48b-a3b-instruct.json"

# MiniMax-M1 (H 6144, 80 layers, softmax attention at every 8th layer, i.e. 70 lightning + 10 softmax; 64 heads
# of 128, 8 KV heads; 32 experts of 9216, top-2; vocab 200064, untied):
#   lightning: qkv_proj 6144*3*8192 + output_gate 6144*8192 + norm 8192 + out_proj 8192*6144 = 251,666,432
#   softmax:   q 6144*8192 + k,v 2*6144*1024 + o 8192*6144 = 113,246,208
#   MoE:       32 x 3*6144*9216 (= 32 x 169,869,312) + router 6144*32 = 5,436,014,592; norms 2*6144
#   70 x 5,687,693,312 + 10 x 5,549,273,088 + 2 x 200064*6144 + 6144 = 456,089,655,296.
#   Card (MiniMax-Text-01, the same architecture): 456B total, 45.9B activated.
MINIMAX = 456_089_655_296
MINIMAX_EXPERT = 3 * 6144 * 9216
MINIMAX_EMBED = 200064 * 6144
# Kimi-Linear-48B-A3B (H 2304, 27 layers: KDA except 1-based 4, 8, ..., 24, 27 = MLA; layer 0 dense):
#   KDA (32 heads of 128, P 4096, K 4): q,k,v 3*2304*4096 + conv 3*4096*4 + f_a 2304*128 + f_b 128*4096 + dt_bias 4096
#        + b_proj 2304*32 + A_log 32 + g_a 2304*128 + g_b 128*4096 + o_norm 128 + o_proj 4096*2304 = 39,514,272
#   MLA (q_lora_rank null): q_proj 2304*32*192 + kv_a 2304*(512 + 64) + kv_a_layernorm 512 + kv_b 512*32*256
#        + o_proj 32*128*2304 = 29,114,880
#   MoE: 256 x 3*2304*1024 + gate 2304*256 + e_score_correction_bias 256 + shared 3*2304*1024 = 1,819,607,296
#   dense MLP 3*2304*9216 = 63,700,992; norms 2*2304
#   (39,514,272 + 63,700,992 + 4608) + 19 x (39,514,272 + 1,819,607,296 + 4608) + 7 x (29,114,880 + 1,819,607,296
#   + 4608) + 2 x 163840*2304 + 2304 = 49,122,681,728. Card: 48B total, 3B activated.
KIMI = 49_122_681_728
KIMI_EXPERT = 3 * 2304 * 1024
KIMI_EMBED = 163840 * 2304


def test_hand_worked_blocks() -> None:
    lightning = 6144 * 3 * 8192 + 6144 * 8192 + 8192 + 8192 * 6144
    softmax = 6144 * 8192 + 2 * 6144 * 1024 + 8192 * 6144
    moe = 32 * MINIMAX_EXPERT + 6144 * 32
    assert (lightning, softmax, moe) == (251_666_432, 113_246_208, 5_436_014_592)
    assert 70 * (lightning + moe + 2 * 6144) + 10 * (softmax + moe + 2 * 6144) + 2 * MINIMAX_EMBED + 6144 == MINIMAX
    kda = (3 * 2304 * 4096 + 3 * 4096 * 4 + 2304 * 128 + 128 * 4096 + 4096 + 2304 * 32 + 32 + 2304 * 128 + 128 * 4096
           + 128 + 4096 * 2304)
    mla = 2304 * 32 * 192 + 2304 * 576 + 512 + 512 * 32 * 256 + 32 * 128 * 2304
    kimi_moe = 256 * KIMI_EXPERT + 2304 * 256 + 256 + KIMI_EXPERT
    assert (kda, mla, kimi_moe) == (39_514_272, 29_114_880, 1_819_607_296)
    assert (kda + 3 * 2304 * 9216 + 4608) + 19 * (kda + kimi_moe + 4608) + 7 * (mla + kimi_moe + 4608) \
        + 2 * KIMI_EMBED + 2304 == KIMI


def test_minimax_total_active_and_the_card() -> None:
    counted = count_params(load_model(str(MINIMAX_FILE)))
    assert counted.total_params == MINIMAX
    # 2 of 32 experts active in each of the 80 layers.
    assert counted.active_params == MINIMAX - 80 * 30 * MINIMAX_EXPERT
    assert round(counted.total_params / 1e9) == 456  # card: 456B total
    # The card's 45.9B activated leaves out the embedding and the output head (2 x 200064 x 6144 = 2.46B):
    # 48,403,306,496 - 2,458,386,432 = 45,944,920,064.
    assert round((counted.active_params - 2 * MINIMAX_EMBED) / 1e8) == 459
    assert [(k, n) for k, n, _ in layer_kinds(load_model(str(MINIMAX_FILE)))] == [("lightning+moe", 70), ("attention+moe", 10)]


def test_minimax_hf_format_reads_the_same(tmp_path) -> None:
    # transformers' own format (model_type minimax, layer_types instead of attn_type_list) builds the same tensors.
    data = json.loads(MINIMAX_FILE.read_text())
    kinds = data.pop("attn_type_list")
    data |= {"model_type": "minimax", "layer_types": ["full_attention" if k else "linear_attention" for k in kinds]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    assert count_params(load_model(str(path))).total_params == MINIMAX


def test_kimi_total_active_and_the_card() -> None:
    m = load_model(str(KIMI_FILE))
    counted = count_params(m)
    assert counted.total_params == KIMI
    # 8 of 256 routed experts active in each of the 26 MoE layers.
    assert counted.active_params == KIMI - 26 * 248 * KIMI_EXPERT
    # The card's 48B total / 3B activated count the blocks without the embedding and the output head
    # (2 x 163840 x 2304 = 0.75B): 48.37B and 2.73B.
    assert round((counted.total_params - 2 * KIMI_EMBED) / 1e9) == 48
    assert round((counted.active_params - 2 * KIMI_EMBED) / 1e9) == 3
    assert [(k, n) for k, n, _ in layer_kinds(m)] == [("kda+mlp", 1), ("kda+moe", 19), ("attention+moe", 7)]
    assert [i for i, k in enumerate(m.layer_types) if k == "full"] == [3, 7, 11, 15, 19, 23, 26]


def test_only_softmax_layers_grow_the_kv_cache() -> None:
    minimax, kimi = load_model(str(MINIMAX_FILE)), load_model(str(KIMI_FILE))
    # MiniMax: 10 softmax layers x 2 (K, V) x 8 KV heads x 128 x 2 B; the 70 lightning layers cache nothing.
    assert kv_cache_bytes_per_token(minimax) == 10 * 2 * 8 * 128 * 2 == 40_960
    # Kimi Linear: 7 MLA layers x (kv_lora_rank 512 + rope 64) x 2 B; the 20 KDA layers cache nothing.
    assert kv_cache_bytes_per_token(kimi) == 7 * (512 + 64) * 2 == 8_064
    assert kv_cache_bytes_for_tokens(kimi, 100_000) == 100_000 * 8_064


def test_state_per_request_is_constant_and_exact() -> None:
    minimax, kimi = load_model(str(MINIMAX_FILE)), load_model(str(KIMI_FILE))
    # Lightning attention keeps h x d x d = 64 x 128 x 128 per layer in the model dtype (vLLM V1's
    # linear_attention_state_dtype), no conv state: 70 x 1,048,576 x 2 B.
    assert state_bytes_per_request(minimax) == 70 * 64 * 128 * 128 * 2 == 146_800_640
    # KDA: conv state (q, k, v) 3 x 4096 x (K - 1 = 3) in bf16 + recurrent 32 x 128 x 128 in fp32 (vLLM's
    # kda_state_dtype), 20 layers: 20 x (36,864 x 2 + 524,288 x 4) = 43,417,600.
    assert state_bytes_per_request(kimi) == 20 * (3 * 4096 * 3 * 2 + 32 * 128 * 128 * 4) == 43_417_600
    for m in (minimax, kimi):
        short, long = (request_cache_bytes(m, t) - kv_cache_bytes_for_tokens(m, t) for t in (10, 500_000))
        assert short == long == state_bytes_per_request(m)
        assert state_bytes_per_request(m, tp=2) * 2 == state_bytes_per_request(m)


def test_concurrency_counts_the_state(cli) -> None:
    # Kimi Linear on 2 H100s (TP 2) under vLLM V1's hybrid allocator (calc.serving.hybrid_alloc): 7 MLA layers of
    # (512 + 64) x 2 = 1,152 B per token (replicated), 20 KDA layers of 43,417,600 / 20 / 2 = 1,085,440 B of state
    # per rank. MLA aligns blocks to 64: 64 x ceil(1,085,440 / (64 x 1,152)) = 64 x 15 = 960 tokens; page =
    # 960 x 1,152 = 1,105,920 B. Groups of 7 (20 >= 1.5 x 7): 1 MLA + ceil(20 / 7) = 3 state groups; a block index
    # holds 7 pages = 7,741,440 B per rank. 32,768 tokens -> 32,767 slots -> ceil(32,767 / 960) = 35 attention
    # blocks + 3 state blocks = 38 blocks, on each of the 2 GPUs.
    r = cli("concurrency", str(KIMI_FILE), "--gpu", "h100", "--tp", "2", "--max-model-len", "32768", "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert d["block_size"] == 960 and d["kv_block_bytes"] == 2 * 7_741_440
    assert d["kv_cache_bytes_per_request"] == 2 * 38 * 7_741_440
    assert d["num_gpu_blocks"] == d["free_bytes"] // 2 // 7_741_440
    assert d["max_concurrency"] == d["num_gpu_blocks"] // 38 >= 1
    r = cli("concurrency", str(MINIMAX_FILE), "--gpu", "h100", "--tp", "8", "--pp", "2", "--max-model-len", "131072")
    assert r.code == 0, r.err


def test_params_cli_runs(cli) -> None:
    for path in (MINIMAX_FILE, KIMI_FILE):
        r = cli("params", str(path))
        assert r.code == 0, r.err


def test_kda_scan_flops() -> None:
    x = load_model(str(KIMI_FILE)).mixer
    # decode: conv 2 x (3 x 4096) x 4 + delta rule 7 x (32 x 128 x 128).
    assert scan_flops_per_token(x, decode=True) == 2 * 12_288 * 4 + 7 * 32 * 128 * 128
    # chunked (Q 64): per head 2*64*(128 + 128) + 4*128*128 + WY 2*64*(2*128 + 128) + channel gate 2*128.
    assert scan_flops_per_token(x, decode=False) == 2 * 12_288 * 4 + 32 * (
        2 * 64 * 256 + 4 * 128 * 128 + 2 * 64 * 384 + 256)


def test_malformed_layouts_are_refused(tmp_path, cli) -> None:
    path = tmp_path / "config.json"
    data = json.loads(KIMI_FILE.read_text())
    data["linear_attn_config"]["kda_layers"] = data["linear_attn_config"]["kda_layers"][:-1]
    path.write_text(json.dumps(data))
    with pytest.raises(LLMCalcError, match="linear_attn_config"):
        load_model(str(path))
    r = cli("params", str(path))
    assert r.code == 2 and "linear_attn_config" in r.err and "Traceback" not in r.err
    data = json.loads(MINIMAX_FILE.read_text())
    data["attn_type_list"] = data["attn_type_list"][:-1]
    path.write_text(json.dumps(data))
    with pytest.raises(LLMCalcError, match="attn_type_list"):
        load_model(str(path))
