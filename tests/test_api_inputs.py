"""The engine as a Python library (README "Python"): a bad input raises calc.errors.LLMCalcError naming the field, never
a ZeroDivisionError / ValueError from deep inside or a silently wrong answer (a negative TTFT, an unknown recompute
read as none); a pathlib.Path loads as its string does (QA findings of a Python user's sweep)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from calc.errors import LLMCalcError
from calc.memory.finetune import finetune_memory, fit_table
from calc.memory.inference import inference_memory
from calc.memory.kv import kv_cache_bytes_per_token
from calc.memory.training import training_memory
from calc.model.flops import decode_flops, forward_flops
from calc.serving.capacity import concurrency
from calc.serving.latency import latency
from calc.serving.plan import serve_plan
from calc.sources.catalog import load_gpu, load_model

M, G = load_model("llama3-8b"), load_gpu("h100")


@pytest.mark.parametrize(("call", "field"), [
    (lambda: latency(M, G, prompt=0), "--prompt"),
    (lambda: latency(M, G, batch=-1), "--batch"),
    (lambda: training_memory(M, recompute="Full"), "--recompute"),
    (lambda: training_memory(M, in_flight=-1), "--pp-microbatch-group"),
    (lambda: kv_cache_bytes_per_token(M, tp=0), "--tp"),
    (lambda: forward_flops(M, seq=1.5), "--seq"),
    (lambda: finetune_memory(M, fragmentation=-0.5), "--fragmentation"),
    (lambda: finetune_memory(M, lora_dropout=2.0), "--lora-dropout"),
    (lambda: concurrency(M, G, max_tokens=0), "--max-model-len"),
    (lambda: inference_memory(M, act_factor=-1), "--act-factor"),
    (lambda: serve_plan(M, G, prompt=10, output=10, rate=-1), "--rate"),
    (lambda: serve_plan(M, G, prompt=10, output=10, rate=math.nan), "--rate"),
    (lambda: serve_plan(M, G, prompt=10, output=10, rate=math.inf), "--rate"),
    (lambda: serve_plan(M, G, prompt=math.nan, output=10), "--prompt"),
    (lambda: serve_plan(M, G, prompt=100, output=10, users=-3), "--users"),
    (lambda: serve_plan(M, G, prompt=10, output=10, rate=1, max_gpus=0), "max_gpus"),
    (lambda: serve_plan(M, G, prompt=10, output=10, num_gpus=0), "--num-gpus"),
    (lambda: serve_plan(M, G, prompt=10, output=10, tpot_ms=math.nan), "--tpot-ms"),
    (lambda: inference_memory(M, batch=math.nan), "--batch"),
    (lambda: inference_memory(M, reserve_gib=math.nan), "--reserve-gib"),
    (lambda: inference_memory(M, accounting="x"), "accounting"),
    (lambda: inference_memory(M, dtype="int4", group_size=0), "--group-size"),
    (lambda: training_memory(M, reserve_gib=-1), "--reserve-gib"),
    (lambda: training_memory(M, fragmentation=-0.5), "--fragmentation"),
    (lambda: training_memory(M, grad_accum=0), "--grad-accum"),
    (lambda: training_memory(M, global_batch=0), "--global-batch"),
    (lambda: training_memory(M, dropout=2), "--dropout"),
    (lambda: latency(M, G, output=math.nan), "--output"),
    (lambda: latency(M, G, chunk_tokens=0), "--max-num-batched-tokens"),
    (lambda: latency(M, G, accounting="x"), "accounting"),
    (lambda: latency(M, G, target_ttft_s=math.nan), "--ttft-ms"),
    (lambda: concurrency(M, G, ep=0), "--ep"),
    (lambda: decode_flops(M, 1, -1, 10), "--seq"),
    (lambda: fit_table(M, G, max_batch=0), "max_batch"),
])
def test_bad_input_is_an_llmcalc_error_naming_the_field(call, field) -> None:
    with pytest.raises(LLMCalcError) as err:
        call()
    assert str(err.value).startswith(field)


def test_a_path_object_loads_as_its_string() -> None:
    path = Path(__file__).parent / "fixtures" / "hf" / "deepseek-v3.2-exp.json"
    assert load_model(path) == load_model(str(path))


def test_kv_heads_on_the_busiest_rank_round_up() -> None:
    # 8 KV heads over TP 3 (a layout the serving commands refuse): the busiest rank holds 3, not 2
    assert kv_cache_bytes_per_token(M, "bf16", tp=3) == 2 * 32 * 3 * 128 * 2


def test_latency_as_a_library_call_says_when_the_weights_do_not_fit() -> None:
    # Llama 2 70B: 68,976,648,192 parameters x 2 B = 128.48 GiB of bf16 weights, over one H100's 79.20 GiB CUDA total
    r = latency(load_model("llama2-70b"), G, prompt=1000)
    assert r.fits is False and r.verdict.startswith("does not fit: 128.48 GiB of weights a GPU")
    assert latency(load_model("llama2-70b"), G, num_gpus=2, prompt=1000).fits is True


@pytest.mark.parametrize(("call", "field"), [
    (lambda calc: calc.count_params("llama2-7b"), "m"),
    (lambda calc: calc.forward_flops("llama2-7b"), "m"),
    (lambda calc: calc.latency(M, "h100"), "gpu"),
    (lambda calc: calc.inference_memory(M, gpu="h100"), "gpu"),
    (lambda calc: calc.summarize_gpu("h100"), "gpu"),
    (lambda calc: calc.model_from_hf_config("config.json"), "data"),
])
def test_the_public_api_names_a_spec_given_as_a_name(call, field) -> None:
    """calc.<function> given a catalog name or a path where it takes a spec: an LLMCalcError naming the argument and
    the loader that makes the spec, not an AttributeError from inside."""
    import calc

    with pytest.raises(LLMCalcError) as err:
        call(calc)
    assert err.value.field == field and ("calc.load_" in str(err.value) or "json.load" in str(err.value))
    assert calc.count_params(M).total_params == 8_030_261_248  # a spec passes through: Llama 3 8B's published count
