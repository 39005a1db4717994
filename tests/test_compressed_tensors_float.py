"""compressed-tensors float-quantized checkpoints (llm-compressor FP8_DYNAMIC, the usual "-FP8-dynamic" repos:
config_groups weights {"num_bits": 8, "type": "float"}) are FP8, not INT8 (QA finding: priced and labelled int8)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIX = Path(__file__).parent / "fixtures" / "quant"


def _latency(cli, config: str, gpu: str) -> dict:
    r = cli("latency", str(FIX / config), "--gpu", gpu, "--batch", "32", "--prompt", "2048", "--output", "256", "--json")
    assert r.code == 0, r.err
    return r.json()


@pytest.mark.parametrize("gpu", ["a100", "h100"])
def test_float8_compressed_tensors_price_as_fp8(cli, gpu: str) -> None:
    ct, native = _latency(cli, "llama3-8b-ct-fp8-dynamic.json", gpu), _latency(cli, "llama3-8b-fp8-tensor.json", gpu)
    assert ct["weights_dtype"] == native["weights_dtype"] == "fp8"
    # one byte per weight either way (per-channel vs per-tensor scales differ by a few MB): the same step
    assert ct["ttft_s"] == pytest.approx(native["ttft_s"], rel=0.01)
    assert ct["tpot_s"] == pytest.approx(native["tpot_s"], rel=0.01)


def test_an_unknown_quantization_type_is_refused(cli, tmp_path: Path) -> None:
    import json

    config = json.loads((FIX / "llama3-8b-ct-fp8-dynamic.json").read_text())
    config["quantization_config"]["config_groups"]["group_0"]["weights"]["type"] = "posit"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    r = cli("params", str(path))
    assert r.code == 2 and "type" in r.err and "Traceback" not in r.err


def test_a_task_head_is_refused_not_counted_as_the_lm_head(cli) -> None:
    """QA finding: LlamaForSequenceClassification was counted with a 525,336,576-parameter lm_head (128,256 x 4,096)
    where the checkpoint has a 2 x 4,096 score head; a head llmcalc does not model is refused, naming it."""
    r = cli("params", str(Path(__file__).parent / "fixtures" / "llama3-8b-seqcls.json"))
    assert r.code == 2 and "LlamaForSequenceClassification" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize(("method", "extra", "field"), [
    ("gptq", {"bits": 5}, "bits"),  # GPTQ kernels: 2, 3, 4, 8 bits
    ("awq", {"bits": 3}, "bits"),  # AutoAWQ: 4 bits only
    ("gptq", {"bits": 4, "lm_head": True}, "lm_head"),  # a quantized head is not priced: refused, not ignored
])
def test_integer_checkpoints_llmcalc_cannot_price_are_refused(cli, tmp_path: Path, method: str, extra: dict,
                                                              field: str) -> None:
    import json

    config = json.loads((FIX / "llama3-8b-ct-fp8-dynamic.json").read_text())
    config["quantization_config"] = {"quant_method": method, "group_size": 128, **extra}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    r = cli("params", str(path))
    assert r.code == 2 and f"quantization_config.{field}" in r.err and "Traceback" not in r.err
