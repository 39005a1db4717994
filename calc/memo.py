"""Per-spec memoisation: a pure function of a frozen spec (ModelSpec, GPUSpec) and hashable arguments,
computed once per spec object and reused while that object lives.

Specs are frozen pydantic models (calc.specs) holding lists, so they cannot be dict keys; the cache is
keyed by the object's identity, held through a weak reference so that an id reused by a later object
never finds an older object's results. A search over layouts (serve, train-plan) asks the same
per-model question (KV bytes of a prompt, weight bytes of a TP x PP layout, keys each layer sees)
hundreds of times; the answer is the same number each time, so it is worked out once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

R = TypeVar("R")


def per_spec(fn: Callable[..., R]) -> Callable[..., R]:
    """``fn(spec, *args, **kwargs)`` memoised on (the spec object, args, kwargs). ``fn`` must be pure and
    return an immutable value (an int, a tuple); arguments that cannot be hashed skip the cache."""
    cache: dict[int, tuple[weakref.ref[Any], dict[Any, R]]] = {}

    def _forget(ref: weakref.ref[Any], key: int) -> None:
        if cache.get(key, (None,))[0] is ref:
            del cache[key]

    @wraps(fn)
    def wrapper(spec: Any, *args: Any, **kwargs: Any) -> R:
        key = id(spec)
        entry = cache.get(key)
        if entry is None or entry[0]() is not spec:
            try:
                ref = weakref.ref(spec, lambda ref: _forget(ref, key))
            except TypeError:  # an object that takes no weak reference: not remembered
                return fn(spec, *args, **kwargs)
            entry = cache[key] = (ref, {})
        results = entry[1]
        call = (args, tuple(kwargs.items())) if kwargs else args
        try:
            return results[call]
        except KeyError:
            value = results[call] = fn(spec, *args, **kwargs)
            return value
        except TypeError:  # an unhashable argument
            return fn(spec, *args, **kwargs)

    wrapper.cache_clear = cache.clear  # type: ignore[attr-defined]
    return wrapper
