"""``quantization_config`` -> QuantSpec fields: which method, bits, group / block size, zero points,
and the modules left at the checkpoint dtype. Field names follow transformers' quantizer configs
(utils/quantization_config.py: FineGrainedFP8Config, Mxfp4Config, GPTQConfig, AwqConfig,
BitsAndBytesConfig)."""

from __future__ import annotations

from typing import Any

from calc.sources.hf.config import HFConfig

_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def quantization(c: HFConfig) -> dict[str, Any]:
    """Spec fields for the checkpoint as shipped; {} when the config has no (modelled) quantization."""
    q = c.get("quantization_config", default=None)
    if not isinstance(q, dict):
        return {}
    method = str(q.get("quant_method", "")).lower()
    skip = q.get("modules_to_not_convert") or q.get("llm_int8_skip_modules") or q.get("ignored_layers") or []
    if not isinstance(skip, list):
        raise c.fail("quantization_config.modules_to_not_convert", f"must be a list of module names, got {skip!r}"[:200])
    spec: dict[str, Any] = {"modules_to_not_convert": skip}
    if method == "fp8":
        block = q.get("weight_block_size")
        spec |= {"method": "fp8", "bits": 8, "block_size": tuple(block) if block else None}
    elif method == "mxfp4":
        spec |= {"method": "mxfp4", "bits": 4, "group_size": 32}
    elif method in ("gptq", "awq"):
        bits = q.get("bits", q.get("w_bit", 4))
        group = q.get("group_size", q.get("q_group_size", 128))
        zeros = True if method == "gptq" else bool(q.get("zero_point", True))
        spec |= {"method": method, "bits": bits, "group_size": None if group in (None, -1) else group, "zero_points": zeros}
    elif method == "bitsandbytes":
        if q.get("load_in_4bit"):
            kind = q.get("bnb_4bit_quant_type", "fp4")
            spec |= {"method": f"bnb_{kind}", "bits": 4, "group_size": 64,
                     "double_quant": bool(q.get("bnb_4bit_use_double_quant", False))}
        elif q.get("load_in_8bit"):
            spec |= {"method": "bnb_int8", "bits": 8}
        else:
            return {}
    else:
        return {}
    dtype = _DTYPES.get(str(c.data.get("torch_dtype") or c.data.get("dtype") or "bfloat16"), "bf16")
    return {"quantization": spec, "checkpoint_dtype": dtype}
