"""`llmcalc import` (config.json -> our YAML) and `llmcalc models` filters."""

from __future__ import annotations

import json
from pathlib import Path

from calc.model.params import count_params
from calc.sources.catalog import load_model

FIXTURES = Path(__file__).parent / "fixtures" / "hf"


def test_import_writes_yaml_that_loads_to_the_same_model(cli, tmp_path: Path) -> None:
    target = tmp_path / "team-oss.yaml"
    result = cli("import", str(FIXTURES / "gpt-oss-120b.json"), "--name", "team-oss", "--write", str(target))
    assert result.code == 0, result.err
    spec = load_model(str(target))
    assert spec.name == "team-oss"
    assert count_params(spec).total_params == 116_829_156_672  # as in test_hf_families
    assert spec.quantization is not None and spec.quantization.method == "mxfp4"
    assert spec.layer_types[:2] == ["sliding", "full"] and spec.sliding_window == 128
    again = cli("import", str(FIXTURES / "gpt-oss-120b.json"), "--write", str(target))
    assert again.code == 2 and "--write" in again.err and "exists" in again.err


def test_import_prints_yaml_by_default(cli) -> None:
    result = cli("import", str(FIXTURES / "qwen3-8b.json"))
    assert result.code == 0
    assert "qk_norm: head" in result.out and "8,190,735,360" in result.out


def test_import_refuses_shapes_left_to_defaults(cli, tmp_path: Path) -> None:
    # A Gemma 2 config without head_dim or sliding_window: transformers would assume 256 and 4096.
    config = json.loads((FIXTURES / "gemma-2-9b.json").read_text())
    for key in ("head_dim", "sliding_window", "sliding_window_size"):
        config.pop(key)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = cli("import", str(path))
    assert result.code == 2
    assert "head_dim (default 256)" in result.err and "sliding_window (default 4096)" in result.err
    assert result.err.count("\n") == 1


def test_models_filters_by_family_and_size(cli) -> None:
    names = {r["name"] for r in cli("models", "--family", "qwen3", "--max-params", "20B", "--json").json()["models"]}
    assert names == {"qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b"}
    big = {r["name"] for r in cli("models", "--min-params", "300B", "--json").json()["models"]}
    assert {"deepseek-v3", "kimi-k2", "glm-4.5", "llama3.1-405b", "llama4-maverick"} <= big
    assert all(r["total_params"] >= 300e9 for r in cli("models", "--min-params", "300B", "--json").json()["models"])
    oss = {r["name"] for r in cli("models", "--family", "gpt-oss", "--json").json()["models"]}
    assert oss == {"gpt-oss-20b", "gpt-oss-120b"}
    none = cli("models", "--family", "nosuchfamily")
    assert none.code == 2 and "no catalog model matches" in none.err


def test_show_yaml_is_a_spec_that_loads_back(cli, tmp_path: Path) -> None:
    # `show NAME --yaml` is the template a missing GPU's error points to: what it prints must load back as
    # the same spec (GPU through --gpu, model through MODEL).
    from calc.sources.catalog import load_gpu

    for name in ("h100", "t4", "mi300x"):
        result = cli("show", name, "--yaml")
        assert result.code == 0, result.err
        path = tmp_path / f"{name}.yaml"
        path.write_text(result.out)
        assert load_gpu(str(path)).model_dump() == load_gpu(name).model_dump()
        assert cli("memory", "llama2-7b", "--gpu", str(path), "--seq", "1024").code == 0  # 4096 (the default) needs 2 T4s
    result = cli("show", "qwen3-8b", "--yaml")
    path = tmp_path / "model.yaml"
    path.write_text(result.out)
    assert load_model(str(path)).model_dump() == load_model("qwen3-8b").model_dump()


def test_unknown_gpu_points_to_a_yaml_template(cli) -> None:
    result = cli("memory", "llama2-7b", "--gpu", "h1000")
    assert result.code == 2
    assert "did you mean h100" in result.err and "GPU YAML file" in result.err and "`llmcalc show h100 --yaml`" in result.err
