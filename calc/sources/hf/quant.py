"""``quantization_config`` -> QuantSpec fields: which method, bits, group / block size, zero points,
and the modules left at the checkpoint dtype. Field names follow transformers' quantizer configs
(utils/quantization_config.py: FineGrainedFP8Config, Mxfp4Config, GPTQConfig, AwqConfig,
BitsAndBytesConfig, TorchAoConfig). A method outside these is priced at torch_dtype with one warning line."""

from __future__ import annotations

from typing import Any

from calc.sources.hf.config import HFConfig
from calc.sources.hf.torchao import Unmodelled, torchao

_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
MODELLED = ("fp8", "mxfp4", "gptq", "awq", "bitsandbytes", "fbgemm_fp8", "compressed-tensors", "modelopt", "torchao")
_FIELD = "quantization_config"


def quantization(c: HFConfig) -> dict[str, Any]:
    """Spec fields for the checkpoint as shipped; {} when the config has no quantization_config.

    A quantization_config that is not a mapping, names no method (quant_method missing or not a string),
    or has a malformed part is refused naming the field. A well-formed method or scheme llmcalc does not
    model (hqq, eetq, quark, aqlm, a ModelOpt W4A8 algorithm, a torchao scheme outside calc.sources.hf.torchao)
    is priced at torch_dtype with one warning line naming it: the answer goes on, never silently (gpt-oss-20b's
    MXFP4 weights are 13.8 GB, 41.8 GB at bf16, so the figure is an upper bound for a low-bit format)."""
    q = c.get(_FIELD, default=None)
    legacy = c.data.get("compression_config")
    if q is None and isinstance(legacy, dict):
        # compressed-tensors checkpoints written by early llm-compressor / sparseml keep the scheme under
        # compression_config; vLLM falls back to that key when quantization_config is absent (ModelConfig
        # _parse_quant_hf_config in vllm/config)
        q = {"quant_method": "compressed-tensors", **legacy}
    if q is None:  # unquantized: the checkpoint's 16-bit dtype as its config gives it (an fp16 model runs fp16)
        given = _DTYPES.get(str(c.data.get("torch_dtype") or c.data.get("dtype") or ""))
        return {"checkpoint_dtype": given} if given in ("fp16", "bf16") else {}
    if not isinstance(q, dict):
        raise c.fail(_FIELD, f"must be a mapping with a quant_method, got {type(q).__name__}")
    method = q.get("quant_method")
    if not isinstance(method, str) or not method.strip():
        shown = repr(method) if len(repr(method)) <= 40 else repr(method)[:40] + "..."
        raise c.fail(f"{_FIELD}.quant_method", f"must name the method as a string ({', '.join(MODELLED)}, ...), got {shown}")
    method = method.lower()
    dtype = _DTYPES.get(str(c.data.get("torch_dtype") or c.data.get("dtype") or "bfloat16"), "bf16")
    if method not in MODELLED:
        return _unmodelled(c, f"quant_method {method!r}", dtype)
    skip = (q.get("modules_to_not_convert") or q.get("llm_int8_skip_modules") or q.get("ignored_layers") or q.get("ignore")
            or q.get("exclude_modules") or [])
    if not isinstance(skip, list):
        raise c.fail(f"{_FIELD}.modules_to_not_convert", f"must be a list of module names, got {skip!r}"[:200])
    try:
        spec = {"modules_to_not_convert": skip, **_method_fields(c, q, method, _BYTES[dtype])}
    except Unmodelled as exc:
        return _unmodelled(c, f"{method} {exc}", dtype)
    return {"quantization": spec, "checkpoint_dtype": dtype}


def _unmodelled(c: HFConfig, what: str, dtype: str) -> dict[str, Any]:
    """Warn once, naming the format and what was assumed, and price every weight at the checkpoint dtype."""
    from calc.sanity import warn

    given = c.data.get("torch_dtype") or c.data.get("dtype")
    source = f"torch_dtype {given}" if given else "bf16, as the config gives no torch_dtype"
    warn(_FIELD, f"{c.where}: {what[:80]} is not a format llmcalc models; weights priced at {dtype} ({source}), "
                 "an upper bound for a low-bit checkpoint")
    return {"checkpoint_dtype": dtype}


def _method_fields(c: HFConfig, q: dict[str, Any], method: str, act_bytes: int) -> dict[str, Any]:
    """QuantSpec fields of one modelled method (raises Unmodelled for a well-formed variant it does not model)."""
    if method == "fbgemm_fp8":
        return {"method": "fbgemm_fp8", "bits": 8}
    if method == "compressed-tensors":
        return _compressed_tensors(c, q)
    if method == "torchao":
        return torchao(c, q, act_bytes)
    if method == "modelopt":
        algo = str(q.get("quant_algo", "")).upper()
        if algo not in ("FP8", "NVFP4"):
            raise Unmodelled(f"quant_algo {algo!r}")
        return {"method": "modelopt_fp8", "bits": 8} if algo == "FP8" else \
            {"method": "modelopt_nvfp4", "bits": 4, "group_size": q.get("group_size", 16)}
    if method == "fp8":
        return {"method": "fp8", "bits": 8, "block_size": _block(c, q.get("weight_block_size"))}
    if method == "mxfp4":  # a checkpoint's MXFP4 is its routed experts' (calc.memory.weights._quantized_shape)
        return {"method": "mxfp4", "bits": 4, "group_size": 32, "experts_only": True}
    if method in ("gptq", "awq"):
        bits = q.get("bits", q.get("w_bit", 4))
        # the kernels each method ships: GPTQ 2/3/4/8-bit (AutoGPTQ / GPTQModel QuantLinear), AWQ 4-bit (AutoAWQ's
        # GEMM / GEMV kernels; its w_bit is 4 only)
        allowed = (2, 3, 4, 8) if method == "gptq" else (4,)
        if bits not in allowed:
            raise c.fail(f"{_FIELD}.bits", f"{method} ships {'/'.join(map(str, allowed))}-bit kernels; got {bits!r}")
        if q.get("lm_head") is True:  # GPTQModel / AutoRound quantize the output head too: not priced here
            raise c.fail(f"{_FIELD}.lm_head", "a quantized lm_head is not modelled (the head is priced at the checkpoint "
                                              "dtype); give the config without it")
        group = q.get("group_size", q.get("q_group_size", 128))
        if group not in (None, -1) and (isinstance(group, bool) or not isinstance(group, int) or group < 1):
            raise c.fail(f"{_FIELD}.{'group_size' if 'group_size' in q else 'q_group_size'}",
                         f"must be a positive whole number of inputs per scale (or -1: one per row), got {group!r}")
        zeros = True if method == "gptq" else bool(q.get("zero_point", True))
        return {"method": method, "bits": bits, "group_size": None if group in (None, -1) else group, "zero_points": zeros,
                "linear_bias": method == "gptq" and _written_by_autogptq(q)}
    if q.get("load_in_4bit") is True:  # bitsandbytes
        kind = q.get("bnb_4bit_quant_type", "fp4")
        if kind not in ("nf4", "fp4"):  # bitsandbytes' two 4-bit types (BitsAndBytesConfig.post_init refuses others)
            raise c.fail(f"{_FIELD}.bnb_4bit_quant_type", f"{kind!r} is not nf4 or fp4")
        return {"method": f"bnb_{kind}", "bits": 4, "group_size": 64,
                "double_quant": bool(q.get("bnb_4bit_use_double_quant", False))}
    if q.get("load_in_8bit") is True:
        return {"method": "bnb_int8", "bits": 8}
    raise c.fail(f"{_FIELD}.load_in_4bit", "bitsandbytes sets neither load_in_4bit nor load_in_8bit to true")


def _written_by_autogptq(q: dict[str, Any]) -> bool:
    """A GPTQ quantization_config written by AutoGPTQ: its BaseQuantizeConfig.to_dict (auto_gptq/modeling/_base.py
    at v0.7.1, the last release) is the one writer with ``model_file_base_name``; GPTQModel writes a ``meta``
    block naming itself. AutoGPTQ up to v0.7.1 builds every QuantLinear with bias=True (modeling/_utils.py
    make_quant; made conditional on the layer's own bias only after the release, commit 82070a1, 2024-03-25),
    so its checkpoints carry a zero bias of out_features per quantized Linear."""
    meta = q.get("meta")
    by_gptqmodel = isinstance(meta, dict) and "gptqmodel" in str(meta.get("quantizer", "")).lower()
    return "model_file_base_name" in q and not by_gptqmodel


def _block(c: HFConfig, block: Any) -> tuple[Any, Any] | None:
    """fp8 weight_block_size: [out, in] (DeepSeek-V3 [128, 128]), or null for per-tensor scales."""
    if block is None:
        return None
    if not isinstance(block, list) or len(block) != 2:
        raise c.fail(f"{_FIELD}.weight_block_size", f"must be a list [out, in] of two integers, got {block!r}"[:200])
    return (block[0], block[1])


def _compressed_tensors(c: HFConfig, q: dict[str, Any]) -> dict[str, Any]:
    """compressed-tensors (llm-compressor): the one config group that targets Linear layers, its weights'
    num_bits / strategy / group_size / block_structure / symmetric / actorder, the format (pack-quantized stores
    int32 words and a weight_shape), and a static input_activations scale. Mixed groups are refused."""
    groups = q.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise c.fail(f"{_FIELD}.config_groups", "must hold the quantization group(s)")
    if len(groups) != 1:
        raise Unmodelled(f"compressed-tensors with {len(groups)} config_groups (a mixed scheme)")
    group = next(iter(groups.values()))
    w = group.get("weights") if isinstance(group, dict) else None
    if not isinstance(w, dict) or not isinstance(w.get("num_bits"), int):
        raise c.fail(f"{_FIELD}.config_groups.weights", "must give num_bits")
    if not 2 <= w["num_bits"] <= 8:  # QuantSpec's range: 2- to 8-bit weights
        raise c.fail(f"{_FIELD}.config_groups.weights.num_bits", f"must be 2 to 8 bits, got {w['num_bits']}")
    strategy = w.get("strategy", "tensor")
    where = f"{_FIELD}.config_groups.weights"
    if strategy in ("token", "attn_head"):  # compressed-tensors strategies, not for a Linear weight the engine prices
        raise Unmodelled(f"compressed-tensors weight strategy {strategy!r}")
    if strategy not in ("tensor", "channel", "group", "block", "tensor_group"):
        raise c.fail(f"{where}.strategy", f"{strategy!r} is not tensor, channel, group, block or tensor_group")
    # compressed-tensors' own QuantizationArgs validator refuses these (quant_args.py validate_model_after)
    if strategy in ("group", "tensor_group") and w.get("group_size") is None:
        raise c.fail(f"{where}.group_size", f"strategy {strategy} requires a positive group_size")
    if strategy not in ("group", "tensor_group") and w.get("group_size") is not None:
        raise c.fail(f"{where}.group_size", f"is set but strategy is {strategy!r}: a group size requires strategy group")
    if strategy == "block" and w.get("block_structure") is None:
        raise c.fail(f"{where}.block_structure", "strategy block requires a block_structure [out, in]")
    acts = group.get("input_activations")
    block = w.get("block_structure")
    # actorder true / "group" / "dynamic" is GROUP (quant_args.py validate_actorder and its aliases); only GROUP
    # registers a weight_g_idx (lifecycle/initialize.py), which pack_quantized.py saves beside the packed weight
    actorder = w.get("actorder")
    kind = w.get("type", "int")  # QuantizationArgs.type: "int" or "float" (float-quantized: FP8 E4M3 at 8 bits)
    if kind not in ("int", "float"):
        raise c.fail(f"{_FIELD}.config_groups.weights.type", f"{kind!r} is not int or float")
    if strategy == "tensor_group" and (kind, w["num_bits"]) != ("float", 4):
        raise Unmodelled(f"compressed-tensors tensor_group at {kind}{w['num_bits']} (NVFP4 is float 4)")
    return {"method": "compressed_tensors", "scheme": f"{kind}{w['num_bits']}", "bits": w["num_bits"], "strategy": strategy,
            "group_size": w.get("group_size") if strategy in ("group", "tensor_group") else None,
            "block_size": _block(c, block) if strategy == "block" else None,
            "zero_points": w.get("symmetric") is False, "packed": q.get("format") == "pack-quantized",
            # a static scale (dynamic false), or NVFP4's global input scale (dynamic "local": per-group scales at run time)
            "input_scale": isinstance(acts, dict) and (acts.get("dynamic") is False or acts.get("dynamic") == "local"),
            "g_idx": strategy == "group" and (actorder is True or str(actorder).lower() in ("group", "dynamic"))}
