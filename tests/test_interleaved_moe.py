"""Interleaved MoE layers stay where the checkpoint has them (QA finding: Llama 4 Maverick's MoE layers were built as
the last 24 of 48, so a pipeline stage held 24 MoE layers and `memory --pp 2` priced ~2x the weights of a stage).

transformers' rules: Llama4TextConfig ``moe_layers = range(interleave_moe_layer_step - 1, L, step)`` (Maverick, step 2:
layers 1, 3, ..., 47); Qwen2/3-MoE layer i is sparse iff (i + 1) % decoder_sparse_step == 0 and i not in
mlp_only_layers; DeepSeek layer i is MoE iff i >= first_k_dense_replace and i % moe_layer_freq == 0.
"""

from __future__ import annotations

import json
from pathlib import Path

from calc.model.params import count_params, layer_signatures
from calc.sources.catalog import load_model

FIXTURES = Path(__file__).parent / "fixtures" / "hf"

# Llama 4 Maverick shapes (config.json of meta-llama/Llama-4-Maverick-17B-128E-Instruct): H 5120, 40 heads x 128,
# 8 KV heads, dense MLP 16384, 128 experts of 8192 + one shared expert of 8192, vocab 202048, untied.
H, Q, KV, DENSE_I, EXPERT_I, VOCAB = 5120, 40 * 128, 8 * 128, 16384, 8192, 202048
ATTENTION = H * Q + 2 * H * KV + Q * H  # q, k, v, o
DENSE_LAYER = ATTENTION + 3 * H * DENSE_I + 2 * H  # + two RMSNorms
MOE_LAYER = ATTENTION + 128 * 3 * H * EXPERT_I + 3 * H * EXPERT_I + H * 128 + 2 * H  # experts, shared, router, norms
EMBEDDING = VOCAB * H
VISION = 871_932_416  # the catalog's vision tower + projector (never active for text)


def _maverick_config(tmp_path: Path) -> Path:
    """Maverick's text_config fields on the Scout fixture (same family, same shapes but the expert count and step)."""
    config = json.loads((FIXTURES / "llama-4-scout-17b-16e-instruct.json").read_text())
    config["text_config"].update(interleave_moe_layer_step=2, num_local_experts=128, max_position_embeddings=1048576,
                                 use_qk_norm=False)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_hand_counts_add_up_to_maverick_total() -> None:
    # 24 dense + 24 MoE layers + final norm + embedding + head + vision = the published exact count (model YAML)
    assert 24 * DENSE_LAYER + 24 * MOE_LAYER + H + 2 * EMBEDDING + VISION == 401_583_781_376
    assert count_params(load_model("llama4-maverick")).total_params == 401_583_781_376


def test_catalog_maverick_alternates_dense_and_moe() -> None:
    ffns = [ffn for _mixer, ffn in layer_signatures(load_model("llama4-maverick"))]
    assert ffns == ["dense", "moe"] * 24


def test_import_keeps_maverick_interleaving(cli, tmp_path: Path) -> None:
    target = tmp_path / "mav.yaml"
    result = cli("import", str(_maverick_config(tmp_path)), "--name", "mav", "--write", str(target))
    assert result.code == 0, result.err
    spec = load_model(str(target))
    assert [ffn for _m, ffn in layer_signatures(spec)] == ["dense", "moe"] * 24
    assert count_params(spec).total_params == 401_583_781_376


def test_pipeline_stage_holds_half_the_moe_layers(cli) -> None:
    # PP 2: stage 0 = layers 0-23 (12 dense + 12 MoE) + embedding + vision tower, bf16
    result = cli("memory", "llama4-maverick", "--mode", "infer", "--pp", "2", "--json")
    assert result.code == 0, result.err
    stage0 = 12 * DENSE_LAYER + 12 * MOE_LAYER + EMBEDDING + VISION
    assert json.loads(result.out)["per_gpu"]["weights"] == 2 * stage0 == 402_455_708_672


def test_qwen_decoder_sparse_step_and_mlp_only_layers(cli, tmp_path: Path) -> None:
    config = json.loads((FIXTURES / "qwen3-30b-a3b.json").read_text())
    config.update(decoder_sparse_step=2, mlp_only_layers=[5], intermediate_size=6144)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    target = tmp_path / "q.yaml"
    assert cli("import", str(path), "--name", "q", "--write", str(target)).code == 0
    ffns = [ffn for _m, ffn in layer_signatures(load_model(str(target)))]
    expected = ["moe" if (i + 1) % 2 == 0 and i != 5 else "dense" for i in range(48)]
    assert ffns == expected and ffns[:4] == ["dense", "moe", "dense", "moe"]


def test_deepseek_moe_layer_freq(cli, tmp_path: Path) -> None:
    config = json.loads((FIXTURES / "deepseek-v3.2-exp.json").read_text())
    config.update(first_k_dense_replace=1, moe_layer_freq=2)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    target = tmp_path / "d.yaml"
    assert cli("import", str(path), "--name", "d", "--write", str(target)).code == 0
    ffns = [ffn for _m, ffn in layer_signatures(load_model(str(target)))]
    assert ffns == ["moe" if i >= 1 and i % 2 == 0 else "dense" for i in range(61)]


def test_suffix_moe_keeps_the_short_form(cli) -> None:
    # DeepSeek-V3's first three dense layers are the default layout: no ffn_types line in the YAML
    result = cli("import", str(FIXTURES / "deepseek-v3.2-exp.json"))
    assert result.code == 0 and "ffn_types" not in result.out and "num_dense_layers: 3" in result.out

