"""Name resolution (issue 12): every catalog alias resolves, HF ids with "/" included, before the
argument is treated as a path; an existing file or downloaded HF folder still wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from calc.sources.catalog import list_gpus, list_models, load_gpu, load_model

MODEL_ALIASES = [(alias, m.name) for m in list_models() for alias in m.aliases]
GPU_ALIASES = [(alias, g.name) for g in list_gpus() for alias in g.aliases]
HF_IDS = [(alias, name) for alias, name in MODEL_ALIASES if "/" in alias]


def test_the_catalog_has_hf_ids() -> None:
    assert ("meta-llama/Llama-2-7b-hf", "llama2-7b") in HF_IDS  # the README's own example


@pytest.mark.parametrize(("alias", "name"), MODEL_ALIASES, ids=[a for a, _ in MODEL_ALIASES])
def test_every_model_alias_resolves(alias: str, name: str) -> None:
    assert load_model(alias).name == name
    assert load_model(alias.upper()).name == name  # case-insensitive, as catalog names are


@pytest.mark.parametrize(("alias", "name"), GPU_ALIASES, ids=[a for a, _ in GPU_ALIASES])
def test_every_gpu_alias_resolves(alias: str, name: str) -> None:
    assert load_gpu(alias).name == name


@pytest.mark.parametrize(("alias", "name"), HF_IDS, ids=[a for a, _ in HF_IDS])
def test_every_hf_id_works_on_the_command_line(alias: str, name: str) -> None:
    r = run_cli("params", alias, "--json")
    assert r.code == 0, r.err
    assert r.json()["model"] == name


def test_a_local_file_or_hf_folder_wins_over_the_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "meta-llama" / "Llama-2-7b-hf"
    folder.mkdir(parents=True)
    # an empty folder of that name is not a model: the alias still resolves
    assert load_model("meta-llama/Llama-2-7b-hf").name == "llama2-7b"
    # a downloaded HF folder: its config.json is read (GPT-2 small: 124,439,808 parameters, published)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024,
                                                    "n_embd": 768, "n_layer": 12, "n_head": 12}))
    r = run_cli("params", "meta-llama/Llama-2-7b-hf", "--json")
    assert r.code == 0 and r.json()["total_params"] == 124_439_808


def test_a_missing_path_is_named_as_a_file() -> None:
    r = run_cli("params", "./no/such/config.json")
    assert r.code == 2 and r.err.strip() == "llmcalc: error: MODEL: no such file: no/such/config.json"
