"""The model-zoo reviewer's sweep (pass 17): formulas printed as they are computed."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "hf"


def test_kimi_linear_kv_formula_counts_its_mla_layers(cli) -> None:
    # Kimi Linear: MLA on 7 of 27 layers (full_attn_layers 4, 8, 12, 16, 20, 24, 27 in config.json, 1-based), KDA on
    # the rest: 7 x (512 + 64) x 2 B = 8,064 B per token. The line said 27 x (512 + 64) x 2 = 8,064.
    r = cli("memory", str(FIXTURES / "kimi-linear-48b-a3b-instruct.json"), "--mode", "infer", "--explain")
    assert r.code == 0, r.err
    assert "= 7*(512+64)*2 = 8,064 B" in r.out and "27*(512+64)" not in r.out
