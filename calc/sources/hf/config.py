"""Typed access to a HuggingFace config.json, and the readers every family mapper shares.

Each mapper reads the fields that the family's ``modeling_*.py`` in transformers uses, with the
same defaults as its ``configuration_*.py``. A shape the config does not give is an error naming
the field, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from calc.errors import LLMCalcError

_REQUIRED = object()
Mapping = dict[str, Any]

# transformers' layer_types vocabulary -> ours (configuration_utils ALLOWED_LAYER_TYPES).
_LAYER_KIND = {
    "full_attention": "full", "sliding_attention": "sliding", "chunked_attention": "chunked",
    "linear_attention": "linear", "mamba": "linear", "conv": "linear",
}


class HFConfig:
    """A config dict; a missing or wrong-typed field names itself in a one-line error."""

    def __init__(self, data: dict[str, Any], where: str, field: str) -> None:
        self.data, self.where, self.field = data, where, field
        self.defaulted: dict[str, Any] = {}  # key -> the family constant used because the config lacks it
        self.derived: dict[str, str] = {}  # key -> "value (rule)": a default computed from other fields
        self.family: dict[str, Any] = {}  # the family's configuration_*.py defaults (use_defaults)

    def use_defaults(self, table: dict[str, Any]) -> HFConfig:
        """Take ``table`` (a family's configuration_*.py defaults) for the keys the config leaves out,
        as transformers does: absent means the class default (Qwen3 head_dim 128, Mistral
        num_key_value_heads 8), while an explicit null keeps the mapper's null rule (kv heads = heads).
        A table value wins over the reader's own ``default=`` and is recorded as defaulted when read; a
        key already set by an earlier (more specific) table keeps its value, and a None entry means the
        reader's own rule applies (Qwen3-MoE has no head_dim: hidden_size // num_attention_heads)."""
        self.family = {**table, **self.family}
        return self

    def fail(self, key: str, problem: str) -> LLMCalcError:
        return LLMCalcError(self.field, f"{self.where}: field '{key}' {problem}")

    def get(self, *keys: str, default: Any = _REQUIRED, rule: str | None = None) -> Any:
        """The first key the config sets; else the family table's value (absent keys only); else
        ``default``, recorded as a family constant, or as derived when ``rule`` says how it follows from
        other fields (Falcon's ffn_hidden_size = 4 * hidden_size): `import` refuses only constants."""
        for key in keys:
            if key in self.data and self.data[key] is not None:
                return self.data[key]
        if self.family.get(keys[0]) is not None and all(k not in self.data for k in keys):
            self.defaulted.setdefault(keys[0], self.family[keys[0]])
            return self.family[keys[0]]
        if default is _REQUIRED:
            raise self.fail(keys[0], "is missing")
        if default is not None and rule is not None:
            self.derived.setdefault(keys[0], f"{default!r} ({rule})")
        elif default is not None:
            self.defaulted.setdefault(keys[0], default)
        return default

    def int(self, *keys: str, default: Any = _REQUIRED, rule: str | None = None) -> Any:
        value = self.get(*keys, default=default, rule=rule)
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(keys[0], f"must be an integer, got {value!r}")
        return value

    def layers(self, key: str = "num_hidden_layers") -> int:
        """The layer count, bounded before any per-layer loop runs over it."""
        from calc.specs.bounds import LIMITS

        value = self.int(key)
        if not 1 <= value <= LIMITS["num_layers"][1]:
            raise self.fail(key, f"must be in 1..{LIMITS['num_layers'][1]}, got {value}")
        return value

    def divisor(self, key: str, default: int) -> int:
        """An integer used as a step or modulus (decoder_sparse_step, moe_layer_freq, patterns): >= 1."""
        value = self.int(key, default=default)
        if value < 1:
            raise self.fail(key, f"must be an integer >= 1, got {value!r}")
        return value

    def int_list(self, key: str) -> list[int]:
        value = self.get(key, default=[])
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self.fail(key, f"must be a list of integers, got {value!r}"[:200])
        return value

    def bool(self, *keys: str, default: Any = _REQUIRED) -> Any:
        value = self.get(*keys, default=default)
        if not isinstance(value, bool):
            raise self.fail(keys[0], f"must be true or false, got {value!r}")
        return value


def attention_layout(c: HFConfig, num_layers: int, rule: Callable[[int], str] | None = None,
                     window: int | None = None) -> Mapping:
    """layer_types / sliding_window / attention_chunk_size for the spec.

    An explicit ``layer_types`` list wins (transformers >= 4.53 writes it); else ``rule(i)`` gives the
    family's default pattern (Gemma 2: even layers slide); else every layer slides when the config
    sets ``sliding_window`` (Mistral-7B-v0.1, Phi-3, Starcoder2), otherwise every layer is full.
    """
    window = window if window is not None else c.int("sliding_window", default=None)
    explicit = c.get("layer_types", default=None)
    if explicit is not None:
        if not isinstance(explicit, list) or len(explicit) != num_layers:
            raise c.fail("layer_types", f"must list one type per layer ({num_layers})")
        unknown = sorted({k for k in explicit if k not in _LAYER_KIND})
        if unknown:
            raise c.fail("layer_types", f"has unknown kinds {unknown}; known: {', '.join(_LAYER_KIND)}")
        kinds = [_LAYER_KIND[k] for k in explicit]
    elif rule is not None:
        kinds = [rule(i) for i in range(num_layers)]
    else:
        kinds = ["sliding" if window else "full"] * num_layers
    if "sliding" in kinds and not window:
        raise c.fail("sliding_window", "is missing but some layers use sliding-window attention")
    chunk = c.int("attention_chunk_size", default=None) if "chunked" in kinds else None
    if "chunked" in kinds and not chunk:
        raise c.fail("attention_chunk_size", "is missing but some layers use chunked attention")
    if set(kinds) == {"full"}:
        return {}
    return {"layer_types": kinds, "sliding_window": window if "sliding" in kinds else None, "attention_chunk_size": chunk}


def rope_scaling_factor(c: HFConfig) -> float | None:
    """The usable-context factor: yarn's ``factor`` when max_position_embeddings is the original
    (pre-scaling) length, as Qwen2.5/Qwen3 configs with yarn added state it; None otherwise (Llama 3.1's
    and gpt-oss's max_position_embeddings already include their scaling)."""
    scaling = c.get("rope_scaling", default=None)
    if not isinstance(scaling, dict) or scaling.get("rope_type", scaling.get("type")) != "yarn":
        return None
    factor = scaling.get("factor")
    original = scaling.get("original_max_position_embeddings")
    if isinstance(factor, float) and not math.isfinite(factor):
        raise c.fail("rope_scaling.factor", f"must be a finite number, got {factor}")
    if isinstance(factor, int | float) and not isinstance(factor, bool) and factor <= 0:
        raise c.fail("rope_scaling.factor", f"must be positive (the context's scale), got {factor}")
    if not isinstance(factor, int | float) or factor <= 1:
        return None
    if original is None or original == c.int("max_position_embeddings", default=None):
        return float(factor)
    return None


def llama_like(c: HFConfig, **family: Any) -> Mapping:
    """Llama, Mistral, Qwen, Gemma, Phi-3 and their descendants: RMSNorm, RoPE, gated MLP, GQA,
    optional head_dim; per-layer attention from layer_types / sliding_window."""
    num_layers = c.layers()
    rule = family.pop("layer_rule", None)
    layout = family.pop("layout", None)
    window = c.int("sliding_window", default=family.pop("window_default", None))
    hidden, heads = c.int("hidden_size"), c.int("num_attention_heads")
    return {
        "num_layers": num_layers,
        "hidden_size": hidden,
        "num_heads": heads,
        # absent: transformers' rule, num_attention_heads (MHA), recorded among the defaults the import used
        "num_kv_heads": c.int("num_key_value_heads", default=heads, rule="num_attention_heads: no num_key_value_heads, so MHA"),
        "head_dim": c.int("head_dim", default=None),
        "intermediate_size": c.int("intermediate_size"),
        "vocab_size": c.int("vocab_size"),
        "max_position_embeddings": c.int("max_position_embeddings", default=2048),
        "rope_scaling_factor": rope_scaling_factor(c),
        "tied_embeddings": c.bool("tie_word_embeddings", default=family.pop("tied_default", False)),
        "norm": "rmsnorm",
        "gated_mlp": True,
        "activation": c.get("hidden_act", "hidden_activation", default="silu"),
        **(layout if layout is not None else attention_layout(c, num_layers, rule, window)),
        **family,
    }


def moe_layer_set(num_layers: int, first_dense: int = 0, freq: int = 1, skip: set[int] | None = None) -> set[int]:
    """MoE layers i with i >= first_dense, i % freq == 0 and i not in skip (DeepSeek/GLM numbering)."""
    return {i for i in range(num_layers) if i >= first_dense and i % freq == 0 and i not in (skip or set())}


def ffn_layout(num_layers: int, moe_layers: set[int]) -> Mapping:
    """The FFN placement of a MoE model: {} when the MoE layers are the last ones (ModelSpec's default: dense layers
    first, moe.num_dense_layers of them), else ``ffn_types`` naming each layer ("dense" / "moe"), so an interleaved
    model (Llama 4 Maverick's interleave_moe_layer_step 2: MoE at 1, 3, 5, ...; Qwen's decoder_sparse_step; DeepSeek's
    moe_layer_freq) keeps its layers where the checkpoint has them (pipeline stages, per-layer costs).

    >>> ffn_layout(4, {2, 3})
    {}
    >>> ffn_layout(4, {1, 3})
    {'ffn_types': ['dense', 'moe', 'dense', 'moe']}
    """
    dense = num_layers - len(moe_layers)
    if moe_layers == set(range(dense, num_layers)):
        return {}
    return {"ffn_types": ["moe" if i in moe_layers else "dense" for i in range(num_layers)]}
