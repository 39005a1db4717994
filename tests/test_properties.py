"""Property-based tests over random valid model specs (hypothesis)."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from calc.memory import MemoryResult, inference_memory, kv_cache_bytes_per_token, training_memory
from calc.model.flops import FlopsResult, forward_flops
from calc.model.params import ParamCount, count_params
from calc.sources.catalog import dump_spec, spec_from_mapping
from calc.specs import ModelSpec, Parallelism


@st.composite
def model_specs(draw: st.DrawFn) -> ModelSpec:
    kv_heads = draw(st.integers(1, 8))
    heads = kv_heads * draw(st.integers(1, 8))
    head_dim = draw(st.sampled_from([16, 32, 64, 128]))
    moe = None
    if draw(st.booleans()):
        experts = draw(st.integers(2, 16))
        moe = {"num_experts": experts, "experts_per_token": draw(st.integers(1, experts)),
               "expert_intermediate_size": draw(st.integers(8, 512))}
    return ModelSpec.model_validate({
        "name": "random",
        "num_layers": draw(st.integers(1, 48)),
        "hidden_size": draw(st.integers(8, 4096)),
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "intermediate_size": draw(st.integers(8, 16384)),
        "vocab_size": draw(st.integers(2, 200_000)),
        "tied_embeddings": draw(st.booleans()),
        "position_embedding": draw(st.sampled_from(["rope", "learned", "alibi"])),
        "norm": draw(st.sampled_from(["rmsnorm", "layernorm"])),
        "norms_per_layer": draw(st.integers(1, 4)),
        "qkv_bias": draw(st.booleans()),
        "mlp_bias": draw(st.booleans()),
        "gated_mlp": draw(st.booleans()),
        "parallel_block": draw(st.booleans()),
        "moe": moe,
    })


SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(m=model_specs(), b=st.integers(1, 32), s=st.integers(1, 4096))
def test_param_count_independent_of_workload(m: ModelSpec, b: int, s: int) -> None:
    p = count_params(m)
    assert forward_flops(m, b, s).active_params == p.active_params
    mem = inference_memory(m, batch=b, seq=s, dtype="bf16")
    assert mem.weights_bytes == 2 * p.total_params
    assert p.active_params <= p.total_params


@SETTINGS
@given(m=model_specs(), tokens=st.integers(1, 100_000), k=st.integers(2, 5))
def test_kv_linear_in_tokens_and_kv_heads(m: ModelSpec, tokens: int, k: int) -> None:
    one = inference_memory(m, batch=1, seq=tokens).kv_cache_bytes
    assert inference_memory(m, batch=1, seq=k * tokens).kv_cache_bytes == k * one
    assert inference_memory(m, batch=k, seq=tokens).kv_cache_bytes == k * one
    wider = m.model_copy(update={"num_kv_heads": m.kv_heads * k, "num_heads": m.num_heads * k})
    assert kv_cache_bytes_per_token(wider) == k * kv_cache_bytes_per_token(m)


@SETTINGS
@given(m=model_specs(), b=st.integers(1, 16), s=st.integers(1, 2048))
def test_flops_and_memory_monotone_in_batch_and_seq(m: ModelSpec, b: int, s: int) -> None:
    base = forward_flops(m, b, s).forward_flops
    assert forward_flops(m, b + 1, s).forward_flops > base
    assert forward_flops(m, b, s + 1).forward_flops > base
    mem = inference_memory(m, batch=b, seq=s).total_bytes
    assert inference_memory(m, batch=b + 1, seq=s).total_bytes > mem
    assert inference_memory(m, batch=b, seq=s + 1).total_bytes > mem
    train = training_memory(m, micro_batch=b, seq=s).per_gpu_bytes
    assert training_memory(m, micro_batch=b, seq=s + 1).per_gpu_bytes >= train


@SETTINGS
@given(m=model_specs(), b=st.integers(1, 8), s=st.integers(1, 1024))
def test_json_round_trips_through_result_models(m: ModelSpec, b: int, s: int) -> None:
    for result, cls in ((count_params(m), ParamCount), (forward_flops(m, b, s), FlopsResult),
                        (inference_memory(m, batch=b, seq=s, plan=Parallelism()), MemoryResult)):
        assert cls.model_validate_json(result.model_dump_json()) == result


@SETTINGS
@given(m=model_specs())
def test_spec_yaml_round_trip(m: ModelSpec) -> None:
    text = yaml.safe_dump(dump_spec(m))
    assert spec_from_mapping(ModelSpec, yaml.safe_load(text), "round-trip", "MODEL") == m
