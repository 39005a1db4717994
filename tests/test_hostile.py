"""Hostile inputs (issue 12): broken and malicious model YAML, HF config.json, GPU YAML and
calibration files, bad numbers, contradictory options, unusable output paths and special files.

Every case must end with exit 2 and ONE stderr line `llmcalc: error: FIELD: ...` naming the field or
flag at fault (or exit 0 with a `llmcalc: warning:` line where a result is merely suspicious), never a
traceback, and within 1 s. The expected field in each row is what a user would need to be told (the
YAML key, the JSON key, the flag), written down from the input, not copied from the output.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
DELETE = object()
LIMIT_S = 1.0

# Valid starting points, one field changed per case.
MODEL = yaml.safe_load((ROOT / "model_configs" / "llama2-7b.yaml").read_text())
MODEL["aliases"] = []
GPU = yaml.safe_load((ROOT / "hardware_specs" / "h100-sxm.yaml").read_text())
GPU["aliases"] = []
HF = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
      "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
      "max_position_embeddings": 4096, "tie_word_embeddings": False}


def calibration(gemm: Any = 0.7, memory: Any = 0.9, **top: Any) -> dict[str, Any]:
    """A format-2 calibration of an H100 SXM (bf16 989.4 TFLOPS, 3350 GB/s) with one GEMM and one memory op."""
    data = {"format": 2, "gpu": "h100-sxm", "device_name": "NVIDIA H100 80GB HBM3", "is_gpu": True, "dtype": "bf16",
            "date": "2026-01-01", "roofline": {"peak_tflops": 989.4, "peak_gb_s": 3350.0, "source": "datasheet"},
            "ops": {"gemm": [{"size": 1e12, "measured_s": 0.00144, "efficiency": gemm}],
                    "memory": [{"size": 1e9, "measured_s": 0.00033, "efficiency": memory}]}}
    return changed(data, **top)



def changed(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` with fields set (``a__b`` sets ``a.b``) or removed (DELETE)."""
    data = yaml.safe_load(yaml.safe_dump(base))
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        node = data
        for parent in parents:
            node = node.setdefault(parent, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return data


def as_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def as_json(data: Any) -> str:
    import json

    return json.dumps(data)


# ---------------------------------------------------------------------------------------------
# The files the cases refer to as @name. Strings are written as UTF-8, bytes as they are.

BAD_NUMBERS = {"nan": math.nan, "inf": math.inf, "neg": -1, "zero": 0, "huge": 1e300, "text": "big",
               "list": [64], "googol": 10**30}
MODEL_INT_FIELDS = ["num_layers", "hidden_size", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size",
                    "max_position_embeddings", "head_dim"]
GPU_FLOAT_FIELDS = {"memory_gb": ["nan", "inf", "neg", "zero", "huge", "text"],
                    "hbm_tb_s": ["nan", "inf", "neg", "zero", "huge", "text"],
                    "interconnect_gb_s": ["nan", "inf", "neg", "zero", "huge"],
                    "tdp_w": ["nan", "inf", "zero", "huge"],
                    "tensor_clock_mhz": ["nan", "inf", "neg", "huge"],
                    "memory_visible_mib": ["neg", "zero", "googol", "text"]}
CALIBRATION_FIELDS = {"gemm": ["nan", "inf", "neg", "zero", "huge", "text"],
                      "memory": ["nan", "inf", "neg", "zero", "huge"]}

deep_yaml = "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 400))
FILES: dict[str, str | bytes] = {
    # model YAML: structure
    "empty.yaml": "",
    "blank.yaml": "   \n\n  \n",
    "list.yaml": "- 1\n- 2\n",
    "scalar.yaml": "just a string\n",
    "broken.yaml": "name: [unclosed\n",
    "tab.yaml": "name:\tx\n\tbad: indentation\n",
    "python-tag.yaml": "!!python/object/apply:os.system ['echo pwned']\n",
    "str-tag.yaml": as_yaml(MODEL).replace("name: llama2-7b", "name: !!str llama2-7b"),
    "bomb.yaml": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                 "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
    "anchor-only.yaml": as_yaml(MODEL).replace("name: llama2-7b", "name: &n llama2-7b"),
    "deep-flow.yaml": "[" * 200_000,
    "deep-block.yaml": deep_yaml,
    "long-list.yaml": "name: x\naliases: [" + "1," * 300_000 + "1]\n",  # 600 KB, 300,000 values
    "multi-doc.yaml": as_yaml(MODEL) + "---\n" + as_yaml(MODEL),
    "binary.yaml": bytes(range(256)) * 8,
    "latin1.yaml": "name: caf\xe9\n".encode("latin-1"),
    "huge.yaml": "# " + "x" * 1_100_000 + "\n",
    "int-key.yaml": "1: 2\n3: 4\n",
    "bigint.yaml": as_yaml(MODEL).replace("hidden_size: 4096", "hidden_size: " + "9" * 5000),
    "nul.yaml": "name: a\0b\n",
    "bom.yaml": "\ufeff" + as_yaml(MODEL),
    "dup-key.yaml": as_yaml(MODEL) + "num_layers: 64\n",
    "hf-dup-key.json": as_json(HF)[:-1] + ', "hidden_size": 8192}',
    "linesep-name.yaml": as_yaml(changed(MODEL, name="one\u2028two")),
    "bidi-name.yaml": as_yaml(changed(MODEL, name="abc\u202edcba")),
    # model YAML: fields
    "long-name.yaml": as_yaml(changed(MODEL, name="n" * 400)),
    "newline-name.yaml": as_yaml(changed(MODEL, name="two\nlines")),
    "escape-name.yaml": as_yaml(changed(MODEL, name="\x1b[31mred")),
    "many-aliases.yaml": as_yaml(changed(MODEL, aliases=[f"a{i}" for i in range(200)])),
    "missing-hidden.yaml": as_yaml(changed(MODEL, hidden_size=DELETE)),
    "extra-field.yaml": as_yaml(changed(MODEL, flux_capacitor=1)),
    "indivisible.yaml": as_yaml(changed(MODEL, hidden_size=4097)),
    "kv-heads.yaml": as_yaml(changed(MODEL, num_kv_heads=5)),
    "kv-more.yaml": as_yaml(changed(MODEL, num_kv_heads=64)),
    "norms.yaml": as_yaml(changed(MODEL, norms_per_layer=9)),
    "posemb.yaml": as_yaml(changed(MODEL, position_embedding="sinusoidal-ish")),
    "tied.yaml": as_yaml(changed(MODEL, tied_embeddings="maybe")),
    "moe-topk.yaml": as_yaml(changed(MODEL, moe={"num_experts": 8, "experts_per_token": 9,
                                                 "expert_intermediate_size": 14336})),
    "moe-zero.yaml": as_yaml(changed(MODEL, moe={"num_experts": 0, "experts_per_token": 2,
                                                 "expert_intermediate_size": 14336})),
    "moe-nan.yaml": as_yaml(changed(MODEL, moe={"num_experts": 8, "experts_per_token": 2,
                                                "expert_intermediate_size": math.nan})),
    "moe-dense.yaml": as_yaml(changed(MODEL, moe={"num_experts": 8, "experts_per_token": 2,
                                                  "expert_intermediate_size": 14336, "num_dense_layers": 99})),
    "moe-list.yaml": as_yaml(changed(MODEL, moe=[8, 2])),
    "rope-nan.yaml": as_yaml(changed(MODEL, rope_scaling_factor=math.nan)),
    "rope-huge.yaml": as_yaml(changed(MODEL, rope_scaling_factor=1e300)),
    "markup-name.yaml": as_yaml(changed(MODEL, name="[/]")),
    "markup-bold.yaml": as_yaml(changed(MODEL, name="[bold red]x[/bold red]")),
    # HF config.json
    "hf-list-type.json": as_json(changed(HF, model_type=["llama"])),
    "hf-int-type.json": as_json(changed(HF, model_type=7)),
    "hf-null-type.json": as_json(changed(HF, model_type=None)),
    "hf-unknown-type.json": as_json(changed(HF, model_type="llamaish")),
    "hf-dict-type.json": as_json(changed(HF, model_type={"a": 1})),
    "hf-missing-layers.json": as_json(changed(HF, num_hidden_layers=DELETE)),
    "hf-str-layers.json": as_json(changed(HF, num_hidden_layers="32")),
    "hf-float-layers.json": as_json(changed(HF, num_hidden_layers=32.5)),
    "hf-neg-layers.json": as_json(changed(HF, num_hidden_layers=-1)),
    "hf-zero-heads.json": as_json(changed(HF, num_attention_heads=0)),
    "hf-bool-hidden.json": as_json(changed(HF, hidden_size=True)),
    "hf-googol-vocab.json": as_json(changed(HF, vocab_size=10**30)),
    "hf-huge-layers-moe.json": as_json(changed(HF, model_type="qwen2_moe", num_hidden_layers=10**12,
                                               moe_intermediate_size=1408)),
    "hf-nan.json": as_json(HF).replace('"hidden_size": 4096', '"hidden_size": NaN'),
    "hf-infinity.json": as_json(HF).replace('"hidden_size": 4096', '"hidden_size": Infinity'),
    "hf-1e400.json": as_json(HF).replace('"hidden_size": 4096', '"hidden_size": 1e400'),
    "hf-digits.json": as_json(HF).replace('"hidden_size": 4096', '"hidden_size": ' + "9" * 5000),
    "hf-sparse-step.json": as_json(changed(HF, model_type="qwen2_moe", decoder_sparse_step=0,
                                           moe_intermediate_size=1408)),
    "hf-mlp-only.json": as_json(changed(HF, model_type="qwen2_moe", mlp_only_layers=5, moe_intermediate_size=1408)),
    "hf-mlp-only-nested.json": as_json(changed(HF, model_type="qwen2_moe", mlp_only_layers=[[1]],
                                               moe_intermediate_size=1408)),
    "hf-layer-freq.json": as_json(changed(HF, model_type="deepseek_v3", moe_layer_freq=0, n_routed_experts=8,
                                          num_experts_per_tok=2, moe_intermediate_size=1408, kv_lora_rank=512,
                                          qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)),
    "hf-topk.json": as_json(changed(HF, model_type="mixtral", num_local_experts=8, num_experts_per_tok=9)),
    "hf-tie-str.json": as_json(changed(HF, tie_word_embeddings="yes")),
    "hf-deep.json": "[" * 100_000 + "]" * 100_000,
    "hf-deep-obj.json": '{"a":' * 50 + "1" + "}" * 50,
    "hf-long-list.json": '{"model_type": "llama", "x": [' + "1," * 300_000 + "1]}",
    "hf-broken.json": '{"model_type": "llama",',
    "hf-list.json": "[1, 2, 3]",
    "hf-empty.json": "",
    "hf-long-name.json": as_json(changed(HF, _name_or_path="x" * 400)),
    "hf-quant-skip.json": as_json(changed(HF, quantization_config={"quant_method": "gptq", "bits": 4, "group_size": 128,
                                                                   "modules_to_not_convert": 5})),
    "hf-quant-bits.json": as_json(changed(HF, quantization_config={"quant_method": "gptq", "bits": "four"})),
    "hf-quant-group.json": as_json(changed(HF, quantization_config={"quant_method": "awq", "bits": 4, "group_size": 0})),
    "hf-quant-block.json": as_json(changed(HF, quantization_config={"quant_method": "fp8", "weight_block_size": [0, 128]})),
    # issue 20: a quantization_config we cannot price is refused, never priced as bf16
    "hf-quant-block-int.json": as_json(changed(HF, quantization_config={"quant_method": "fp8", "weight_block_size": 128})),
    "hf-quant-block-three.json": as_json(changed(HF, quantization_config={"quant_method": "fp8",
                                                                         "weight_block_size": [128, 128, 128]})),
    # a method that is a string but unknown ("garbage", "hqq") warns and answers (test_checkpoint_formats); one that
    # is not a string is refused
    "hf-quant-garbage.json": as_json(changed(HF, quantization_config={"quant_method": ["gptq"]})),
    "hf-quant-no-method.json": as_json(changed(HF, quantization_config={"bits": 4})),
    "hf-quant-text.json": as_json(changed(HF, quantization_config="mxfp4")),
    "hf-quant-torchao-type.json": as_json(changed(HF, quantization_config={"quant_method": "torchao", "quant_type": 4})),
    "hf-quant-torchao-group.json": as_json(changed(HF, quantization_config={
        "quant_method": "torchao", "quant_type": {"default": {"_type": "Int4WeightOnlyConfig", "_data": {"group_size": 0}}}})),
    "hf-quant-bnb-neither.json": as_json(changed(HF, quantization_config={"quant_method": "bitsandbytes"})),
    "hf-routed-zero.json": as_json(changed(HF, model_type="deepseek_v3", n_routed_experts=0, num_experts_per_tok=2,
                                           moe_intermediate_size=1408, kv_lora_rank=512, qk_nope_head_dim=128,
                                           qk_rope_head_dim=64, v_head_dim=128)),
    "hf-huge-int.json": as_json(changed(HF, vocab_size=10**400)),
    "hf-rope-inf.json": as_json(changed(HF, rope_scaling={"rope_type": "yarn", "factor": 4.0})).replace("4.0", "Infinity"),
    "hf-rope-neg.json": as_json(changed(HF, rope_scaling={"rope_type": "yarn", "factor": -4.0})),
    "hf-no-model-type.json": as_json(changed(HF, model_type=DELETE)),
    "hf-gptq-group-zero.json": as_json(changed(HF, quantization_config={"quant_method": "gptq", "bits": 4,
                                                                         "group_size": 0})),
    "hf-ct-bits-zero.json": as_json(changed(HF, quantization_config={
        "quant_method": "compressed-tensors", "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 0}}}})),
    "hf-rope-zero.json": as_json(changed(HF, rope_scaling={"rope_type": "yarn", "factor": 0})),
    # transformers writes Infinity into fields llmcalc never reads (Mamba-2 time_step_limit): not a refusal
    "hf-unused-infinity.json": as_json(changed(HF, time_step_limit=[0.0, 1.0], rms_norm_eps=1.0)).replace(
        "1.0]", "Infinity]").replace('"rms_norm_eps": 1.0', '"rms_norm_eps": NaN'),
    # GPU YAML
    "gpu-missing-arch.yaml": as_yaml(changed(GPU, arch=DELETE)),
    "gpu-extra.yaml": as_yaml(changed(GPU, warp_drive=True)),
    "gpu-long-name.yaml": as_yaml(changed(GPU, name="g" * 400)),
    "gpu-peak-neg.yaml": as_yaml(changed(GPU, datasheet_peak_tflops={"bf16": -1.0})),
    "gpu-peak-nan.yaml": as_yaml(changed(GPU, datasheet_peak_tflops={"bf16": math.nan})),
    "gpu-peak-inf.yaml": as_yaml(changed(GPU, datasheet_peak_tflops={"bf16": math.inf})),
    "gpu-peak-text.yaml": as_yaml(changed(GPU, datasheet_peak_tflops={"bf16": "fast"})),
    "gpu-peak-scalar.yaml": as_yaml(changed(GPU, datasheet_peak_tflops=989.4)),
    "gpu-peak-dtype.yaml": as_yaml(changed(GPU, datasheet_peak_tflops={"fp64x": 1.0})),
    "gpu-peak-empty.yaml": as_yaml(changed(GPU, datasheet_peak_tflops={})),
    "gpu-sms-zero.yaml": as_yaml(changed(GPU, sms=0)),
    "gpu-fpc-no-sms.yaml": as_yaml(changed(GPU, sms=DELETE)),
    "gpu-markup-name.yaml": as_yaml(changed(GPU, name="[/]")),
    # calibration YAML
    "cal-dtype.yaml": as_yaml(calibration(dtype="fp64")),
    "cal-other-gpu.yaml": as_yaml(calibration(gpu="a100-80g")),
    "cal-cpu.yaml": as_yaml(calibration(gpu="cpu", is_gpu=False)),
    "cal-missing-date.yaml": as_yaml(calibration(date=DELETE)),
    "cal-tiny-tflops.yaml": as_yaml(calibration(gemm=1e-300)),
    "cal-tiny-bw.yaml": as_yaml(calibration(memory=1e-300)),
    "cal-above-peak.yaml": as_yaml(calibration(gemm=1.4)),  # 1.4 x 989.4 TFLOPS on an H100: impossible
    "cal-above-bw.yaml": as_yaml(calibration(memory=1.3)),
    "cal-peak-nan.yaml": as_yaml(calibration(roofline__peak_tflops=math.nan)),
    "cal-peak-zero.yaml": as_yaml(calibration(roofline__peak_gb_s=0)),
    "cal-format.yaml": as_yaml(calibration(format=1)),
    "cal-list.yaml": "- 700\n",
    "cal-long-device.yaml": as_yaml(calibration(device_name="d" * 400)),
}
for _field in MODEL_INT_FIELDS:
    for _tag, _value in BAD_NUMBERS.items():
        FILES[f"model-{_field}-{_tag}.yaml"] = as_yaml(changed(MODEL, **{_field: _value}))
for _field, _tags in GPU_FLOAT_FIELDS.items():
    for _tag in _tags:
        FILES[f"gpu-{_field}-{_tag}.yaml"] = as_yaml(changed(GPU, **{_field: BAD_NUMBERS[_tag]}))
for _field, _tags in CALIBRATION_FIELDS.items():
    for _tag in _tags:
        FILES[f"cal-{_field}-{_tag}.yaml"] = as_yaml(calibration(**{_field: BAD_NUMBERS[_tag]}))


# ---------------------------------------------------------------------------------------------
# The cases: (arguments, expected exit code, substrings stderr must hold). @name is a file above,
# {tmp} the folder holding them, {fifo} a named pipe, {dir} a folder.

Case = tuple[list[str], int, list[str]]
LAT = ["latency", "llama2-7b", "--gpu", "h100", "--prompt", "512"]


def model_file_cases() -> Iterator[tuple[str, Case]]:
    for field in MODEL_INT_FIELDS:
        for tag in BAD_NUMBERS:
            yield f"model {field}={tag}", (["params", f"@model-{field}-{tag}.yaml"], 2, ["MODEL", field])
    structure = {
        "empty.yaml": "is empty", "blank.yaml": "is empty", "list.yaml": "mapping", "scalar.yaml": "mapping",
        "broken.yaml": "not valid safe YAML", "tab.yaml": "not valid safe YAML", "python-tag.yaml": "tag",
        "str-tag.yaml": "tag", "bomb.yaml": "anchors/aliases", "anchor-only.yaml": "anchors/aliases",
        "deep-flow.yaml": "nested", "deep-block.yaml": "nested", "long-list.yaml": "values", "multi-doc.yaml": "not valid safe YAML",
        "binary.yaml": "not UTF-8", "latin1.yaml": "not UTF-8", "huge.yaml": "bytes", "int-key.yaml": "text",
        "bigint.yaml": "hidden_size", "nul.yaml": "YAML",
        "long-name.yaml": "name", "newline-name.yaml": "name", "escape-name.yaml": "name",
        "many-aliases.yaml": "aliases", "missing-hidden.yaml": "hidden_size", "extra-field.yaml": "flux_capacitor",
        "indivisible.yaml": "hidden_size", "kv-heads.yaml": "num_kv_heads", "kv-more.yaml": "num_kv_heads",
        "norms.yaml": "norms_per_layer", "posemb.yaml": "position_embedding", "tied.yaml": "tied_embeddings",
        "moe-topk.yaml": "experts_per_token", "moe-zero.yaml": "num_experts",
        "moe-nan.yaml": "expert_intermediate_size", "moe-dense.yaml": "num_dense_layers", "moe-list.yaml": "moe",
        "rope-nan.yaml": "rope_scaling_factor", "rope-huge.yaml": "rope_scaling_factor",
        "dup-key.yaml": "num_layers", "hf-dup-key.json": "hidden_size", "linesep-name.yaml": "name",
        "bidi-name.yaml": "name",
    }
    for name, expect in structure.items():
        yield f"model file {name}", (["params", f"@{name}"], 2, ["MODEL", expect])


def hf_cases() -> Iterator[tuple[str, Case]]:
    expect = {
        "hf-list-type.json": "model_type", "hf-int-type.json": "model_type", "hf-null-type.json": "model_type",
        "hf-unknown-type.json": "model_type", "hf-dict-type.json": "model_type",
        "hf-missing-layers.json": "num_hidden_layers", "hf-str-layers.json": "num_hidden_layers",
        "hf-float-layers.json": "num_hidden_layers", "hf-neg-layers.json": "num_hidden_layers",
        "hf-zero-heads.json": "num_heads", "hf-bool-hidden.json": "hidden_size", "hf-googol-vocab.json": "vocab_size",
        "hf-huge-layers-moe.json": "num_hidden_layers", "hf-nan.json": "hidden_size", "hf-infinity.json": "hidden_size",
        "hf-1e400.json": "hidden_size", "hf-digits.json": "unreadable", "hf-sparse-step.json": "decoder_sparse_step",
        "hf-mlp-only.json": "mlp_only_layers", "hf-mlp-only-nested.json": "mlp_only_layers",
        "hf-layer-freq.json": "moe_layer_freq", "hf-topk.json": "experts_per_token",
        "hf-tie-str.json": "tie_word_embeddings", "hf-deep.json": "nested", "hf-deep-obj.json": "nested", "hf-long-list.json": "values",
        "hf-broken.json": "not valid JSON", "hf-list.json": "mapping", "hf-empty.json": "is empty",
        "hf-quant-skip.json": "modules_to_not_convert", "hf-quant-bits.json": "bits",
        "hf-quant-group.json": "group_size", "hf-quant-block.json": "block_size",
        "hf-quant-block-int.json": "quantization_config.weight_block_size",
        "hf-quant-block-three.json": "quantization_config.weight_block_size",
        "hf-quant-garbage.json": "quantization_config.quant_method", "hf-quant-no-method.json": "quantization_config.quant_method",
        "hf-quant-text.json": "'quantization_config'", "hf-quant-torchao-type.json": "quantization_config.quant_type",
        "hf-quant-torchao-group.json": "quantization_config.quant_type._data.group_size", "hf-quant-bnb-neither.json": "load_in_4bit",
        "hf-routed-zero.json": "n_routed_experts", "hf-huge-int.json": "vocab_size", "hf-rope-inf.json": "rope_scaling.factor",
        "hf-rope-neg.json": "rope_scaling.factor", "hf-rope-zero.json": "rope_scaling.factor",
        "hf-no-model-type.json": "'model_type'", "hf-gptq-group-zero.json": "quantization_config.group_size",
        "hf-ct-bits-zero.json": "quantization_config.config_groups.weights.num_bits",
    }
    for name, field in expect.items():
        yield f"hf {name}", (["params", f"@{name}"], 2, ["MODEL", field])


def gpu_cases() -> Iterator[tuple[str, Case]]:
    for field, tags in GPU_FLOAT_FIELDS.items():
        for tag in tags:
            yield f"gpu {field}={tag}", (["memory", "llama2-7b", "--gpu", f"@gpu-{field}-{tag}.yaml"], 2, ["--gpu", field])
    expect = {
        "gpu-missing-arch.yaml": "arch", "gpu-extra.yaml": "warp_drive", "gpu-long-name.yaml": "name",
        "gpu-peak-neg.yaml": "datasheet_peak_tflops", "gpu-peak-nan.yaml": "datasheet_peak_tflops",
        "gpu-peak-inf.yaml": "datasheet_peak_tflops", "gpu-peak-text.yaml": "datasheet_peak_tflops",
        "gpu-peak-scalar.yaml": "datasheet_peak_tflops", "gpu-peak-dtype.yaml": "datasheet_peak_tflops",
        "gpu-peak-empty.yaml": "datasheet_peak_tflops",
        "gpu-sms-zero.yaml": "sms", "gpu-fpc-no-sms.yaml": "sms",
    }
    for name, field in expect.items():
        yield f"gpu file {name}", (["memory", "llama2-7b", "--gpu", f"@{name}"], 2, ["--gpu", field])
    # `show` of a broken GPU file names the GPU file and field, not a model error.
    for name, field in (("gpu-memory_gb-nan.yaml", "memory_gb"), ("gpu-hbm_tb_s-inf.yaml", "hbm_tb_s"),
                        ("gpu-missing-arch.yaml", "arch"), ("gpu-peak-neg.yaml", "datasheet_peak_tflops")):
        yield f"show {name}", (["show", f"@{name}"], 2, ["GPU spec", field])
    # a model file given as --gpu, and a GPU file given as a model
    yield "model file as --gpu", (["memory", "llama2-7b", "--gpu", "@bom.yaml"], 2, ["--gpu", "model spec"])
    yield "gpu file as model", (["params", "@gpu-extra.yaml"], 2, ["MODEL", "warp_drive"])


def calibration_cases() -> Iterator[tuple[str, Case]]:
    for field, tags in CALIBRATION_FIELDS.items():
        for tag in tags:
            yield f"calibration {field}={tag}", ([*LAT, "--calibration", f"@cal-{field}-{tag}.yaml"], 2,
                                                 ["--calibration", "efficiency"])
    expect = {
        "cal-dtype.yaml": "dtype", "cal-other-gpu.yaml": "a100-80g", "cal-cpu.yaml": "CPU",
        "cal-missing-date.yaml": "date", "cal-tiny-tflops.yaml": "absurdly low", "cal-tiny-bw.yaml": "absurdly low",
        "cal-above-peak.yaml": "cannot exceed", "cal-above-bw.yaml": "cannot exceed", "cal-list.yaml": "mapping",
        "cal-peak-nan.yaml": "peak_tflops", "cal-peak-zero.yaml": "peak_gb_s", "cal-format.yaml": "format",
        "cal-long-device.yaml": "device_name",
    }
    for name, text in expect.items():
        yield f"calibration {name}", ([*LAT, "--calibration", f"@{name}"], 2, ["--calibration", text])


def number_cases() -> Iterator[tuple[str, Case]]:
    rows: list[tuple[list[str], str]] = [
        (["latency", "llama2-7b", "--gpu", "h100", "--prompt", "0"], "--prompt"),
        (["latency", "llama2-7b", "--gpu", "h100", "--prompt", "-5"], "--prompt"),
        (["latency", "llama2-7b", "--gpu", "h100", "--prompt", "abc"], "--prompt"),
        (["latency", "llama2-7b", "--gpu", "h100", "--prompt", "nan"], "--prompt"),
        (["latency", "llama2-7b", "--gpu", "h100", "--prompt", "1e400"], "--prompt"),
        (["latency", "llama2-7b", "--gpu", "h100", "--prompt", "100K"], "--prompt"),  # past the 4K context
        ([*LAT, "--output", "-1"], "--output"),
        ([*LAT, "--batch", "0"], "--batch"),
        ([*LAT, "--num-gpus", "0"], "--num-gpus"),
        ([*LAT, "--num-gpus", "5"], "--num-gpus"),  # 5 splits neither 32 heads nor a PP depth the search tries
        ([*LAT, "--ttft-ms", "nan"], "--ttft-ms"),
        ([*LAT, "--reserve-gib", "nan"], "--reserve-gib"),
        (["flops", "llama2-7b", "--batch", "0"], "--batch"),
        (["flops", "llama2-7b", "--seq", "0"], "--seq"),
        (["flops", "llama2-7b", "--seq", "1.5"], "--seq"),
        (["flops", "llama2-7b", "--output", "0"], "--output"),
        (["flops", "llama2-7b", "--seq", "100", "--context", "10"], "--context"),
        (["memory", "llama2-7b", "--batch", "-1"], "--batch"),
        (["memory", "llama2-7b", "--seq", "inf"], "--seq"),
        (["memory", "llama2-7b", "--seq", "0"], "--seq"),
        (["memory", "llama2-7b", "--mode", "train", "--recompute", "bogus"], "--recompute"),
        (["memory", "llama2-7b", "--mode", "bogus"], "--mode"),
        (["bench", "--dtype", "fp4"], "--dtype"),
        (["memory", "llama2-7b", "--dtype", "bf16", "--group-size", "128"], "--group-size"),
        (["flops", "llama2-7b", "--generate", "0"], "--generate"),  # the old spelling is named as typed
        (["concurrency", "llama2-7b", "--gpu", "h100", "--max-tokens", "0"], "--max-tokens"),
        (["memory", "llama2-7b", "--reserve-gib", "nan"], "--reserve-gib"),
        (["memory", "llama2-7b", "--reserve-gib", "inf"], "--reserve-gib"),
        (["memory", "llama2-7b", "--reserve-gib", "-1"], "--reserve-gib"),
        (["memory", "llama2-7b", "--reserve-gib", "1e300"], "--reserve-gib"),
        (["memory", "llama2-7b", "--tp", "0"], "--tp"),
        (["memory", "llama2-7b", "--tp", "3"], "--tp"),
        (["memory", "llama2-7b", "--mode", "train", "--zero", "7"], "--zero"),
        (["memory", "llama2-7b", "--dtype", "int4", "--group-size", "0"], "--group-size"),
        (["memory", "llama2-7b", "--dtype", "fp6"], "--dtype"),
        (["memory", "llama2-7b", "--kv-dtype", "fp2"], "--kv-dtype"),
        (["memory", "llama2-7b", "--dtype", ""], "--dtype"),  # issue 20: empty is not the default
        (["memory", "llama2-7b", "--kv-dtype", " "], "--kv-dtype"),
        ([*LAT, "--dtype", ""], "--dtype"),
        (["train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "abc"], "--tokens"),
        (["train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "NaN"], "--tokens"),
        (["train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "-5"], "--tokens"),
        (["train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "1e400"], "--tokens"),
        (["train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "15X"], "--tokens"),
        (["train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "2T", "--mfu", "2"], "--mfu"),
        (["train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "2T", "--mfu", "nan"], "--mfu"),
        (["train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "2T", "--price", "nan"], "--price"),
        (["mfu", "llama2-7b", "--gpu", "h100", "--tokens-per-s", "1e15"], "--tokens-per-s"),  # MFU far above 100%
        (["mfu", "llama2-7b", "--gpu", "h100", "--tokens-per-s", "inf"], "--tokens-per-s"),
        (["mfu", "llama2-7b", "--gpu", "h100", "--step-time", "nan", "--global-batch", "8"], "--step-time"),
        (["mfu", "llama2-7b", "--gpu", "h100", "--step-time", "0", "--global-batch", "8"], "--step-time"),
        (["mfu", "llama2-7b", "--gpu", "h100", "--tokens", "15T", "--gpu-hours", "1"], "--gpu-hours"),
        (["concurrency", "llama2-7b", "--gpu", "h100", "--max-model-len", "0"], "--max-model-len"),
        (["concurrency", "llama2-7b", "--gpu", "h100", "--max-model-len", "1T"], "--max-model-len"),
        (["compare", "llama2-7b", "h100", "--price", "h100=abc"], "--price"),
        (["report", "llama2-7b", "--gpu", "h100", "--num-gpus", "0"], "--num-gpus"),
        (["report", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--mode", "train", "--mfu", "5"], "--mfu"),
        (["bench", "--sizes", "0,x"], "--sizes"),
        (["bench", "--repeats", "0"], "--repeats"),
    ]
    for args, flag in rows:
        # the flag at fault leads the message: `llmcalc: error: --seq: ...`
        yield "number " + " ".join(args[2:] if args[0] != "bench" else args[1:]), (args, 2, [f"error: {flag}: "])


def option_cases() -> Iterator[tuple[str, Case]]:
    rows: list[tuple[list[str], str]] = [
        (["mfu", "llama2-7b", "--gpu", "h100", "--tokens-per-s", "4000", "--step-time", "2", "--global-batch", "8"],
         "--step-time"),
        (["mfu", "llama2-7b", "--model", "llama2-7b", "--gpu", "h100", "--tokens-per-s", "4000"], "--model"),
        (["report", "llama2-7b", "--gpu", "h100", "--mode", "train", "--prompt", "100"], "--prompt"),
        (["report", "llama2-7b", "--gpu", "h100", "--json", "--format", "markdown"], "--format"),
        (["memory", "llama2-7b", "--zero", "3"], "--zero"),
        (["memory", "llama2-7b", "--recompute", "full"], "--recompute"),
        (["memory", "llama2-7b", "--mode", "train", "--kv-dtype", "fp8"], "--kv-dtype"),
        (["memory", "llama2-7b", "--num-gpus", "4", "--tp", "2"], "--num-gpus"),
        (["memory", "llama2-7b", "--sp"], "--sp"),
        (["train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "2T", "--price", "2",
          "--price-per-gpu-hour", "2"], "--price-per-gpu-hour"),
        (["latency", "llama2-70b", "--gpu", "h100", "--prompt", "512"], "does not fit"),
        (["latency", "llama2-7b", "--gpu", "h100", "--prompt", "512", "--warp", "9"], "--warp"),
        (["params"], "MODEL"),
        (["params", "no-such-model"], "MODEL"),
        (["memory", "llama2-7b", "--gpu", "no-such-gpu"], "--gpu"),
        (["compare", "llama2-7b", "no-such-gpu"], "GPU"),
        (["report", "llama2-7b", "--gpu", "h100", "--mode", "sideways"], "--mode"),
        (["nosuchcommand"], "nosuchcommand"),
    ]
    for args, flag in rows:
        yield "options " + " ".join(args), (args, 2, [flag])


def path_and_special_cases() -> Iterator[tuple[str, Case]]:
    report = ["report", "llama2-7b", "--gpu", "h100"]
    rows: list[tuple[list[str], str]] = [
        ([*report, "--plot", "{dir}"], "--plot"),
        ([*report, "--plot", "{tmp}/missing/chart.png"], "--plot"),
        ([*report, "--plot", "/dev/null"], "--plot"),
        ([*report, "--plot", "{tmp}/chart.pdf"], "--plot"),
        ([*report, "--plot", "/proc/chart.png"], "--plot"),
        ([*report, "--plot", ""], "--plot"),
        (["bench", "--save", "{dir}"], "--save"),
        (["bench", "--save", "{tmp}/missing/cal.yaml"], "--save"),
        (["bench", "--save", "{tmp}/cal.txt"], "--save"),
        (["params", "/dev/zero"], "MODEL"),
        (["params", "/dev/urandom"], "MODEL"),
        (["params", "/dev/null"], "MODEL"),
        (["params", "{fifo}"], "MODEL"),
        (["params", "{dir}"], "MODEL"),
        (["params", "{tmp}/zero-link.yaml"], "MODEL"),
        (["show", "/dev/zero"], "NAME"),
        (["memory", "llama2-7b", "--gpu", "/dev/zero"], "--gpu"),
        (["memory", "llama2-7b", "--gpu", "{fifo}"], "--gpu"),
        (["memory", "llama2-7b", "--gpu", "{dir}"], "--gpu"),
        ([*LAT, "--calibration", "/dev/urandom"], "--calibration"),
        ([*LAT, "--calibration", "{fifo}"], "--calibration"),
        ([*LAT, "--calibration", "{dir}"], "--calibration"),
        ([*LAT, "--calibration", "{tmp}/missing.yaml"], "--calibration"),
        (["params", "m" * 400], "MODEL"),
        (["params", "x/" * 3000], "MODEL"),
        (["params", "{tmp}/two\nlines.yaml"], "two\\nlines"),  # a file name cannot break the one line
        (["params", "\x1b[31mred"], "\\x1b"),
        (["memory", "llama2-7b", "--gpu", "g" * 400], "--gpu"),
        (["compare", "llama2-7b", "g" * 400], "GPU"),
    ]
    for args, flag in rows:
        shown = " ".join(a if len(a) < 40 else a[:20] + "..." for a in args)
        yield "path " + shown, (args, 2, [flag])


def suspicious_cases() -> Iterator[tuple[str, Case]]:
    """Exit 0, with one warning line naming the input."""
    # llama2-7b: 6N = 6 x 6,738,415,616 = 4.04e10 FLOPs/token; 20,000 tokens/s on one H100 (989.4 TFLOPS)
    # is 20,000 x 4.04e10 / 989.4e12 = 81.7% MFU: possible, above any published run.
    yield "suspicious mfu 82%", (["mfu", "llama2-7b", "--gpu", "h100", "--tokens-per-s", "20000"], 0,
                                 ["warning", "--tokens-per-s"])
    # 8192 tokens on Llama 2 (max_position_embeddings 4096): memory can be sized, the model was not trained for it.
    yield "suspicious flops --seq 8K", (["flops", "llama2-7b", "--seq", "8192"], 0, ["warning", "--seq"])
    yield "suspicious flops --context 100K", (["flops", "llama2-7b", "--context", "100K"], 0, ["warning", "--context"])
    yield "suspicious memory --seq 8K", (["memory", "llama2-7b", "--seq", "8192"], 0, ["warning", "--seq"])
    # 1 token/s over 1e12 GPUs: MFU 4e-17, a unit slip, not a run.
    yield "suspicious mfu far below 1%", (["mfu", "llama2-7b", "--gpu", "h100", "--num-gpus", "1T", "--tokens-per-s", "1"],
                                          0, ["warning", "--tokens-per-s", "below 1%"])
    # 1e30 tokens: over 1000x the largest published corpus (Llama 3: 15T tokens).
    yield "suspicious train-time 1e30 tokens", (["train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "8",
                                                 "--tokens", "1e30"], 0, ["warning", "--tokens"])
    yield "suspicious mfu --seq 8K", (["mfu", "llama2-7b", "--gpu", "h100", "--tokens-per-s", "4000", "--seq", "8192"],
                                      0, ["warning", "--seq"])


def literal_name_cases() -> Iterator[tuple[str, Case]]:
    """Names that look like rich markup are printed as they are (exit 0)."""
    yield "markup model name [/]", (["params", "@markup-name.yaml"], 0, [])
    yield "markup model name [bold red]", (["params", "@markup-bold.yaml"], 0, [])
    yield "markup gpu name [/]", (["memory", "llama2-7b", "--gpu", "@gpu-markup-name.yaml"], 0, [])
    yield "bom model file", (["params", "@bom.yaml"], 0, [])
    yield "hf long _name_or_path", (["params", "@hf-long-name.json"], 0, [])
    yield "hf Infinity in an unread field", (["params", "@hf-unused-infinity.json"], 0, [])


CASES = dict([*model_file_cases(), *hf_cases(), *gpu_cases(), *calibration_cases(), *number_cases(),
              *option_cases(), *path_and_special_cases(), *suspicious_cases(), *literal_name_cases()])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for name, content in FILES.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    os.mkfifo(folder / "pipe")
    (folder / "adir").mkdir()
    (folder / "zero-link.yaml").symlink_to("/dev/zero")
    run_cli("params", "llama2-7b")  # imports done once, outside the timed cases
    return folder


def _expand(arg: str, folder: Path) -> str:
    if arg.startswith("@"):
        return str(folder / arg[1:])
    return arg.replace("{tmp}", str(folder)).replace("{fifo}", str(folder / "pipe")).replace("{dir}", str(folder / "adir"))


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang


def test_the_suite_is_big_enough() -> None:
    assert len(CASES) >= 150, len(CASES)


@pytest.mark.parametrize("case", list(CASES), ids=[name[:90] for name in CASES])
def test_hostile_input(workdir: Path, case: str) -> None:
    args, code, needles = CASES[case]
    argv = [_expand(a, workdir) for a in args]
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(5)  # a hang becomes a failure, not a stuck suite
    start = time.process_time()  # CPU time: other processes on a busy machine do not count
    try:
        r = run_cli(*argv)
    except _Hang:
        pytest.fail(f"hung: {case}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.process_time() - start
    assert "Traceback" not in r.err + r.out, r.err
    assert "internal error" not in r.err, r.err
    assert r.code == code, (r.code, r.err[-500:], r.out[-300:])
    lines = r.err.strip().splitlines()
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("llmcalc: error: "), r.err
    else:  # notes say what a suffixed number was read as
        lines = [line for line in lines if not line.startswith("llmcalc: note: ")]
        assert all(line.startswith("llmcalc: warning: ") for line in lines), r.err
        assert bool(lines) == bool(needles), r.err
    for needle in needles:
        assert needle in r.err, (needle, r.err)
    assert elapsed < LIMIT_S, f"{case}: {elapsed:.2f} s"


def test_markup_names_are_printed_literally(workdir: Path) -> None:
    r = run_cli("params", str(workdir / "markup-name.yaml"))
    assert r.code == 0 and "Parameters of [/]" in r.out
    r = run_cli("params", str(workdir / "markup-bold.yaml"))
    assert r.code == 0 and "[bold red]x[/bold red]" in r.out


def test_gpu_names_stay_whole_in_a_narrow_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from calc.report import render

    monkeypatch.setattr(render.console, "_width", 40)
    r = run_cli("compare", "llama2-7b", "h100-pcie", "h100-sxm")
    assert r.code == 0, r.err
    assert "h100-pcie" in r.out and "h100-sxm" in r.out and "…" not in r.out


def test_no_ellipsis_anywhere_when_narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    from calc.report import render

    monkeypatch.setattr(render.console, "_width", 40)
    for args in (["gpus"], ["models"], ["memory", "llama2-70b", "--gpu", "h100"], ["params", "deepseek-v3"],
                 ["report", "llama2-7b", "--gpu", "h100"], ["latency", "llama2-7b", "--gpu", "h100", "--prompt", "1K"]):
        r = run_cli(*args)
        assert r.code in (0, 2) and "…" not in r.out, args


def test_memory_chart_legend_reads_without_colour() -> None:
    r = run_cli("report", "llama2-7b", "--gpu", "h100")
    legend = next(line for line in r.out.splitlines() if "capacity" in line and "weights" in line)
    # one distinct glyph per category, each named: no colour needed to tell them apart
    assert "█ weights" in legend and "▒ KV cache" in legend and "░ other" in legend


def test_empty_dtype_lists_the_valid_ones() -> None:
    r = run_cli("memory", "llama2-7b", "--dtype", "")
    assert r.code == 2 and r.err.strip() == (
        "llmcalc: error: --dtype: unknown dtype ''; use one of fp32, tf32, bf16, fp16, fp8, int8, int4, nvfp4, mxfp4, awq, "
        "gptq"), r.err


def test_4bit_format_with_bf16_activations_on_a_gpu_without_bf16_is_refused() -> None:
    """A bf16 checkpoint requantized to MXFP4 keeps bf16 activations; a V100 has no bf16 tensor peak (Volta: fp16
    only), so serve refuses it in one line naming --dtype (it raised KeyError 'bf16' inside the weight view)."""
    r = run_cli("serve", "gemma3-12b", "--gpu", "v100-32g", "--dtype", "mxfp4", "--prompt", "2K", "--output", "512",
                "--rate", "10")
    # (pass 42: MXFP4's kernels need compute capability 8.0, a V100 is 7.0: refused for that first, naming --dtype)
    assert r.code == 2 and "--dtype" in r.err and "compute capability 8.0" in r.err and "internal" not in r.err, r.err
    # gptq runs fp16 activations on a V100 (no Marlin kernel below compute capability 8.0), which vLLM refuses for
    # Gemma 3 (pass 42): refused naming --gpu; a Llama runs there
    gptq = run_cli("serve", "gemma3-12b", "--gpu", "v100-32g", "--dtype", "gptq", "--prompt", "2K", "--output", "512",
                   "--rate", "1")
    assert gptq.code == 2 and gptq.err.startswith("llmcalc: error: --gpu") and "Marlin" in gptq.err
    assert run_cli("serve", "llama3-8b", "--gpu", "v100-32g", "--dtype", "gptq", "--prompt", "2K", "--output", "512",
                   "--rate", "1").code == 0
