"""The model as a serving engine runs it: sliding-window layers over their window, or over the whole context where
the engine does not apply the window (ServingAssumptions.attention_windows "full": TensorRT-LLM's engine flow,
calc.serving.assumptions.engine_attention_windows).

A sliding layer the engine runs in full attends every earlier token and keeps every token's K and V, so for the
engine it is a full-attention layer: the KV bytes of a request (calc.memory.kv), the keys each decode step reads and
the prefill's attention pairs (calc.model.layers) are those of full layers. Chunked (Llama 4) and linear / state
layers are left as they are: the engine flow ran neither.

Where it applies: at the engine's own entry points, every one that takes the ServingAssumptions (calc.serving.step
step_time and calc.serving.engine_memory engine_memory, under every time and memory figure; latency, serve_plan,
concurrency, and report's inference page, which read the model beside them), so a Python caller who sets
``attention_windows`` gets it whichever function it calls. model_as_run is idempotent and memoised per spec, so
applying it again at a deeper call costs a dictionary lookup.
"""

from __future__ import annotations

from calc.memo import per_spec
from calc.specs import ModelSpec


@per_spec
def whole_context_kv(m: ModelSpec) -> ModelSpec:
    """``m`` with every local layer (sliding window or attention chunk) caching the whole context, as an engine that
    runs all its attention layers under one full-attention KV spec holds them (calc.serving.hybrid_alloc
    .local_layers_cached_whole): for the KV a request holds, not the attention each step computes.

    >>> from calc.sources.catalog import load_model
    >>> set(whole_context_kv(load_model("llama4-scout")).layer_types)
    {'full'}
    """
    kinds = ["full" if t in ("sliding", "chunked") else t for t in m.layer_types or ()]
    return m.model_copy(update={"layer_types": kinds, "sliding_window": None, "attention_chunk_size": None})


@per_spec
def _full_attention(m: ModelSpec) -> ModelSpec:
    """``m`` with every sliding layer full (one copy per spec object, so the per-spec caches of the copy are kept)."""
    kinds = ["full" if t == "sliding" else t for t in m.layer_types or ()]
    return m.model_copy(update={"layer_types": kinds, "sliding_window": None})


def has_sliding_layers(m: ModelSpec) -> bool:
    """Whether ``m`` has sliding-window layers: the models ``attention_windows`` changes (model_as_run; the CLI
    refuses --attention-windows for the others).

    >>> from calc.sources.catalog import load_model
    >>> has_sliding_layers(load_model("mistral-7b")), has_sliding_layers(load_model("llama3-8b"))
    (True, False)
    """
    return "sliding" in (m.layer_types or ())


def model_as_run(m: ModelSpec, attention_windows: str) -> ModelSpec:
    """``m`` as an engine runs it (``attention_windows``: ServingAssumptions.attention_windows, the engine's by
    calc.serving.assumptions.engine_attention_windows): unchanged where the engine applies sliding windows ("applied")
    or the model has none, else with its sliding layers full-attention layers ("full"; module docstring).

    >>> from calc.sources.catalog import load_model
    >>> m = load_model("mistral-7b")
    >>> model_as_run(m, "applied") is m, set(model_as_run(m, "full").layer_types), model_as_run(m, "full").sliding_window
    (True, {'full'}, None)
    """
    if attention_windows == "applied" or not has_sliding_layers(m):
        return m
    return _full_attention(m)
