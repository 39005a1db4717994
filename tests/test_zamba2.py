"""Zamba2: Mamba-2 on every layer, and shared attention + MLP blocks (stored once) run at the hybrid positions with
per-position adapters and KV caches. Fixture: tests/fixtures/hf/zamba2-7b.json (assembled, see SOURCES.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calc.errors import LLMCalcError
from calc.memory.kv import kv_cache_bytes_for_tokens, kv_cache_bytes_per_token, request_cache_bytes, state_bytes_per_request
from calc.model.params import count_params, layer_kinds
from calc.sources.catalog import load_model

FIXTURE = Path(__file__).parent / "fixtures" / "hf" / "zamba2-7b.json"

# Zamba2-7B (H 3584, 81 layers, hybrid at 6, 11, 17, 23, ..., 77 = 13 positions, 2 shared blocks; attention 32 heads of
# 2H/32 = 224 on the 2H = 7168 concatenation; MLP I 14336 GELU-gated; adapters rank 128 on the MLP only; vocab 32000 tied):
#   Mamba-2 (112 heads x 64, N 64, 2 groups, conv bias): in_proj 3584*(2*7168 + 2*2*64 + 112) + conv1d 7424*4 + bias 7424
#            + dt_bias/A_log/D 3*112 + gated norm 7168 + out_proj 7168*3584 = 78,433,872; + input_layernorm 3584
#   each position: linear 3584*3584 + MLP adapter 3584*128 + 128*2*14336 = 16,973,824
#   each shared block: q, k, v 3 x 7168*7168 + o 7168*3584 + MLP 3*3584*14336 + norms 7168 + 3584 = 333,982,208
#   81 x 78,437,456 + 13 x 16,973,824 + 2 x 333,982,208 + 32000*3584 + 3584 = 7,356,749,648. The model is named 7B.
ZAMBA2_7B = 7_356_749_648
BLOCK = 3 * 7168 * 7168 + 7168 * 3584 + 3 * 3584 * 14336 + 7168 + 3584
BLOCK_MATMUL = BLOCK - 7168 - 3584


def _edited(tmp_path: Path, **changes) -> Path:
    data = json.loads(FIXTURE.read_text()) | changes
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_hand_worked_total() -> None:
    mamba = 3584 * (2 * 7168 + 2 * 2 * 64 + 112) + 7424 * 4 + 7424 + 3 * 112 + 7168 + 7168 * 3584
    position = 3584 * 3584 + 3584 * 128 + 128 * 2 * 14336
    assert (mamba, position, BLOCK) == (78_433_872, 16_973_824, 333_982_208)
    assert 81 * (mamba + 3584) + 13 * position + 2 * BLOCK + 32000 * 3584 + 3584 == ZAMBA2_7B
    m = load_model(str(FIXTURE))
    assert count_params(m).total_params == ZAMBA2_7B
    assert round(ZAMBA2_7B / 1e9) == 7
    assert [(k, n) for k, n, _ in layer_kinds(m)] == [("mamba2", 68), ("shared_block+mamba2", 13)]


def test_shared_blocks_are_stored_once_and_multiplied_at_every_position(tmp_path) -> None:
    # One shared block instead of two: exactly one block fewer stored, the same products per token.
    one = count_params(load_model(str(_edited(tmp_path, num_mem_blocks=1))))
    two = count_params(load_model(str(FIXTURE)))
    assert two.total_params - one.total_params == BLOCK
    assert one.matmul_params == two.matmul_params
    # Per token: every layer's in/out_proj 81 x (3584*14704 + 7168*3584), 13 positions x (linear + adapter + the
    # block's matrices), and the tied head 32000*3584.
    assert two.matmul_params == 81 * (3584 * 14704 + 7168 * 3584) + 13 * (16_973_824 + BLOCK_MATMUL) + 32000 * 3584
    # q/k/v adapters (use_shared_attention_adapter) add 3 x (7168*128 + 128*7168) at each of the 13 positions.
    adapted = count_params(load_model(str(_edited(tmp_path, use_shared_attention_adapter=True))))
    assert adapted.total_params - two.total_params == 13 * 3 * 2 * 7168 * 128


def test_kv_cache_only_at_the_positions_that_run_attention() -> None:
    m = load_model(str(FIXTURE))
    # Each of the 13 invocations keeps its own K and V (vLLM zamba2.py: one Attention per hybrid position):
    # 13 x 2 x 32 KV heads x 224 x 2 B; the 68 Mamba-only layers cache nothing.
    assert kv_cache_bytes_per_token(m) == 13 * 2 * 32 * 224 * 2 == 372_736
    assert kv_cache_bytes_for_tokens(m, 10_000) == 10_000 * 372_736


def test_state_on_every_layer_constant_in_tokens() -> None:
    m = load_model(str(FIXTURE))
    # All 81 layers run Mamba-2: conv (7168 + 2*2*64) x 3 + 112 x 64 x 64, bf16.
    assert state_bytes_per_request(m) == 81 * (7424 * 3 + 112 * 64 * 64) * 2 == 77_925_888
    short, long = (request_cache_bytes(m, t) - kv_cache_bytes_for_tokens(m, t) for t in (10, 100_000))
    assert short == long == state_bytes_per_request(m)
    assert state_bytes_per_request(m, tp=2) * 2 == state_bytes_per_request(m)


def test_cli_params_and_concurrency(cli) -> None:
    r = cli("params", str(FIXTURE))
    assert r.code == 0, r.err
    r = cli("concurrency", str(FIXTURE), "--gpu", "h100", "--max-model-len", "4096", "--json")
    assert r.code == 0, r.err
    d = r.json()
    # vLLM V1's hybrid allocator (calc.serving.hybrid_alloc): attention 2 x 32 x 224 x 2 = 28,672 B per token per
    # position; state (7424 x 3 + 112 x 64 x 64) x 2 = 962,048 B per layer -> blocks of 16 x ceil(962,048 /
    # (16 x 28,672)) = 16 x 3 = 48 tokens, page 48 x 28,672 = 1,376,256 B. 13 attention vs 81 state layers:
    # groups of 13, 1 attention + ceil(81 / 13) = 7 state groups; a block index holds 13 pages = 17,891,328 B.
    # 4,096 tokens -> 4,095 slots -> ceil(4,095 / 48) = 86 attention blocks + 7 state blocks = 93.
    assert d["block_size"] == 48
    assert d["kv_cache_bytes_per_request"] == 93 * 13 * 1_376_256 == 1_663_893_504
    assert d["max_concurrency"] == d["free_bytes"] // 17_891_328 // 93 >= 1


def test_malformed_layout_is_refused(tmp_path, cli) -> None:
    path = _edited(tmp_path, layers_block_type=["mamba"] * 80)
    with pytest.raises(LLMCalcError, match="layers_block_type"):
        load_model(str(path))
    r = cli("params", str(path))
    assert r.code == 2 and "layers_block_type" in r.err and "Traceback" not in r.err
