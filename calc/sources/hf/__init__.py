"""HuggingFace ``config.json`` -> ModelSpec, for the architectures whose modeling code we mirror.

Each mapper reads the fields that the family's ``modeling_*.py`` in transformers uses, with the
same defaults as its ``configuration_*.py``. No network access: the file is read from disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from calc.errors import LLMCalcError
from calc.specs import ModelSpec, spec_from_mapping

_REQUIRED = object()


class _Config:
    """Typed access to a config dict; a missing or wrong-typed field names itself."""

    def __init__(self, data: dict[str, Any], where: str, field: str) -> None:
        self.data, self.where, self.field = data, where, field

    def _fail(self, key: str, problem: str) -> LLMCalcError:
        return LLMCalcError(self.field, f"{self.where}: field '{key}' {problem}")

    def get(self, *keys: str, default: Any = _REQUIRED) -> Any:
        for key in keys:
            if key in self.data and self.data[key] is not None:
                return self.data[key]
        if default is _REQUIRED:
            raise self._fail(keys[0], "is missing")
        return default

    def int(self, *keys: str, default: Any = _REQUIRED) -> Any:
        value = self.get(*keys, default=default)
        if value is None or value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(keys[0], f"must be an integer, got {value!r}")
        return value

    def layers(self) -> int:
        """num_hidden_layers, bounded before any per-layer loop runs over it."""
        from calc.specs.bounds import LIMITS

        value = self.int("num_hidden_layers")
        if not 1 <= value <= LIMITS["num_layers"][1]:
            raise self._fail("num_hidden_layers", f"must be in 1..{LIMITS['num_layers'][1]}, got {value}")
        return value

    def divisor(self, key: str, default: int) -> int:
        """An integer used as a step or modulus (decoder_sparse_step, moe_layer_freq): >= 1."""
        value = self.int(key, default=default)
        if value < 1:
            raise self._fail(key, f"must be an integer >= 1, got {value!r}")
        return value

    def int_list(self, key: str) -> list[int]:
        value = self.get(key, default=[])
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self._fail(key, f"must be a list of layer indices, got {value!r}"[:200])
        return value

    def bool(self, *keys: str, default: Any = _REQUIRED) -> Any:
        value = self.get(*keys, default=default)
        if not isinstance(value, bool):
            raise self._fail(keys[0], f"must be true or false, got {value!r}")
        return value


def _llama_like(c: _Config, **family: Any) -> dict[str, Any]:
    """Llama, Mistral, Qwen2, Gemma, Phi-3: RMSNorm, RoPE, gated MLP, GQA, optional head_dim."""
    return {
        "num_layers": c.int("num_hidden_layers"),
        "hidden_size": c.int("hidden_size"),
        "num_heads": c.int("num_attention_heads"),
        "num_kv_heads": c.int("num_key_value_heads", default=None),
        "head_dim": c.int("head_dim", default=None),
        "intermediate_size": c.int("intermediate_size"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "tied_embeddings": c.bool("tie_word_embeddings", default=family.pop("tied_default", False)),
        "norm": "rmsnorm",
        "gated_mlp": True,
        "activation": c.get("hidden_act", "hidden_activation", default="silu"),
        **family,
    }


def _llama(c: _Config) -> dict[str, Any]:
    bias = c.bool("attention_bias", default=False)
    return _llama_like(c, qkv_bias=bias, out_bias=bias, mlp_bias=c.bool("mlp_bias", default=False))


def _mistral(c: _Config) -> dict[str, Any]:
    return _llama_like(c)


def _qwen2(c: _Config) -> dict[str, Any]:
    # modeling_qwen2: q/k/v_proj have bias=True, o_proj bias=False.
    return _llama_like(c, qkv_bias=True)


def _gemma(c: _Config) -> dict[str, Any]:
    return _llama_like(c, tied_default=True, head_dim=c.int("head_dim", default=256))


def _gemma2(c: _Config) -> dict[str, Any]:
    # Gemma 2 adds pre/post feed-forward norms: 4 RMSNorms per layer.
    return _llama_like(c, tied_default=True, head_dim=c.int("head_dim", default=256), norms_per_layer=4)


def _phi3(c: _Config) -> dict[str, Any]:
    return _llama_like(c)


def _mixtral(c: _Config) -> dict[str, Any]:
    spec = _llama_like(c)
    spec["moe"] = {
        "num_experts": c.int("num_local_experts", default=8),
        "experts_per_token": c.int("num_experts_per_tok", default=2),
        "expert_intermediate_size": spec["intermediate_size"],
    }
    return spec


def _qwen2_moe(c: _Config) -> dict[str, Any]:
    num_layers = c.layers()
    experts = c.int("num_experts", default=60)
    step = c.divisor("decoder_sparse_step", default=1)
    mlp_only = set(c.int_list("mlp_only_layers"))
    # modeling_qwen2_moe: layer i is sparse iff i not in mlp_only_layers and (i + 1) % step == 0.
    sparse = [i for i in range(num_layers) if i not in mlp_only and experts > 0 and (i + 1) % step == 0]
    shared = c.int("shared_expert_intermediate_size", default=0)
    spec = _llama_like(c, qkv_bias=True)
    spec["moe"] = {
        "num_experts": experts,
        "experts_per_token": c.int("num_experts_per_tok", default=4),
        "expert_intermediate_size": c.int("moe_intermediate_size"),
        "num_shared_experts": 1 if shared else 0,
        "shared_intermediate_size": shared,
        "shared_expert_gate": bool(shared),
        "num_dense_layers": num_layers - len(sparse),
    }
    return spec


def _deepseek(c: _Config, v3: bool) -> dict[str, Any]:
    num_layers = c.layers()
    first_dense = c.int("first_k_dense_replace", default=0)
    freq = c.divisor("moe_layer_freq", default=1)
    routed = c.int("n_routed_experts", default=None)
    moe_layers = [i for i in range(num_layers) if routed and i >= first_dense and i % freq == 0]
    shared = c.int("n_shared_experts", default=0) or 0
    expert_width = c.int("moe_intermediate_size")
    heads = c.int("num_attention_heads")
    spec: dict[str, Any] = {
        "num_layers": num_layers,
        "hidden_size": c.int("hidden_size"),
        "num_heads": heads,
        "num_kv_heads": heads,
        "head_dim": c.int("qk_nope_head_dim") + c.int("qk_rope_head_dim"),
        "intermediate_size": c.int("intermediate_size"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "tied_embeddings": c.bool("tie_word_embeddings", default=False),
        "norm": "rmsnorm",
        "gated_mlp": True,
        "activation": c.get("hidden_act", default="silu"),
        "qkv_bias": c.bool("attention_bias", default=False),
        "out_bias": c.bool("attention_bias", default=False),
        "mla": {
            "q_lora_rank": c.int("q_lora_rank", default=None),
            "kv_lora_rank": c.int("kv_lora_rank"),
            "qk_nope_head_dim": c.int("qk_nope_head_dim"),
            "qk_rope_head_dim": c.int("qk_rope_head_dim"),
            "v_head_dim": c.int("v_head_dim"),
        },
    }
    if moe_layers:
        spec["moe"] = {
            "num_experts": routed,
            "experts_per_token": c.int("num_experts_per_tok"),
            "expert_intermediate_size": expert_width,
            "num_shared_experts": shared,
            "shared_intermediate_size": shared * expert_width,
            # V3's noaux_tc routing keeps a per-expert bias (e_score_correction_bias).
            "router_bias": v3 and c.get("topk_method", default="noaux_tc") == "noaux_tc",
            "num_dense_layers": num_layers - len(moe_layers),
        }
    return spec


def _plain_layernorm(qkv_bias: bool, out_bias: bool, mlp_bias: bool) -> dict[str, Any]:
    """The GPT-2 lineage's shared traits: LayerNorm with bias, a plain (ungated) MLP, and biases
    on the attention and MLP projections as the family has them."""
    return {"norm": "layernorm", "qkv_bias": qkv_bias, "out_bias": out_bias, "mlp_bias": mlp_bias, "gated_mlp": False}


def _gpt2(c: _Config) -> dict[str, Any]:
    hidden = c.int("n_embd", "hidden_size")
    return {
        "num_layers": c.int("n_layer", "num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": c.int("n_head", "num_attention_heads"),
        "intermediate_size": c.int("n_inner", default=4 * hidden),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("n_positions", "max_position_embeddings"),
        "position_embedding": "learned",
        "tied_embeddings": c.bool("tie_word_embeddings", default=True),
        **_plain_layernorm(qkv_bias=True, out_bias=True, mlp_bias=True),
        "activation": c.get("activation_function", default="gelu_new"),
    }


def _gptj(c: _Config) -> dict[str, Any]:
    hidden = c.int("n_embd", "hidden_size")
    # modeling_gptj: q/k/v/out_proj without bias, fc_in/fc_out with bias, one ln_1 (parallel
    # block), lm_head with bias, untied.
    return {
        "num_layers": c.int("n_layer", "num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": c.int("n_head", "num_attention_heads"),
        "intermediate_size": c.int("n_inner", default=4 * hidden),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("n_positions", "max_position_embeddings", default=2048),
        "tied_embeddings": c.bool("tie_word_embeddings", default=False),
        **_plain_layernorm(qkv_bias=False, out_bias=False, mlp_bias=True),
        "norms_per_layer": 1,
        "lm_head_bias": True,
        "activation": c.get("activation_function", default="gelu_new"),
        "parallel_block": True,
    }


def _gpt_neox(c: _Config) -> dict[str, Any]:
    bias = c.bool("attention_bias", default=True)
    return {
        "num_layers": c.int("num_hidden_layers"),
        "hidden_size": c.int("hidden_size"),
        "num_heads": c.int("num_attention_heads"),
        "intermediate_size": c.int("intermediate_size"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "tied_embeddings": c.bool("tie_word_embeddings", default=False),
        **_plain_layernorm(qkv_bias=bias, out_bias=bias, mlp_bias=True),
        "norms_per_layer": 2,  # input_layernorm + post_attention_layernorm, even when parallel
        "activation": c.get("hidden_act", default="gelu"),
        "parallel_block": c.bool("use_parallel_residual", default=True),
    }


def _falcon(c: _Config) -> dict[str, Any]:
    hidden = c.int("hidden_size")
    heads = c.int("num_attention_heads", "n_head")
    new_arch = c.bool("new_decoder_architecture", default=False)
    parallel = c.bool("parallel_attn", default=True)
    if new_arch:
        kv_heads = c.int("num_kv_heads", "n_head_kv", default=heads)
    else:
        kv_heads = 1 if c.bool("multi_query", default=True) else heads
    bias = c.bool("bias", default=False)
    alibi = c.bool("alibi", default=False)
    return {
        "num_layers": c.int("num_hidden_layers", "n_layer"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "intermediate_size": c.int("ffn_hidden_size", default=4 * hidden),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "position_embedding": "alibi" if alibi else "rope",
        "tied_embeddings": c.bool("tie_word_embeddings", default=True),
        **_plain_layernorm(qkv_bias=bias, out_bias=bias, mlp_bias=bias),
        # new decoder: ln_attn + ln_mlp; old parallel: one input_layernorm; sequential: two.
        "norms_per_layer": 2 if new_arch or not parallel else 1,
        "activation": "gelu",
        "parallel_block": new_arch or parallel,
    }


def _bloom(c: _Config) -> dict[str, Any]:
    hidden = c.int("hidden_size", "n_embed")
    return {
        "num_layers": c.int("n_layer", "num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": c.int("n_head", "num_attention_heads"),
        "intermediate_size": 4 * hidden,
        "vocab_size": c.int("vocab_size"),
        "position_embedding": "alibi",
        "tied_embeddings": c.bool("tie_word_embeddings", default=True),
        **_plain_layernorm(qkv_bias=True, out_bias=True, mlp_bias=True),
        "embedding_norm": True,  # word_embeddings_layernorm
        "activation": "gelu",
    }


def _opt(c: _Config) -> dict[str, Any]:
    hidden = c.int("hidden_size")
    if c.int("word_embed_proj_dim", default=hidden) != hidden:
        raise LLMCalcError(
            c.field, f"{c.where}: field 'word_embed_proj_dim' differs from hidden_size (OPT-350m's "
            "project_in/out) and is not supported"
        )
    bias = c.bool("enable_bias", default=True)
    pre_norm = c.bool("do_layer_norm_before", default=True)
    return {
        "num_layers": c.int("num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": c.int("num_attention_heads"),
        "intermediate_size": c.int("ffn_dim"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "position_embedding": "learned",
        "position_offset": 2,  # OPTLearnedPositionalEmbedding adds 2 rows
        "tied_embeddings": c.bool("tie_word_embeddings", default=True),
        **_plain_layernorm(qkv_bias=bias, out_bias=bias, mlp_bias=bias),
        "final_norm": pre_norm and not c.bool("_remove_final_layer_norm", default=False),
        "activation": c.get("activation_function", default="relu"),
    }


def _phi(c: _Config) -> dict[str, Any]:
    # modeling_phi: q/k/v/dense with bias, fc1/fc2 with bias, one input_layernorm (parallel
    # block), final_layernorm, lm_head with bias.
    return {
        "num_layers": c.int("num_hidden_layers"),
        "hidden_size": c.int("hidden_size"),
        "num_heads": c.int("num_attention_heads"),
        "num_kv_heads": c.int("num_key_value_heads", default=None),
        "intermediate_size": c.int("intermediate_size"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "tied_embeddings": c.bool("tie_word_embeddings", default=False),
        **_plain_layernorm(qkv_bias=True, out_bias=True, mlp_bias=True),
        "norms_per_layer": 1,
        "lm_head_bias": True,
        "activation": c.get("hidden_act", default="gelu_new"),
        "parallel_block": True,
    }


MAPPERS: dict[str, Callable[[_Config], dict[str, Any]]] = {
    "llama": _llama,
    "mistral": _mistral,
    "mixtral": _mixtral,
    "qwen2": _qwen2,
    "qwen2_moe": _qwen2_moe,
    "gemma": _gemma,
    "gemma2": _gemma2,
    "gpt2": _gpt2,
    "gptj": _gptj,
    "gpt_neox": _gpt_neox,
    "falcon": _falcon,
    "RefinedWebModel": _falcon,
    "RefinedWeb": _falcon,
    "bloom": _bloom,
    "opt": _opt,
    "phi": _phi,
    "phi3": _phi3,
    "deepseek_v2": lambda c: _deepseek(c, v3=False),
    "deepseek_v3": lambda c: _deepseek(c, v3=True),
}


def model_from_hf_config(data: dict[str, Any], where: str = "config.json", field: str = "MODEL") -> ModelSpec:
    """Build a ModelSpec from a parsed HuggingFace config.json.

    >>> model_from_hf_config({"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024,
    ...                       "n_embd": 768, "n_layer": 12, "n_head": 12}).num_layers
    12
    """
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in MAPPERS:
        shown = repr(model_type) if len(repr(model_type)) <= 80 else repr(model_type)[:80] + "..."
        supported = ", ".join(sorted(k for k in MAPPERS if k.islower()))
        raise LLMCalcError(field, f"{where}: unsupported model_type {shown}; supported: {supported}")
    fields = MAPPERS[model_type](_Config(data, where, field))
    name = data.get("_name_or_path") or data.get("name") or model_type
    fields = {"name": name[:128] if isinstance(name, str) else model_type, "description": f"imported from {where}", **fields}
    fields = {k: v for k, v in fields.items() if v is not None}
    return spec_from_mapping(ModelSpec, fields, where, field)
