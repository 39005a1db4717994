"""HuggingFace ``config.json`` -> our model mapping -> ModelSpec, one small mapper per family.

Each family module mirrors the fields its ``modeling_*.py`` in transformers reads, with the defaults of
its ``configuration_*.py``. No network access: the file is read from disk by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from calc.errors import LLMCalcError
from calc.sources.hf.afmoe import MAPPERS as AFMOE
from calc.sources.hf.apertus import MAPPERS as APERTUS
from calc.sources.hf.arcee import MAPPERS as ARCEE
from calc.sources.hf.classic import MAPPERS as CLASSIC
from calc.sources.hf.cohere import MAPPERS as COHERE
from calc.sources.hf.config import HFConfig, Mapping
from calc.sources.hf.deepseek import MAPPERS as DEEPSEEK
from calc.sources.hf.ernie import MAPPERS as ERNIE
from calc.sources.hf.exaone import MAPPERS as EXAONE
from calc.sources.hf.gemma import MAPPERS as GEMMA
from calc.sources.hf.glm import MAPPERS as GLM
from calc.sources.hf.gpt_oss import MAPPERS as GPT_OSS
from calc.sources.hf.granite_hybrid import MAPPERS as GRANITE_HYBRID
from calc.sources.hf.kimi_linear import MAPPERS as KIMI_LINEAR
from calc.sources.hf.llama import MAPPERS as LLAMA
from calc.sources.hf.llama4 import MAPPERS as LLAMA4
from calc.sources.hf.longcat import MAPPERS as LONGCAT
from calc.sources.hf.minimax import MAPPERS as MINIMAX
from calc.sources.hf.minimax_m2 import MAPPERS as MINIMAX_M2
from calc.sources.hf.nemotron import MAPPERS as NEMOTRON
from calc.sources.hf.olmo import MAPPERS as OLMO
from calc.sources.hf.phi import MAPPERS as PHI
from calc.sources.hf.quant import quantization
from calc.sources.hf.qwen import MAPPERS as QWEN
from calc.sources.hf.ssm import MAPPERS as SSM
from calc.sources.hf.starcoder2 import MAPPERS as STARCODER2
from calc.sources.hf.vision import gemma3_vision_params, llama4_vision_params, mistral3_vision_params
from calc.sources.hf.zamba2 import MAPPERS as ZAMBA2
from calc.specs import ModelSpec, spec_from_mapping

MAPPERS: dict[str, Callable[[HFConfig], Mapping]] = {
    **LLAMA, **QWEN, **GEMMA, **PHI, **DEEPSEEK, **GLM, **GPT_OSS, **LLAMA4, **OLMO, **STARCODER2, **COHERE, **EXAONE, **CLASSIC,
    **SSM, **NEMOTRON, **GRANITE_HYBRID, **ERNIE, **APERTUS, **MINIMAX, **MINIMAX_M2, **LONGCAT, **ARCEE, **AFMOE,
    **KIMI_LINEAR, **ZAMBA2,
}
# Multimodal wrappers whose language model sits in text_config (we size the language model only).
_TEXT_CONFIG = {"llama4": "llama4_text", "gemma3": "gemma3_text", "mistral3": "mistral"}
_VISION = {"gemma3": gemma3_vision_params, "llama4": llama4_vision_params, "mistral3": mistral3_vision_params}


# Fields whose family default changes a tensor shape: `llmcalc import` refuses to write a YAML that rests on
# a family *constant* for one of them (Qwen3's head_dim 128 is one checkpoint's shape; the config must say
# it), where loading a config for a query accepts transformers' default as transformers itself would. A
# default derived from the config's own fields by the architecture's rule (Falcon's ffn_hidden_size =
# 4 * hidden_size, GPT-2's n_inner) is the shape, not a guess: both paths accept it. The context length
# (max_position_embeddings) sizes no tensor: its default is taken and stated in the description, as every
# default is (Falcon's configs never give it).
SHAPE_FIELDS = frozenset({
    "head_dim", "num_key_value_heads", "intermediate_size", "n_inner", "ffn_hidden_size", "num_experts", "num_local_experts",
    "num_experts_per_tok", "experts_per_token", "moe_intermediate_size", "n_shared_experts", "vocab_size",
    "shared_expert_intermediate_size", "sliding_window", "sliding_window_pattern", "first_k_dense_replace",
    "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts",
    "zero_expert_num", "expert_ffn_hidden_size", "moe_topk", "num_shared_experts", "num_dense_layers", "num_layers",
    "hidden_size", "num_attention_heads",
})


# transformers class suffixes whose output is the language-model head over the vocabulary (or the bare decoder):
# what llmcalc counts. A task head (sequence / token classification, question answering, a reward score) replaces
# the LM head with a few columns and is not modelled.
_LM_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "Model")


def _check_head(data: dict[str, Any], where: str, field: str) -> None:
    """Refuse a config whose ``architectures`` names a task head, not the LM head (e.g. LlamaForSequenceClassification:
    its ``score`` head of num_labels x hidden replaces lm_head; counting the LM head would be silently wrong)."""
    names = data.get("architectures")
    if not isinstance(names, list) or not names or not isinstance(names[0], str):
        return
    if not names[0].endswith(_LM_HEADS):
        raise LLMCalcError(field, f"{where}: architectures {names[0]!r} puts a task head in place of the language-model "
                                  "head, which llmcalc does not model; give the causal-LM config (…ForCausalLM)")


def hf_mapping(data: dict[str, Any], where: str = "config.json", field: str = "MODEL", strict: bool = False) -> Mapping:
    """Our spec mapping (the catalog YAML's fields) for a parsed config.json; ``strict`` refuses a
    shape taken from a family default instead of the config."""
    model_type = data.get("model_type")
    _check_head(data, where, field)
    # code shipped in the repo (auto_map): the engines load it only with --trust-remote-code (harmless where unneeded)
    remote = isinstance(data.get("auto_map"), dict) or None
    note, wrapper = "", None
    if isinstance(model_type, str) and model_type in _TEXT_CONFIG and isinstance(data.get("text_config"), dict):
        text, wrapper = data["text_config"], data
        inner = {"quantization_config": data.get("quantization_config"), "torch_dtype": data.get("torch_dtype"), **text}
        note = f"; language model of {model_type} (text_config)" + (
            ", vision tower counted (never active for text)" if model_type in _VISION else ", vision tower not counted")
        model_type, data = text.get("model_type", _TEXT_CONFIG[model_type]), {**inner, "_name_or_path": data.get("_name_or_path")}
    if not isinstance(model_type, str) or model_type not in MAPPERS:
        shown = repr(model_type) if len(repr(model_type)) <= 80 else repr(model_type)[:80] + "..."
        supported = ", ".join(sorted(k for k in MAPPERS if k.islower()))
        raise LLMCalcError(field, f"{where}: unsupported model_type {shown}; supported: {supported}")
    c = HFConfig(data, where, field)
    shipped = quantization(c)
    fields = {**MAPPERS[model_type](c), **shipped}
    if wrapper is not None and wrapper.get("model_type") in _VISION:
        fields["vision_params"] = _VISION[wrapper["model_type"]](wrapper, fields["hidden_size"], where, field)
    guessed = sorted(k for k in c.defaulted if k in SHAPE_FIELDS)
    if strict and guessed:
        shown = ", ".join(f"{k} (default {c.defaulted[k]!r})" for k in guessed)
        raise LLMCalcError(field, f"{where}: does not give {shown}; add it to the config instead of relying on a default")
    name = data.get("_name_or_path") or data.get("name") or model_type
    used = ", ".join([f"{k}={v!r}" for k, v in sorted(c.defaulted.items()) if not isinstance(v, list | dict)]
                     + [f"{k}={v}" for k, v in sorted(c.derived.items())])
    description = f"imported from {where} ({model_type}){note}" + (f"; transformers defaults used: {used}" if used else "")
    description = description[:1000]
    fields = {"name": name[:128] if isinstance(name, str) else model_type, "description": description, **fields,
              "trust_remote_code": remote}
    return {k: v for k, v in fields.items() if v is not None}


def model_from_hf_config(data: dict[str, Any], where: str = "config.json", field: str = "MODEL") -> ModelSpec:
    """Build a ModelSpec from a parsed HuggingFace config.json.

    >>> model_from_hf_config({"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024,
    ...                       "n_embd": 768, "n_layer": 12, "n_head": 12}).num_layers
    12
    """
    return spec_from_mapping(ModelSpec, hf_mapping(data, where, field), where, field)
