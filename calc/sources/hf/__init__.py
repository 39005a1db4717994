"""HuggingFace ``config.json`` -> our model mapping -> ModelSpec, one small mapper per family.

Each family module mirrors the fields its ``modeling_*.py`` in transformers reads, with the defaults of
its ``configuration_*.py``. No network access: the file is read from disk by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from calc.errors import LLMCalcError
from calc.sources.hf import classic, cohere, deepseek, gemma, glm, gpt_oss, llama, llama4, olmo, phi, qwen, starcoder2
from calc.sources.hf.config import HFConfig, Mapping
from calc.sources.hf.quant import quantization
from calc.specs import ModelSpec, spec_from_mapping

MAPPERS: dict[str, Callable[[HFConfig], Mapping]] = {
    **llama.MAPPERS, **qwen.MAPPERS, **gemma.MAPPERS, **phi.MAPPERS, **deepseek.MAPPERS, **glm.MAPPERS,
    **gpt_oss.MAPPERS, **llama4.MAPPERS, **olmo.MAPPERS, **starcoder2.MAPPERS, **cohere.MAPPERS, **classic.MAPPERS,
}
# Multimodal wrappers whose language model sits in text_config (we size the language model only).
_TEXT_CONFIG = {"llama4": "llama4_text", "gemma3": "gemma3_text", "mistral3": "mistral"}


def hf_mapping(data: dict[str, Any], where: str = "config.json", field: str = "MODEL") -> Mapping:
    """Our spec mapping (the catalog YAML's fields) for a parsed config.json."""
    model_type = data.get("model_type")
    note = ""
    if model_type in _TEXT_CONFIG and isinstance(data.get("text_config"), dict):
        text = data["text_config"]
        inner = {"quantization_config": data.get("quantization_config"), "torch_dtype": data.get("torch_dtype"), **text}
        note = f"; language model of {model_type} (text_config), vision tower not counted"
        model_type, data = text.get("model_type", _TEXT_CONFIG[model_type]), {**inner, "_name_or_path": data.get("_name_or_path")}
    if model_type not in MAPPERS:
        supported = ", ".join(sorted(k for k in MAPPERS if k.islower()))
        raise LLMCalcError(field, f"{where}: unsupported model_type {model_type!r}; supported: {supported}")
    c = HFConfig(data, where, field)
    fields = {**MAPPERS[model_type](c), **quantization(c)}
    name = data.get("_name_or_path") or data.get("name") or model_type
    fields = {"name": str(name), "description": f"imported from {where} ({model_type}){note}", **fields}
    return {k: v for k, v in fields.items() if v is not None}


def model_from_hf_config(data: dict[str, Any], where: str = "config.json", field: str = "MODEL") -> ModelSpec:
    """Build a ModelSpec from a parsed HuggingFace config.json.

    >>> model_from_hf_config({"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024,
    ...                       "n_embd": 768, "n_layer": 12, "n_head": 12}).num_layers
    12
    """
    return spec_from_mapping(ModelSpec, hf_mapping(data, where, field), where, field)
