"""The catalog's current models: each YAML names its source, and its exact count rounds to the
published total (model card / paper / hub figure, quoted in the YAML header and here)."""

from __future__ import annotations

import pytest

from calc.model.params import count_params
from calc.sources.catalog import load_model

# name: (published total, published active or None, relative tolerance of the rounding)
PUBLISHED = {
    "llama3.1-8b": (8.03e9, None, 0.001), "llama3.1-70b": (70.6e9, None, 0.001), "llama3.2-1b": (1.24e9, None, 0.005),
    "llama3.2-3b": (3.21e9, None, 0.002), "llama3.3-70b": (70.6e9, None, 0.001),
    # Llama 4: totals include the vision tower, as ours do (Scout is exact in test_hf_families).
    "llama4-scout": (109e9, 17e9, 0.005), "llama4-maverick": (400e9, 17e9, 0.005),
    "qwen2.5-7b": (7.61e9, None, 0.001), "qwen2.5-14b": (14.7e9, None, 0.005), "qwen2.5-32b": (32.8e9, None, 0.002),
    "qwen2.5-72b": (72.7e9, None, 0.001), "qwen3-0.6b": (0.6e9, None, 0.01), "qwen3-1.7b": (1.7e9, None, 0.02),
    "qwen3-4b": (4.0e9, None, 0.01), "qwen3-8b": (8.2e9, None, 0.002), "qwen3-14b": (14.8e9, None, 0.003),
    "qwen3-32b": (32.8e9, None, 0.002), "qwen3-30b-a3b": (30.5e9, 3.3e9, 0.02), "qwen3-235b-a22b": (235e9, 22e9, 0.01),
    "gemma2-9b": (9.24e9, None, 0.001), "gemma2-27b": (27.2e9, None, 0.002),
    # Gemma 3 report (arXiv 2503.19786) Table 1: vision encoder + embedding + non-embedding (the -it checkpoints).
    "gemma3-1b": (1.0e9, None, 0.001), "gemma3-4b": ((417 + 675 + 3209) * 1e6, None, 0.002),
    "gemma3-12b": ((417 + 1012 + 10759) * 1e6, None, 0.001), "gemma3-27b": ((417 + 1416 + 25600) * 1e6, None, 0.001),
    "mistral-nemo-12b": (12.2e9, None, 0.005), "mistral-small-24b": (23.6e9, None, 0.002),
    "mixtral-8x22b": (141e9, 39e9, 0.005), "phi-3.5-moe": (41.9e9, 6.6e9, 0.01), "phi-4": (14.7e9, None, 0.003),
    "deepseek-v2": (236e9, 21e9, 0.02), "deepseek-v3": (671e9, 37e9, 0.01), "kimi-k2": (1.03e12, 32e9, 0.03),
    # GLM-4.5: 355B published; the main model counts 352.8B (the MTP layer, counted apart, is 5.2B more).
    "glm-4.5": (355e9, 32e9, 0.01), "glm-4.5-air": (106e9, 12e9, 0.02),
    # gpt-oss card: active excludes the embedding gather; ours includes it (see test_hf_families).
    "gpt-oss-20b": (20.91e9, None, 0.001), "gpt-oss-120b": (116.83e9, None, 0.001),
    "olmo2-7b": (7.30e9, None, 0.001), "olmo2-13b": (13.7e9, None, 0.002),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_catalog_model_matches_published_total(name: str) -> None:
    m = load_model(name)
    assert m.source.startswith("https://huggingface.co/")
    total, active, tol = PUBLISHED[name]
    counted = count_params(m)
    assert counted.total_params == pytest.approx(total, rel=tol)
    if active is not None:
        # Cards differ on whether the embedding gather counts as active (Qwen counts it, gpt-oss and GLM do
        # not) and round to the billion: one of the two conventions must land within 7%.
        without_gather = counted.active_params - m.vocab_size * m.hidden_size
        assert min(abs(counted.active_params - active), abs(without_gather - active)) <= 0.07 * active


def test_catalog_yaml_heads_with_source_and_published_total() -> None:
    from calc.sources.catalog import catalog_dir

    for name in PUBLISHED:
        head = (catalog_dir("model_configs") / f"{name}.yaml").read_text().splitlines()[:3]
        assert any("Source" in line or "source" in line for line in head), name


# Multimodal checkpoints: the catalog name counts what the checkpoint holds, vision tower included, exactly as the
# hub's safetensors parameter count (HF API `safetensors.total`, = the index's total_size / 2 in bf16):
# google/gemma-3-4b-it 4,300,079,472 (total_size 8,600,158,944), gemma-3-12b-it 12,187,325,040, gemma-3-27b-it
# 27,432,406,640; Llama-4-Scout-17B-16E-Instruct 108,641,793,536, Llama-4-Maverick-17B-128E-Instruct
# 401,583,781,376. Active counts the language model only (the tower never sees a text token): Gemma 3 text
# models 3,880,263,168 / 11,766,034,176 / 27,009,346,304 (gemma-3-4b-it's text_config, counted in test_hf_families).
MULTIMODAL = {"gemma3-4b": (4_300_079_472, 3_880_263_168), "gemma3-12b": (12_187_325_040, 11_766_034_176),
              "gemma3-27b": (27_432_406_640, 27_009_346_304), "llama4-scout": (108_641_793_536, None),
              "llama4-maverick": (401_583_781_376, None)}


@pytest.mark.parametrize("name", sorted(MULTIMODAL))
def test_multimodal_entry_counts_its_checkpoint(name: str) -> None:
    p, m = count_params(load_model(name)), load_model(name)
    total, text = MULTIMODAL[name]
    assert p.total_params == total
    assert m.vision_params > 0 and p.components["vision"] == m.vision_params
    if text is not None:
        assert p.total_params - m.vision_params == p.active_params == text
