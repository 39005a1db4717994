"""The catalog finds an alias, and a GPU's node type, without parsing the files that cannot name it:
for every shipped name and alias the answer is the one a scan of the whole catalog gives."""

from __future__ import annotations

import re

from calc.sources.catalog import list_gpus, list_models, list_systems, load_gpu, load_model, load_system, system_for_gpu


def _bare(name: str) -> str:  # names match case-insensitively with punctuation dropped (README: catalog names)
    return re.sub(r"[^a-z0-9]", "", name.lower())


def test_every_alias_finds_the_spec_a_full_scan_finds() -> None:
    for specs, load in ((list_models(), load_model), (list_gpus(), load_gpu), (list_systems(), load_system)):
        for spec in specs:
            for alias in spec.aliases:
                by_name = [s for s in specs if _bare(s.name) == _bare(alias)]  # a catalog name wins over an alias
                first = by_name[0] if by_name else next(s for s in specs if _bare(alias) in map(_bare, s.aliases))
                assert load(alias) == first, alias


def test_every_gpu_gets_the_first_system_built_from_it() -> None:
    for gpu in list_gpus():
        expected = next((s for s in list_systems() if s.gpu == gpu.name), None)
        assert system_for_gpu(gpu) == expected, gpu.name
    assert system_for_gpu(load_gpu("h100")).name == "dgx-h100"  # system_specs/dgx-h100.yaml: gpu: h100-sxm


def test_show_suggests_from_the_nearer_catalog(cli) -> None:
    """QA finding: `show h10` answered "unknown model; llmcalc models lists them", `show gb20` "did you mean gpt2?"."""
    r = cli("show", "h10")
    assert r.code == 2 and "h100" in r.err and "model or GPU" in r.err
    assert "gb200" in cli("show", "gb20").err
    assert "llama3-8b" in cli("show", "llama3-8").err


def test_a_config_without_a_recorded_name_is_named_by_its_file(cli, tmp_path) -> None:
    """QA finding: params / memory / show named such a config by its model_type ("llama"), import by its file."""
    import json

    from calc.sources.catalog import load_model

    config = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
              "num_hidden_layers": 2, "num_key_value_heads": 4, "vocab_size": 1000, "max_position_embeddings": 512,
              "tie_word_embeddings": False, "rms_norm_eps": 1e-5}
    folder = tmp_path / "Tiny-Llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (tmp_path / "tiny.json").write_text(json.dumps(config))
    assert load_model(str(folder / "config.json")).name == "Tiny-Llama"
    assert load_model(str(tmp_path / "tiny.json")).name == "tiny"
