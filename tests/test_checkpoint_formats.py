"""Checkpoint formats priced tensor by tensor: fbgemm_fp8, compressed-tensors, NVIDIA ModelOpt FP8 / NVFP4,
and exclusions that name one block. Bytes are worked out by hand for a tiny Llama (H 64, I 128, 2 layers,
4 heads of 16, vocab 100, untied): per block q/k/v/o are 64x64, gate/up 64x128, down 128x64."""

from __future__ import annotations

from calc.memory.weights import weight_bytes_by_group, weights_per_gpu
from calc.sources.hf import model_from_hf_config

BASE = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 100, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16"}
OUTSIDE = {"embedding": 100 * 64 * 2, "lm_head": 100 * 64 * 2, "norms": (2 * 2 * 64 + 64) * 2}


def _groups(q: dict) -> dict[str, int]:
    return weight_bytes_by_group(model_from_hf_config({**BASE, "quantization_config": q}))


def test_fbgemm_fp8_with_one_block_excluded() -> None:
    # FbgemmFp8Linear: 1 B per weight + fp32 scale per output row + fp32 input_scale_ub.
    # attention: 4 x (4096 + 4*64 + 4) per block; MLP: gate/up 8192 + 4*128 + 4, down 8192 + 4*64 + 4.
    # "model.layers.0.mlp" keeps block 0's MLP in bf16 (3 x 8192 x 2 B), block 1's MLP is fp8.
    g = _groups({"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0,
                 "modules_to_not_convert": ["model.layers.0.mlp", "lm_head"]})
    assert g["attention"] == 2 * 4 * 4356
    assert g["mlp"] == 3 * 8192 * 2 + (2 * 8708 + 8452)
    assert {k: g[k] for k in OUTSIDE} == OUTSIDE
    m = model_from_hf_config({**BASE, "quantization_config": {"quant_method": "fbgemm_fp8",
                                                              "modules_to_not_convert": ["model.layers.0.mlp"]}})
    # PP 2: stage 0 holds block 0 (bf16 MLP) + embedding; stage 1 block 1 + final norm + head.
    stage0 = 4 * 4356 + 3 * 8192 * 2 + 2 * 64 * 2 + 100 * 64 * 2
    assert weights_per_gpu(m, None, pp=2) == stage0


def test_compressed_tensors_w4a16_group_packed() -> None:
    # pack-quantized int4, group 32, symmetric: n/2 + bf16 scale per (row, group) + weight_shape 16 B.
    q = {"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
         "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None,
                                       "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 32,
                                                   "symmetric": True, "dynamic": False}}}}
    g = _groups(q)
    assert g["attention"] == 2 * 4 * (2048 + 2 * 64 * 2 + 16)
    assert g["mlp"] == 2 * (2 * (4096 + 2 * 128 * 2 + 16) + (4096 + 2 * 64 * 4 + 16))
    assert g["lm_head"] == 100 * 64 * 2


def test_compressed_tensors_fp8_channel_static_and_regex_ignore() -> None:
    # float-quantized fp8, per-channel bf16 scales, static input scale (bf16); 're:' ignores down_proj.
    q = {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head", "re:.*mlp.down_proj$"],
         "config_groups": {"group_0": {"targets": ["Linear"],
                                       "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True},
                                       "input_activations": {"num_bits": 8, "type": "float", "strategy": "tensor",
                                                             "dynamic": False}}}}
    g = _groups(q)
    assert g["attention"] == 2 * 4 * (4096 + 2 * 64 + 2)
    assert g["mlp"] == 2 * (2 * (8192 + 2 * 128 + 2) + 8192 * 2)


def test_modelopt_fp8_and_nvfp4() -> None:
    # FP8: 1 B/weight + fp32 weight_scale + fp32 input_scale per Linear.
    g = _groups({"quant_method": "modelopt", "quant_algo": "FP8", "exclude_modules": ["lm_head"]})
    assert g["attention"] == 2 * 4 * (4096 + 8)
    # NVFP4: 4 bits + one fp8 scale per 16 inputs per row + fp32 weight_scale_2 + fp32 input_scale.
    g = _groups({"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16, "exclude_modules": ["lm_head"]})
    assert g["attention"] == 2 * 4 * (2048 + 64 * 4 + 8)
    assert g["mlp"] == 2 * (2 * (4096 + 128 * 4 + 8) + (4096 + 64 * 8 + 8))
