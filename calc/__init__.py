"""llmcalc: exact, explained sizing arithmetic for large language models.

The engine is plain functions over typed specs; the CLI (calc.cli) is a thin layer on top.

>>> from calc import load_model, count_params
>>> count_params(load_model("llama2-7b")).total_params
6738415616

Public names are imported lazily so that `llmcalc --help` does not pay for them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ModelSpec": "calc.specs", "GPUSpec": "calc.specs", "Parallelism": "calc.specs", "MoESpec": "calc.specs",
    "MLASpec": "calc.specs", "LLMCalcError": "calc.errors",
    "load_model": "calc.catalog", "load_gpu": "calc.catalog", "list_models": "calc.catalog", "list_gpus": "calc.catalog",
    "model_from_hf_config": "calc.hf_import",
    "count_params": "calc.params", "textbook_params": "calc.params",
    "forward_flops": "calc.flops", "decode_flops": "calc.flops", "arithmetic_intensity": "calc.flops",
    "fused_parallel_shapes": "calc.flops",
    "inference_memory": "calc.memory", "training_memory": "calc.memory", "kv_cache_bytes_per_token": "calc.memory",
    "korthikanti_layer_bytes": "calc.memory",
    "derived_peak_tflops": "calc.hardware", "summarize_gpu": "calc.hardware", "peak_tflops": "calc.hardware",
    "mfu": "calc.perf", "train_time": "calc.perf", "latency": "calc.perf", "concurrency": "calc.perf",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'calc' has no attribute {name!r}")
