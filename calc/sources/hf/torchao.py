"""torchao ``quantization_config`` (transformers TorchAoConfig) -> QuantSpec fields: how each torchao
tensor subclass stores one Linear weight.

transformers writes ``quant_type`` in two forms (utils/quantization_config.py, TorchAoConfig):
- a string with ``quant_type_kwargs`` (transformers < 4.5x, torchao "version 1" AffineQuantizedTensor):
  "int4_weight_only", "int8_weight_only", "int8_dynamic_activation_int8_weight", "float8_weight_only",
  "float8_dynamic_activation_float8_weight";
- ``{"default": {"_type": "Int4WeightOnlyConfig", "_version": 2, "_data": {...}}}`` (torchao
  core/config.py config_to_dict), the config class and its dataclass fields, enums as
  ``{"_type": "Int4PackingFormat", "_data": "PLAIN"}`` and granularities as ``{"_type": "PerRow", ...}``.

Storage per weight matrix of n_out rows and n_in inputs (pytorch/ao torchao/quantization/quant_api.py and
quantize_/workflows/*; version 1: torchao/dtypes/affine_quantized_tensor.py and uintx/tensor_core_tiled_layout.py):
- Int4WeightOnlyConfig v2, int4_packing_format "plain" (Int4Tensor) or "preshuffled": qdata (N, K/2) uint8,
  scale and zero_point (K/G, N) each in the weight's dtype: 4 bits + 2 x 2 B per group.
  "plain_int32" (Int4PlainInt32Tensor): the zero point is int8 (4 bits + 2 + 1 B per group).
  "tile_packed_to_4d" (Int4TilePackedTo4dTensor) and version 1 (TensorCoreTiledLayout): the weight is padded
  to out a multiple of ntile (8) and in a multiple of 1024 (find_multiple in from_hp / pre_process), then
  int32 tiles (4 bits each) and scale_and_zero (K/G, N, 2) in bf16. A weight whose K is not a multiple
  of G is skipped (left unquantized), in both versions.
- Int8WeightOnlyConfig / Int8DynamicActivationInt8WeightConfig v2 (Int8Tensor): int8 qdata, fp32 scale
  and int8 zero point per row (PerRow, default), per tensor or per group. Version 1: scale in the weight's
  dtype and an int64 zero point (zero_point_dtype = torch.int64) per row (or per group_size).
- Float8WeightOnlyConfig (PerRow default) / Float8DynamicActivationFloat8WeightConfig (PerTensor default,
  float8/inference.py _normalize_granularity; a [activation, weight] pair names the weight's second):
  Float8Tensor fp8 qdata and fp32 scale per row or per tensor.
- IntxWeightOnlyConfig / Int8DynamicActivationIntxWeightConfig (IntxUnpackedToInt8Tensor): int8 per
  weight whatever the target bits, a scale in the weight's dtype (or scale_dtype) and an int8 zero point
  per group (PerGroup) or per row (PerAxis(0), default).
"""

from __future__ import annotations

from typing import Any

from calc.sources.hf.config import HFConfig

_FIELD = "quantization_config.quant_type"
# The string forms, as the torchao version-1 config classes they named.
_LEGACY = {"int4_weight_only": "Int4WeightOnlyConfig", "int8_weight_only": "Int8WeightOnlyConfig",
           "int8_dynamic_activation_int8_weight": "Int8DynamicActivationInt8WeightConfig",
           "float8_weight_only": "Float8WeightOnlyConfig",
           "float8_dynamic_activation_float8_weight": "Float8DynamicActivationFloat8WeightConfig"}
_TORCH_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}  # scale_dtype, serialized {"_type": "torch.dtype", "_data": ...}
MODELLED = (*_LEGACY.values(), "IntxWeightOnlyConfig", "Int8DynamicActivationIntxWeightConfig")


class Unmodelled(Exception):
    """A well-formed torchao scheme whose storage llmcalc does not model (the caller warns, prices at torch_dtype)."""


def _value(v: Any) -> Any:
    """An enum or class serialized as {"_type", "_data"}: its _data (enums) or the mapping itself."""
    if isinstance(v, dict) and "_data" in v and not isinstance(v["_data"], dict):
        return v["_data"]
    return v


def _granularity(g: Any, default: str) -> tuple[str, int | None]:
    """A serialized granularity -> (strategy, group size): PerTensor, PerRow / PerAxis(0), PerGroup(G)."""
    if isinstance(g, list) and len(g) == 2:  # [activation, weight]
        g = g[1]
    kind = g.get("_type") if isinstance(g, dict) else default
    data = g.get("_data") if isinstance(g, dict) and isinstance(g.get("_data"), dict) else {}
    if kind == "PerGroup":
        return "group", data.get("group_size")
    if kind in ("PerRow", "PerAxis"):
        return "channel", None
    if kind == "PerTensor":
        return "tensor", None
    raise Unmodelled(f"granularity {kind!r}")


def torchao(c: HFConfig, q: dict[str, Any], act_bytes: int) -> dict[str, Any]:
    """QuantSpec fields of a TorchAoConfig (see the module docstring for each layout); ``act_bytes`` is the
    size of the checkpoint dtype (the scale dtype of schemes that keep the weight's dtype).

    Raises Unmodelled for a well-formed scheme outside those; a missing or mistyped quant_type, or a
    dict without its "default" config, is refused naming the field."""
    qt = q.get("quant_type")
    if isinstance(qt, str):
        name, data, version = _LEGACY.get(qt), q.get("quant_type_kwargs") or {}, 1
        if name is None:
            raise Unmodelled(f"quant_type {qt!r}")
    elif isinstance(qt, dict) and isinstance(qt.get("default"), dict) and isinstance(qt["default"].get("_type"), str):
        entry = qt["default"]
        name, data = entry["_type"], entry.get("_data") or {}
        version = data.get("version", entry.get("_version", 1)) if isinstance(data, dict) else 1
    else:
        raise c.fail(_FIELD, 'must be a torchao scheme name ("int4_weight_only") or {"default": {"_type": ..., '
                     f'"_data": ...}}}}, got {qt!r}'[:200])
    if not isinstance(data, dict):
        raise c.fail(f"{_FIELD}._data", f"must be a mapping of the config's fields, got {data!r}"[:200])
    if isinstance(qt, dict) and len(qt) > 1:
        raise Unmodelled(f"per-module configs {sorted(qt)[:3]}")
    spec = {"method": "torchao", "scheme": name, "include_embeddings": q.get("include_input_output_embeddings") is True}
    if name == "Int4WeightOnlyConfig":
        return spec | _int4(c, data, version)
    if name in ("Int8WeightOnlyConfig", "Int8DynamicActivationInt8WeightConfig"):
        if version == 1:
            group = data.get("group_size")
            strategy = "group" if group else "channel"
            return spec | {"bits": 8, "strategy": strategy, "group_size": group, "scale_bytes": act_bytes, "zero_point_bytes": 8}
        strategy, group = _granularity(data.get("granularity"), "PerRow")
        return spec | {"bits": 8, "strategy": strategy, "group_size": group, "scale_bytes": 4, "zero_point_bytes": 1}
    if name in ("Float8WeightOnlyConfig", "Float8DynamicActivationFloat8WeightConfig"):
        default = "PerRow" if name == "Float8WeightOnlyConfig" else "PerTensor"
        strategy, group = _granularity(data.get("granularity"), default)
        return spec | {"bits": 8, "strategy": strategy, "group_size": group, "scale_bytes": 4}
    if name in ("IntxWeightOnlyConfig", "Int8DynamicActivationIntxWeightConfig"):
        fmt = str(_value(data.get("intx_packing_format", "unpacked_to_int8"))).lower()
        if fmt != "unpacked_to_int8":
            raise Unmodelled(f"intx_packing_format {fmt!r}")
        key = "weight_granularity" if "weight_granularity" in data else "granularity"
        strategy, group = _granularity(data.get(key), "PerAxis")
        scale = _TORCH_BYTES.get(str(_value(data.get("scale_dtype"))).removeprefix("torch."), act_bytes)
        return spec | {"bits": 8, "strategy": strategy, "group_size": group, "scale_bytes": scale, "zero_point_bytes": 1}
    raise Unmodelled(f"scheme {name!r}")


def _int4(c: HFConfig, data: dict[str, Any], version: Any) -> dict[str, Any]:
    """Int4WeightOnlyConfig: 4 bits per weight and 4 B of scale + zero point per group of G inputs per row;
    tile packing pads the matrix; plain_int32 keeps an int8 zero point."""
    group = data.get("group_size", 128)
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise c.fail(f"{_FIELD}._data.group_size", f"must be a positive integer, got {group!r}"[:200])
    out = {"bits": 4, "strategy": "group", "group_size": group, "scale_bytes": 2, "zero_point_bytes": 2}
    if version == 1:
        return out | {"pad_to": (8, 1024)}
    fmt = str(_value(data.get("int4_packing_format", "plain"))).lower()
    if fmt == "tile_packed_to_4d":
        ntile = data.get("int4_tile_packed_ntile", 8)
        return out | {"pad_to": (ntile if ntile in (8, 16) else 8, 1024)}
    if fmt == "plain_int32":
        return out | {"zero_point_bytes": 1}
    if fmt in ("plain", "preshuffled"):
        return out
    raise Unmodelled(f"int4_packing_format {fmt!r}")
