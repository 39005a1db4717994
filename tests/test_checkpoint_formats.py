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
    # fbgemm_fp8: 1 B per weight + fp32 weight_scale per output row; activation_scale_ub is a config value, not a
    # tensor (Meta's 405B FP8 checkpoint: 1,509 tensors, one weight_scale per fp8 Linear and nothing else added).
    # attention: 4 x (4096 + 4*64) per block; MLP: gate/up 8192 + 4*128, down 8192 + 4*64.
    # "model.layers.0.mlp" keeps block 0's MLP in bf16 (3 x 8192 x 2 B), block 1's MLP is fp8.
    g = _groups({"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0,
                 "modules_to_not_convert": ["model.layers.0.mlp", "lm_head"]})
    assert g["attention"] == 2 * 4 * 4352
    assert g["mlp"] == 3 * 8192 * 2 + (2 * 8704 + 8448)
    assert {k: g[k] for k in OUTSIDE} == OUTSIDE
    m = model_from_hf_config({**BASE, "quantization_config": {"quant_method": "fbgemm_fp8",
                                                              "modules_to_not_convert": ["model.layers.0.mlp"]}})
    # PP 2: stage 0 holds block 0 (bf16 MLP) + embedding; stage 1 block 1 + final norm + head.
    stage0 = 4 * 4352 + 3 * 8192 * 2 + 2 * 64 * 2 + 100 * 64 * 2
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


def test_legacy_compression_config_is_read_as_compressed_tensors() -> None:
    # early llm-compressor checkpoints: the same scheme under compression_config (no quantization_config), as vLLM
    # reads it; priced exactly as the quantization_config form above, not as bf16
    scheme = {"format": "float-quantized", "ignore": ["lm_head"],
              "config_groups": {"group_0": {"targets": ["Linear"],
                                            "weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}}
    legacy = weight_bytes_by_group(model_from_hf_config({**BASE, "compression_config": scheme}))
    assert legacy["attention"] == 2 * 4 * (4096 + 2 * 64)  # fp8 weight + bf16 scale per output row
    assert legacy == _groups({"quant_method": "compressed-tensors", **scheme})


def test_modelopt_fp8_and_nvfp4() -> None:
    # FP8: 1 B/weight + fp32 weight_scale + fp32 input_scale per Linear.
    g = _groups({"quant_method": "modelopt", "quant_algo": "FP8", "exclude_modules": ["lm_head"]})
    assert g["attention"] == 2 * 4 * (4096 + 8)
    # NVFP4: 4 bits + one fp8 scale per 16 inputs per row + fp32 weight_scale_2 + fp32 input_scale.
    g = _groups({"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16, "exclude_modules": ["lm_head"]})
    assert g["attention"] == 2 * 4 * (2048 + 64 * 4 + 8)
    assert g["mlp"] == 2 * (2 * (4096 + 128 * 4 + 8) + (4096 + 64 * 8 + 8))


# torchao: quant_type as transformers writes it (TorchAoConfig.to_dict -> torchao core/config.py config_to_dict;
# the dicts below are what torchao 0.18.0 config_to_dict printed). Layouts from torchao/quantization/quantize_/
# workflows/*: Int4Tensor qdata (N, K/2) + bf16 scale and zero_point (K/G, N); Int8Tensor int8 + fp32 scale +
# int8 zero point per row; Float8Tensor fp8 + fp32 scale per row / per tensor; IntxUnpackedToInt8Tensor int8
# per weight + bf16 scale + int8 zero point per group. Version 1 (the string form): int4 tinygemm tiles pad
# out to 8 and in to 1024 with bf16 (scale, zero) pairs; int8 keeps a bf16 scale and an int64 zero point per row.
def _ao(entry: dict, **extra) -> dict:
    return {"quant_method": "torchao", "quant_type": {"default": entry}, **extra}


_PER_ROW = {"_type": "PerRow", "_version": 1, "_data": {"dim": -1}}
_INT4_PLAIN = {"_type": "Int4WeightOnlyConfig", "_version": 2, "_data": {
    "group_size": 32, "set_inductor_config": True, "int4_packing_format": {"_type": "Int4PackingFormat", "_data": "PLAIN"},
    "int4_choose_qparams_algorithm": {"_type": "Int4ChooseQParamsAlgorithm", "_data": "TINYGEMM"}, "int4_tile_packed_ntile": 8}}
_INT8 = {"_type": "Int8WeightOnlyConfig", "_version": 2, "_data": {"group_size": None, "granularity": _PER_ROW}}


def test_torchao_int4_plain_tiles_and_skips() -> None:
    # plain g32: a 64x64 matrix is 4096/2 + 64 rows x 2 groups x (2 + 2) B = 2560; gate/up 4096 + 128*2*4 = 5120,
    # down (128 in) 4096 + 64*4*4 = 5120.
    g = _groups(_ao(_INT4_PLAIN))
    assert g["attention"] == 2 * 4 * 2560
    assert g["mlp"] == 2 * 3 * 5120
    assert {k: g[k] for k in OUTSIDE} == OUTSIDE
    # string form (version 1, tinygemm tiles): in padded 64 -> 1024: q/k/v/o 64*1024/2 + 64*32*4 = 40960,
    # gate/up 128*1024/2 + 128*32*4 = 81920, down 40960.
    g = _groups({"quant_method": "torchao", "quant_type": "int4_weight_only", "quant_type_kwargs": {"group_size": 32}})
    assert g["attention"] == 2 * 4 * 40960
    assert g["mlp"] == 2 * (2 * 81920 + 40960)
    # group 48 does not divide K = 64: torchao leaves those weights unquantized (bf16); down (K 128) neither.
    g = _groups(_ao({**_INT4_PLAIN, "_data": {**_INT4_PLAIN["_data"], "group_size": 48}}))
    assert g["attention"] == 2 * 4 * 4096 * 2 and g["mlp"] == 2 * 3 * 8192 * 2


def test_torchao_int8_fp8_intx_and_embeddings() -> None:
    # Int8 v2 per row: 4096 + 64 x (fp32 4 + int8 1) = 4416 per 64x64; v1 string: 4096 + 64 x (bf16 2 + int64 8).
    assert _groups(_ao(_INT8))["attention"] == 2 * 4 * 4416
    assert _groups({"quant_method": "torchao", "quant_type": "int8_weight_only", "quant_type_kwargs": {}})["attention"] == 2 * 4 * 4736
    # Float8 dynamic: per-tensor by default (one fp32 scale): 4096 + 4; per-row weight: 4096 + 64*4.
    fp8 = {"_type": "Float8DynamicActivationFloat8WeightConfig", "_version": 2, "_data": {
        "granularity": [{"_type": "PerTensor", "_version": 1, "_data": {}}, {"_type": "PerTensor", "_version": 1, "_data": {}}]}}
    assert _groups(_ao(fp8))["attention"] == 2 * 4 * 4100
    assert _groups(_ao({**fp8, "_data": {"granularity": [_PER_ROW, _PER_ROW]}}))["attention"] == 2 * 4 * 4352
    # Intx int4 group 32, unpacked to int8: 4096 + 64 rows x 2 groups x (bf16 2 + int8 1) = 4480.
    intx = {"_type": "IntxWeightOnlyConfig", "_version": 2, "_data": {
        "weight_dtype": {"_type": "torch.dtype", "_data": "int4"}, "granularity": {"_type": "PerGroup", "_version": 1,
                                                                                  "_data": {"group_size": 32}},
        "scale_dtype": None, "intx_packing_format": {"_type": "IntxPackingFormat", "_data": "UNPACKED_TO_INT8"}}}
    assert _groups(_ao(intx))["attention"] == 2 * 4 * 4480
    # include_input_output_embeddings: the embedding (100 rows of 64) and head quantized too: 6400 + 100 x 5.
    g = _groups(_ao(_INT8, include_input_output_embeddings=True, modules_to_not_convert=[]))
    assert g["embedding"] == g["lm_head"] == 6400 + 100 * 5


def test_torchao_matrix_bytes_match_torchao_on_cpu() -> None:
    # A 768-in x 200-out bf16 Linear: qdata 153,600 B; plus per row fp32 scale (+ int8 zero point for int8),
    # or per group of 32 a bf16 scale + int8 zero point (intx), or per group of 64 fp32 + int8 (int8 PerGroup).
    # torchao 0.18.0 on CPU (quantize_, summing the tensor subclass's qdata/scale/zero_point bytes) stored the same.
    from calc.memory.weights import quantized_matrix_bytes
    from calc.specs import QuantSpec

    def ao(**kw) -> int:
        return int(quantized_matrix_bytes(QuantSpec(method="torchao", **kw), 768, 200))

    assert ao(bits=8, strategy="channel", scale_bytes=4, zero_point_bytes=1) == 153_600 + 200 * 5 == 154_600
    assert ao(bits=8, strategy="channel", scale_bytes=4) == 153_600 + 200 * 4 == 154_400
    assert ao(bits=8, strategy="group", group_size=32, scale_bytes=2, zero_point_bytes=1) == 153_600 + 200 * 24 * 3 == 168_000
    assert ao(bits=8, strategy="group", group_size=64, scale_bytes=4, zero_point_bytes=1) == 153_600 + 200 * 12 * 5 == 165_600


def test_torchao_qwen3_8b_int4_checkpoint() -> None:
    # Qwen3-8B (tests/fixtures/hf/qwen3-8b.json) with Int4WeightOnlyConfig g128 plain, as pytorch/Qwen3-8B-INT4:
    # per block the Linear weights are 4096*(4096 + 1024 + 1024 + 4096) + 3*4096*12288 = 192,937,984, each at
    # 1/2 + 4/128 B = 102,498,304 B; x 36 = 3,689,938,944. bf16: embedding and head 2 x 151936*4096*2 =
    # 2,489,319,424; norms (36 x (2*4096 + 2*128) + 4096) * 2 = 616,448. Total 6,179,874,816 B (the model card's
    # "6.27 GB needed" is vLLM's peak, weights plus activations).
    import json
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "fixtures/hf/qwen3-8b.json").read_text())
    q = _ao({**_INT4_PLAIN, "_data": {**_INT4_PLAIN["_data"], "group_size": 128}})
    assert sum(weight_bytes_by_group(model_from_hf_config({**data, "quantization_config": q})).values()) == 6_179_874_816


def test_unknown_quant_method_warns_and_answers(tmp_path, cli) -> None:
    # An unmodelled method is priced at torch_dtype, with one warning naming it and the dtype assumed.
    path = tmp_path / "config.json"
    import json

    for method, shown in (("hqq", "'hqq'"), ("eetq", "'eetq'"), ("quark", "'quark'"), ("aqlm", "'aqlm'")):
        path.write_text(json.dumps({**BASE, "quantization_config": {"quant_method": method, "bits": 4}}))
        r = cli("memory", str(path), "--mode", "infer")
        assert r.code == 0, r.err
        # the warning of the quantization_config (the model is named by its folder, whose name holds "quant_method" too)
        lines = [line for line in r.err.splitlines() if line.startswith("llmcalc: warning: quantization_config")]
        assert len(lines) == 1 and shown in lines[0] and "bf16 (torch_dtype bfloat16)" in lines[0], r.err
    # a torchao scheme outside the modelled ones warns too; a missing or non-string method stays refused.
    path.write_text(json.dumps({**BASE, "quantization_config": {"quant_method": "torchao", "quant_type": "autoquant"}}))
    r = cli("params", str(path))
    assert r.code == 0 and "'autoquant'" in r.err
    for bad in ({"bits": 4}, {"quant_method": 4}):
        path.write_text(json.dumps({**BASE, "quantization_config": bad}))
        r = cli("params", str(path))
        assert r.code == 2 and "quantization_config.quant_method" in r.err


def _shipped(name: str) -> int:
    from pathlib import Path

    from calc.sources.catalog import load_model

    path = Path(__file__).parents[1] / "benchmarks/data/configs" / name
    return sum(weight_bytes_by_group(load_model(str(path))).values())


def test_real_compressed_tensors_and_modelopt_checkpoints_within_1pct() -> None:
    # Llama-3.1-8B: per block the Linear weights are 4096*(4096 + 1024 + 1024 + 4096) + 3*4096*14336 = 218,103,808,
    # x 32 = 6,979,321,856 quantized; embedding + untied head 2 x 128256*4096 x 2 B = 2,101,346,304 bf16;
    # norms (32*2 + 1) * 4096 * 2 B = 532,480.
    # RedHatAI Meta-Llama-3.1-8B-Instruct-FP8-dynamic (compressed-tensors fp8, per-channel bf16 scale, dynamic
    # activations): 6,979,321,856 x 1 B + 32 x 43,008 output rows x 2 B = 2,752,512 -> 9,083,953,152 B.
    # vLLM logs "Loading model weights took 8.4939 GB" (GiB) = 9,120,255,679 B: it keeps the scales in fp32
    # (+2,752,512) and a bf16 rope cos/sin cache of 131072 x 128 x 2 B = 33,554,432, which the checkpoint lacks.
    fp8 = _shipped("llama-3.1-8b-instruct-fp8-dynamic.json")
    assert fp8 == 6_979_321_856 + 2_752_512 + 2_101_346_304 + 532_480
    assert abs(fp8 / 9_120_255_679 - 1) < 0.01
    # nvidia/Llama-3.1-8B-Instruct-FP4 (ModelOpt NVFP4, group 16, lm_head excluded): 6,979,321,856 / 2 + one e4m3
    # scale per 16 = 436,207,616 + 224 Linears x (fp32 weight_scale_2 + input_scale) 1,792 -> 6,027,749,120 B;
    # vLLM 0.13.0 "Model loading took 5.6473 GiB" = 6,063,742,203 B (the rope cache again).
    nvfp4 = _shipped("llama-3.1-8b-instruct-nvfp4.json")
    assert nvfp4 == 3_489_660_928 + 436_207_616 + 1_792 + 2_101_346_304 + 532_480
    assert abs(nvfp4 / 6_063_742_203 - 1) < 0.01


def _ct(weights: dict, acts: dict | None = None, **top) -> dict:
    group = {"targets": ["Linear"], "weights": weights, **({"input_activations": acts} if acts else {})}
    return {"quant_method": "compressed-tensors", "config_groups": {"group_0": group}, "ignore": ["lm_head"], **top}


def test_compressed_tensors_nvfp4_prices_as_modelopt_nvfp4() -> None:
    """llm-compressor's NVFP4 (format nvfp4-pack-quantized, strategy tensor_group, group 16): weight_packed 4 bits,
    an fp8 weight_scale per 16 inputs a row, an fp32 weight_global_scale, and with quantized activations (dynamic
    "local") an fp32 input_global_scale: per 64x64 Linear 2,048 + 64 x 4 + 4 + 4 B, what ModelOpt's NVFP4 stores."""
    nvfp4 = {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "tensor_group", "group_size": 16}
    acts = {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16, "dynamic": "local"}
    g = _groups(_ct(nvfp4, acts, format="nvfp4-pack-quantized"))
    assert g["attention"] == 2 * 4 * (2048 + 64 * 4 + 8)
    assert g["mlp"] == 2 * (2 * (4096 + 128 * 4 + 8) + (4096 + 64 * 8 + 8))
    # weight-only NVFP4 (NVFP4A16): no input scale
    assert _groups(_ct(nvfp4, format="nvfp4-pack-quantized"))["attention"] == 2 * 4 * (2048 + 64 * 4 + 4)


def test_compressed_tensors_args_its_validator_refuses_are_refused(tmp_path, cli) -> None:
    """compressed-tensors' QuantizationArgs refuses a group strategy without group_size, a block strategy without
    block_structure and a group_size under another strategy; a mixed scheme (two config_groups) is well formed but
    not modelled: priced at torch_dtype with one warning, as an unmodelled method is."""
    import json

    path = tmp_path / "config.json"
    for weights, field in (({"num_bits": 4, "strategy": "group"}, "weights.group_size"),
                           ({"num_bits": 8, "type": "float", "strategy": "block"}, "weights.block_structure"),
                           ({"num_bits": 8, "strategy": "channel", "group_size": 128}, "weights.group_size")):
        path.write_text(json.dumps({**BASE, "quantization_config": _ct(weights)}))
        r = cli("params", str(path))
        assert r.code == 2 and field in r.err, r.err
    mixed = _ct({"num_bits": 4, "strategy": "group", "group_size": 128})
    mixed["config_groups"]["group_1"] = {"targets": ["re:.*mlp.*"], "weights": {"num_bits": 8, "strategy": "channel"}}
    path.write_text(json.dumps({**BASE, "quantization_config": mixed}))
    r = cli("memory", str(path), "--mode", "infer")
    assert r.code == 0 and "2 config_groups" in r.err and "bf16 (torch_dtype bfloat16)" in r.err, r.err


def test_mxfp4_converts_the_routed_experts_alone() -> None:
    """A quantization_config of {"quant_method": "mxfp4"} and nothing to exclude: transformers' Mxfp4HfQuantizer
    replaces the experts module and vLLM's Mxfp4Config leaves every other Linear unquantized, so a dense block stays
    at bf16: 4 x 64 x 64 x 2 B of attention a layer (it was priced at 4.25 bits)."""
    g = _groups({"quant_method": "mxfp4"})
    assert g["attention"] == 2 * 4 * 64 * 64 * 2
    assert g["mlp"] == 2 * 3 * 64 * 128 * 2
