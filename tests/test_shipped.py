"""Checkpoints as shipped (quantization_config) and window-capped KV through the CLI (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calc.memory.weights import quantized_matrix_bytes, weight_bytes_by_group
from calc.sources.catalog import load_model
from calc.specs import QuantSpec

FIXTURES = Path(__file__).parent / "fixtures" / "hf"


def _json(cli, *args: str) -> dict:
    result = cli(*args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_quantized_matrix_bytes_by_hand() -> None:
    # fp8 128x128 blocks on a 7168 x 2048 matrix: 14,680,064 B + 4 B x (2048/128)*(7168/128) = 16*56 scales.
    assert quantized_matrix_bytes(QuantSpec(method="fp8", block_size=(128, 128)), 7168, 2048) == 14_680_064 + 4 * 896
    # MXFP4 on 2880 x 5760: half a byte per weight + one E8M0 byte per 32 inputs per output = 90*5760.
    assert quantized_matrix_bytes(QuantSpec(method="mxfp4", bits=4, group_size=32), 2880, 5760) == 8_294_400 + 518_400
    # AWQ int4 g128 with zeros on 4096 x 4096: 8,388,608 + fp16 scales 32*4096*2 + zeros 32*4096/2.
    awq = QuantSpec(method="awq", bits=4, group_size=128, zero_points=True)
    assert quantized_matrix_bytes(awq, 4096, 4096) == 8_388_608 + 262_144 + 65_536
    # GPTQ adds the int32 g_idx per input row: + 4*4096.
    gptq = QuantSpec(method="gptq", bits=4, group_size=128, zero_points=True)
    assert quantized_matrix_bytes(gptq, 4096, 4096) == 8_388_608 + 262_144 + 65_536 + 16_384
    # NF4 with double quant: half a byte + 1 B per 64 weights + 4 B per 256 blocks (16,777,216 weights).
    nf4 = QuantSpec(method="bnb_nf4", bits=4, group_size=64, double_quant=True)
    assert quantized_matrix_bytes(nf4, 4096, 4096) == 8_388_608 + 262_144 + 4 * 1024


def test_gpt_oss_120b_as_shipped_matches_published_checkpoint(cli) -> None:
    # OpenAI model card (arXiv 2508.10925): gpt-oss-120b checkpoint 60.8 GiB; 20b 12.8 GiB.
    data = _json(cli, "memory", str(FIXTURES / "gpt-oss-120b.json"))
    assert data["weights_bytes"] / 2**30 == pytest.approx(60.8, rel=0.01)
    groups = data["weight_bytes_by_group"]
    # attention stays bf16 (modules_to_not_convert): 36 x 26,550,144 params x 2 B.
    assert groups["attention"] == 36 * 26_550_144 * 2
    # experts: 36 x 128 x (2880*5760 + 2880*2880) MXFP4 weights at 17/32 B + bf16 biases 36*128*8640*2.
    assert groups["experts"] == 36 * 128 * 24_883_200 * 17 // 32 + 36 * 128 * 8640 * 2
    small = _json(cli, "memory", str(FIXTURES / "gpt-oss-20b.json"))
    assert small["weights_bytes"] / 2**30 == pytest.approx(12.8, rel=0.01)


def test_deepseek_v3_as_shipped_fp8(cli) -> None:
    # DeepSeek-V3 ships FP8 e4m3 with 128x128 block scales: ~671 GB for the 671B main model (the issue),
    # ~688.6 GB with the MTP layer (the hub's safetensors total).
    data = _json(cli, "memory", "deepseek-v3")
    assert data["weights_bytes"] / 1e9 == pytest.approx(671, rel=0.01)
    m = load_model("deepseek-v3")
    assert sum(weight_bytes_by_group(m, with_mtp=True).values()) / 1e9 == pytest.approx(688.6, rel=0.01)
    # --dtype overrides: every tensor at 2 bytes.
    assert _json(cli, "memory", "deepseek-v3", "--dtype", "bf16")["weights_bytes"] == 671_026_419_200 * 2


def test_unquantized_default_is_bf16(cli) -> None:
    assert _json(cli, "memory", "llama2-7b")["weights_bytes"] == 6_738_415_616 * 2


@pytest.mark.parametrize(("model", "tokens", "expected"), [
    # Gemma-2-9B, context 8192: 21 sliding layers x 4096 + 21 full x 8192 tokens x 2*8*256*2 B.
    ("gemma-2-9b", 8192, (21 * 4096 + 21 * 8192) * 8192),
    # Gemma-3-1B at 32K: 22 sliding layers x 512 + 4 global x 32768 tokens x 2*1*256*2 B (6x less than full).
    ("gemma-3-1b-it", 32768, (22 * 512 + 4 * 32768) * 1024),
    # gpt-oss-20b at 32K: 12 sliding x 128 + 12 full x 32768 tokens x 2*8*64*2 B (2x less than full).
    ("gpt-oss-20b", 32768, (12 * 128 + 12 * 32768) * 2048),
    # Mistral-7B-v0.1 at 32K: 32 layers x 4096 tokens x 2*8*128*2 B (8x less than full).
    ("mistral-7b-v0.1", 32768, 32 * 4096 * 4096),
])
def test_kv_cache_window_capped_through_cli(cli, model: str, tokens: int, expected: int) -> None:
    data = _json(cli, "memory", str(FIXTURES / f"{model}.json"), "--seq", str(tokens))
    assert data["kv_cache_bytes"] == expected


def test_concurrency_grows_with_the_window(cli, tmp_path: Path) -> None:
    # Same shapes, every layer full vs Mistral-7B-v0.1's 4096 window: 8x the requests of 32K fit (up to flooring).
    config = json.loads((FIXTURES / "mistral-7b-v0.1.json").read_text())
    (tmp_path / "full.json").write_text(json.dumps({**config, "sliding_window": None}))
    windowed = _json(cli, "concurrency", "mistral-7b-v0.1", "--gpu", "h100", "--max-model-len", "32768")
    full = _json(cli, "concurrency", str(tmp_path / "full.json"), "--gpu", "h100", "--max-model-len", "32768")
    assert windowed["kv_cache_bytes_per_request"] * 8 == full["kv_cache_bytes_per_request"]
    assert windowed["max_concurrency"] >= 8 * full["max_concurrency"]


def test_memory_with_mtp_layers(cli) -> None:
    # DeepSeek-V3 with its MTP layer as shipped: 688.6 GB (main 673.2 GB + the MTP layer in FP8).
    main = _json(cli, "memory", "deepseek-v3")["weights_bytes"]
    with_mtp = _json(cli, "memory", "deepseek-v3", "--mtp")
    assert with_mtp["weights_bytes"] / 1e9 == pytest.approx(688.6, rel=0.01)
    assert with_mtp["weights_bytes"] - main == with_mtp["weight_bytes_by_group"]["mtp"]
    # bf16 override: (671,026,419,200 + 13,463,426,304 MTP parameters) x 2 bytes.
    assert _json(cli, "memory", "deepseek-v3", "--mtp", "--dtype", "bf16")["weights_bytes"] == 684_489_845_504 * 2
    refused = cli("memory", "llama2-7b", "--mtp")
    assert refused.code == 2 and "--mtp" in refused.err
    train = cli("memory", "deepseek-v3", "--mode", "train", "--mtp")
    assert train.code == 2 and "--mtp" in train.err


def test_latency_decode_reads_the_window_capped_cache(cli, tmp_path: Path) -> None:
    # Mistral-7B-v0.1 decode at ~32K context reads 4096 tokens of KV per layer instead of the whole context:
    # the bytes per step differ by 131,072 B/token x (context - 4096), the context being the prompt plus the
    # tokens generated so far (32,000 .. 32,100).
    config = json.loads((FIXTURES / "mistral-7b-v0.1.json").read_text())
    (tmp_path / "full.json").write_text(json.dumps({**config, "sliding_window": None}))
    args = ("--gpu", "h100", "--prompt", "32000", "--output", "100")
    windowed = _json(cli, "latency", "mistral-7b-v0.1", *args)
    full = _json(cli, "latency", str(tmp_path / "full.json"), *args)
    context = (full["decode_bytes_per_step"] - windowed["decode_bytes_per_step"]) / 131_072 + 4096
    assert 32_000 <= context <= 32_100
    assert windowed["tpot_s"] < full["tpot_s"]


def test_moe_active_count_as_the_model_cards_count_it(cli) -> None:
    """gpt-oss's card (OpenAI, 2025): 116.83B total / 5.13B active (120b), 20.91B / 3.61B (20b): the weights
    multiplied per token, the input embedding (a lookup) left out; params shows that count beside its active total."""
    for name, card in (("gpt-oss-120b", 5.13e9), ("gpt-oss-20b", 3.61e9)):
        r = cli("params", name)
        assert r.code == 0 and "active excl. embedding (model cards)" in r.out
        matmul = cli("params", name, "--json").json()["matmul_params"]
        assert round(matmul / 1e7) == round(card / 1e7)
