"""llmcalc: exact, explained sizing arithmetic for large language models.

The engine is plain functions over typed specs; the CLI (calc.cli.app) is a thin layer on top.

>>> from calc import load_model, count_params
>>> count_params(load_model("llama2-7b")).total_params
6738415616

Public names (``dir(calc)``, ``help(calc.<name>)``), imported lazily so that `llmcalc --help` does not pay for them:

- specs and catalogs: ModelSpec, GPUSpec, SystemSpec, Parallelism, MoESpec, MLASpec, load_model, load_gpu,
  load_system, list_models, list_gpus, list_systems, model_from_hf_config; errors: LLMCalcError, LLMCalcWarning
- counts: count_params, textbook_params, lora_params, forward_flops, decode_flops, arithmetic_intensity,
  fused_parallel_shapes, kv_cache_bytes_per_token, korthikanti_layer_bytes
- memory: inference_memory, training_memory, finetune_memory, fit_table
- hardware: derived_peak_tflops, peak_tflops, summarize_gpu
- training: mfu, train_time, ModelCost, Layout, train_step, search_plans
- serving: latency, concurrency, serve_plan, EngineSettings (the engine, its release and its flags),
  ServingAssumptions (every serving assumption the CLI's --explain names, e.g. ``attention_windows="full"`` for a
  sliding-window model as TensorRT-LLM's engine flow runs it; each serving function applies what it is given)

The engine's keyword defaults are its own (e.g. ``dtype="bf16"``, ``seq=2048``, ``latency(output=128)``); the CLI's
differ where a command says so (weights as shipped, ``--seq 4096``, ``--output 256``): pass them explicitly to
reproduce a command (``dtype=None`` is "as shipped" in inference_memory, concurrency and latency).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ModelSpec": "calc.specs", "GPUSpec": "calc.specs", "Parallelism": "calc.specs", "MoESpec": "calc.specs",
    "MLASpec": "calc.specs", "LLMCalcError": "calc.errors", "LLMCalcWarning": "calc.errors",
    "load_model": "calc.sources.catalog", "load_gpu": "calc.sources.catalog",
    "list_models": "calc.sources.catalog", "list_gpus": "calc.sources.catalog",
    "model_from_hf_config": "calc.sources.hf",
    "count_params": "calc.model.params", "textbook_params": "calc.model.params",
    "forward_flops": "calc.model.flops", "decode_flops": "calc.model.flops", "arithmetic_intensity": "calc.model.flops",
    "fused_parallel_shapes": "calc.model.flops",
    "inference_memory": "calc.memory", "training_memory": "calc.memory", "kv_cache_bytes_per_token": "calc.memory",
    "korthikanti_layer_bytes": "calc.memory",
    "derived_peak_tflops": "calc.hardware.peaks", "summarize_gpu": "calc.hardware.peaks", "peak_tflops": "calc.hardware.peaks",
    "mfu": "calc.training.mfu", "train_time": "calc.training.mfu", "latency": "calc.serving.latency",
    "concurrency": "calc.serving.capacity", "serve_plan": "calc.serving.plan", "EngineSettings": "calc.specs.serving",
    "ServingAssumptions": "calc.serving.assumptions",
    "SystemSpec": "calc.specs.system", "load_system": "calc.sources.catalog", "list_systems": "calc.sources.catalog",
    "ModelCost": "calc.training.cost", "Layout": "calc.training.layout", "train_step": "calc.training.step",
    "search_plans": "calc.training.plan",
    "finetune_memory": "calc.memory.finetune", "fit_table": "calc.memory.finetune", "lora_params": "calc.model.lora",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        if name not in _GUARDED:
            _GUARDED[name] = _guarded(value)
        return _GUARDED[name]
    raise AttributeError(f"module 'calc' has no attribute {name!r}")


# the spec a public function's argument is annotated with -> the loader that makes one (a name or a path goes there)
_SPEC_LOADERS = {"ModelSpec": "load_model", "GPUSpec": "load_gpu", "SystemSpec": "load_system"}
_GUARDED: dict[str, Any] = {}


def _guarded(fn: Any) -> Any:
    """``fn`` as the public API hands it out: an argument annotated with a spec (ModelSpec, GPUSpec, SystemSpec) given
    something else (a catalog name, a path) is an LLMCalcError naming the argument and the loader, not an
    AttributeError from inside; an argument annotated dict (model_from_hf_config's parsed config.json) given a
    path likewise. Classes and the loaders pass through unchanged."""
    import functools
    import inspect

    if not inspect.isfunction(fn):
        return fn
    sig = inspect.signature(fn)
    checks = [(arg, ann) for arg, p in sig.parameters.items() if isinstance(p.annotation, str)
              for ann in _SPEC_LOADERS if p.annotation.split(" | ")[0] == ann]
    mappings = [arg for arg, p in sig.parameters.items() if isinstance(p.annotation, str)
                and p.annotation.startswith("dict[")]  # a parsed JSON object (model_from_hf_config's config.json)
    if not checks and not mappings:
        return fn

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        from calc.errors import LLMCalcError

        try:
            bound = sig.bind_partial(*args, **kwargs).arguments
        except TypeError:
            return fn(*args, **kwargs)  # Python's own message for a wrong call
        for arg in mappings:
            if arg in bound and not isinstance(bound[arg], dict):
                raise LLMCalcError(arg, f"takes a parsed JSON object (a dict), got {type(bound[arg]).__name__}: "
                                        "json.load the file first (calc.load_model(path) reads a config.json)")
        for arg, ann in checks:
            value = bound.get(arg)
            if value is not None and not _is_spec(value, ann):
                raise LLMCalcError(arg, f"takes a {ann}, got {type(value).__name__} {value!r:.60}: make one with "
                                        f"calc.{_SPEC_LOADERS[ann]}({value!r:.60})")
        return fn(*args, **kwargs)

    return guarded


def _is_spec(value: Any, ann: str) -> bool:
    spec = getattr(import_module("calc.specs.system" if ann == "SystemSpec" else "calc.specs"), ann)
    return isinstance(value, spec)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
