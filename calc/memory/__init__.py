"""GPU memory for inference and training: weights, KV cache, activations, training states."""

from calc.memory.activations import Recompute, activation_factor, korthikanti_layer_bytes
from calc.memory.inference import inference_memory
from calc.memory.kv import kv_cache_bytes_for_tokens, kv_cache_bytes_per_token, kv_elements_per_token
from calc.memory.result import DEFAULT_RESERVE_GIB, MemoryResult
from calc.memory.training import RECIPES, training_memory

__all__ = [
    "DEFAULT_RESERVE_GIB", "RECIPES", "MemoryResult", "Recompute", "activation_factor", "inference_memory",
    "korthikanti_layer_bytes", "kv_cache_bytes_for_tokens", "kv_cache_bytes_per_token", "kv_elements_per_token",
    "training_memory",
]
