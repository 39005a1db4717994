"""Nemotron Nano 2 (9B v2) and Nemotron 3 Nano (30B-A3B), nemotron_h configs whose Mamba-2 width is
mamba_num_heads x mamba_head_dim, not expand x hidden_size (modeling_nemotron_h NemotronHMamba2Mixer). Fixtures in
tests/fixtures/hf (sources in SOURCES.md); totals by hand below, against the Hub's in test_hub_parameter_totals."""

from __future__ import annotations

from pathlib import Path

from calc.memory.kv import kv_cache_bytes_for_tokens, kv_cache_bytes_per_token, request_cache_bytes, state_bytes_per_request
from calc.model.params import count_params
from calc.sources.catalog import load_model

FIXTURES = Path(__file__).parent / "fixtures" / "hf"

# Nano 9B v2 (H 4480, 56 layers: 27 M, 25 -, 4 *; d_in = 128*80 = 10240, G 8, N 128, conv 4):
#   Mamba: in_proj 4480*(2*10240 + 2*8*128 + 128) = 4480*22656 + conv (10240 + 2048)*4 + bias 12288 + 3*128
#          + norm 10240 + out_proj 10240*4480 + block norm 4480 = 101,498,880 + 49,152 + 12,288 + 384 + 10,240
#          + 45,875,200 + 4,480 = 147,450,624
#   MLP (relu2, up/down): 2*4480*15680 + 4480 = 140,497,280; attention: 4480*(40+2*8)*128 + 40*128*4480 + 4480
#          = 32,112,640 + 22,937,600 + 4,480 = 55,054,720
#   27 x 147,450,624 + 25 x 140,497,280 + 4 x 55,054,720 + 2 x 131072*4480 + 4480 = 8,888,227,328
NANO_9B = 27 * 147_450_624 + 25 * 140_497_280 + 4 * 55_054_720 + 2 * 131_072 * 4480 + 4480


def _load(name: str):
    return load_model(str(FIXTURES / f"{name}.json"))


def test_nano_9b_v2_total_by_hand() -> None:
    assert NANO_9B == 8_888_227_328
    assert count_params(_load("nemotron-nano-9b-v2")).total_params == NANO_9B


def test_kv_only_for_the_attention_layers_and_constant_state() -> None:
    # 4 attention layers x 2 (K, V) x 8 KV heads x 128 x 2 B; state: 27 Mamba layers x (conv 12288 x 3 + 128 heads
    # x 80 x 128) x 2 B. Nemotron 3 Nano: 6 x 2 x 2 x 128 x 2 B; 23 x ((4096 + 2048) x 3 + 64 x 64 x 128) x 2 B.
    m = _load("nemotron-nano-9b-v2")
    assert kv_cache_bytes_per_token(m) == 4 * 2 * 8 * 128 * 2
    assert state_bytes_per_request(m) == 27 * (12288 * 3 + 128 * 80 * 128) * 2
    short, long = (request_cache_bytes(m, t) - kv_cache_bytes_for_tokens(m, t) for t in (10, 100_000))
    assert short == long == state_bytes_per_request(m)
    n3 = _load("nemotron-3-nano-30b-a3b")
    assert kv_cache_bytes_per_token(n3) == 6 * 2 * 2 * 128 * 2
    assert state_bytes_per_request(n3) == 23 * (6144 * 3 + 64 * 64 * 128) * 2


def test_plain_mamba2_still_checks_expand(tmp_path) -> None:
    # Mamba2Mixer sizes itself by expand * hidden_size, so a Mamba-2 config whose heads disagree is refused.
    import json

    import pytest

    from calc.errors import LLMCalcError

    data = json.loads((FIXTURES / "mamba-codestral-7b-v0.1.json").read_text().replace("Infinity", "1e9"))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**data, "num_heads": data["num_heads"] // 2}))
    with pytest.raises(LLMCalcError, match="expand"):
        load_model(str(path))
