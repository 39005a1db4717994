"""calc.memo.per_spec: a result is reused for the same spec object only, never for another object (a copy
with other fields, or a later object given a dead one's id), and anything it cannot key is computed."""

from __future__ import annotations

import gc

from calc.memo import per_spec
from calc.memory.kv import kv_cache_bytes_for_tokens
from calc.memory.weights import weights_per_gpu
from calc.sources.catalog import load_model


class _Spec:
    def __init__(self, n: int) -> None:
        self.n = n


def test_same_object_computes_once_other_objects_their_own() -> None:
    calls: list[int] = []

    @per_spec
    def double(spec: _Spec, k: int) -> int:
        calls.append(spec.n)
        return 2 * spec.n * k

    a, b = _Spec(3), _Spec(5)
    assert [double(a, 1), double(a, 1), double(b, 1), double(a, 2)] == [6, 6, 10, 12]
    assert calls == [3, 5, 3]


def test_a_collected_spec_leaves_nothing_behind() -> None:
    calls: list[int] = []

    @per_spec
    def ident(spec: _Spec) -> int:
        calls.append(spec.n)
        return spec.n

    for n in range(50):  # ids of collected objects are reused: each new object must still be computed
        assert ident(_Spec(n)) == n
        gc.collect()
    assert calls == list(range(50))


def test_unhashable_arguments_and_plain_values_are_computed_not_cached() -> None:
    calls: list[object] = []

    @per_spec
    def length(spec: object, items: list[int]) -> int:
        calls.append(spec)
        return len(items)

    assert length(_Spec(1), [1, 2]) == 2
    assert length(7, [1]) == 1  # an int takes no weak reference
    assert len(calls) == 2


def test_kv_and_weights_follow_the_fields_of_each_spec() -> None:
    # KV of llama2-7b at fp16: 2 (K and V) x 32 layers x 4096 (32 heads x 128) x 2 B per token
    m = load_model("llama2-7b")
    assert kv_cache_bytes_for_tokens(m, 1000, "fp16") == 2 * 32 * 4096 * 2 * 1000
    half = m.model_copy(update={"num_layers": 16})
    assert kv_cache_bytes_for_tokens(half, 1000, "fp16") == 2 * 16 * 4096 * 2 * 1000
    assert kv_cache_bytes_for_tokens(m, 1000, "fp16") == 2 * 32 * 4096 * 2 * 1000
    # weights at bf16 on one GPU: 32 layers of 4*4096^2 + 3*4096*11008 + 2*4096, embedding and head
    # 32000*4096 each, final norm 4096; two bytes each
    full = (32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 2 * 32000 * 4096 + 4096) * 2
    assert weights_per_gpu(m, "bf16") == full
    assert weights_per_gpu(m, "bf16", tp=2) == full // 2
    assert weights_per_gpu(half, "bf16") == full - 16 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) * 2
