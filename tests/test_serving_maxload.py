"""Offline max-load rows as vLLM and SGLang run them (issue 24): each engine's batch defaults by version, GPU and
usage; the layout an engine's own parallelism flags give; the cap on requests a run holds. Numbers by hand from the
engines' sources (cited per test)."""

from __future__ import annotations

import argparse
import shlex
from types import SimpleNamespace

import pytest

from calc.errors import LLMCalcError
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS
from calc.serving.engine_memory import engine_memory
from calc.serving.launch import engine_layout, launch_command
from calc.serving.moe import attention_ranks
from calc.serving.plan import max_load_layout
from calc.serving.weights import weight_format
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings, sglang_max_running_requests

H100, H200, A100, L40S = (load_gpu(g) for g in ("h100", "h200", "a100-80g", "l40s"))


@pytest.mark.parametrize(("version", "gpu", "usage", "seqs", "tokens"), [
    # vllm/engine/arg_utils.py get_batch_defaults (>= 0.9): device memory >= 70 GiB and "a100" not in the name ->
    # LLM_CLASS 16384 tokens / 1024 seqs, OPENAI_API_SERVER 8192 / 1024; otherwise 8192 / 256 and 2048 / 256
    ("0.11.0", H200, "server", 1024, 8192),
    ("0.10.2", H100, "server", 1024, 8192),
    ("0.11.0", H100, "offline", 1024, 16384),
    ("0.11.0", A100, "server", 256, 2048),  # 80 GiB, but an A100 (PR #17885)
    ("0.11.0", A100, "offline", 256, 8192),
    ("0.11.0", L40S, "server", 256, 2048),  # 45 GiB: below 70
    ("0.8.5", H100, "server", 256, 2048),  # before the memory rule: the small-GPU column
    ("0.8.5", H100, "offline", 256, 8192),
])
def test_vllm_v1_batch_defaults_by_version_gpu_and_usage(version, gpu, usage, seqs, tokens) -> None:  # noqa: ANN001
    s = EngineSettings(engine="vllm", engine_version=version, usage_context=usage)
    assert s.seqs(gpu.memory_bytes, gpu.name) == seqs
    assert s.batched_tokens(131072, gpu.memory_bytes, gpu.name) == tokens


def test_sglang_max_running_requests_by_hand() -> None:
    """model_runner.init_memory_pool: max_num_reqs = min(max(int(pool / context_len x 512), 2048), 4096), and
    max_running_requests = min(pool // 2, max_num_reqs); a given --max-running-requests R is R // dp per DP worker.
    1,000,000 tokens at 163,840: 1e6 / 163,840 x 512 = 3,125 -> 3,125; at 8,192: 62,500 -> 4,096; 3,000 tokens at
    131,072: 11 -> 2,048, but pool // 2 = 1,500; R = 512 over 4 DP workers -> 128."""
    assert sglang_max_running_requests(1_000_000, 163_840) == 3125
    assert sglang_max_running_requests(1_000_000, 8192) == 4096
    assert sglang_max_running_requests(3000, 131_072) == 1500
    assert sglang_max_running_requests(10**6, 8192, given=512, dp=4) == 128


def test_sglang_engine_caps_running_requests_from_its_pool() -> None:
    """engine_memory under SGLang's accounting reports the pool's cap, not a fixed one: at a 4,096-token context
    min(pool // 2, 4096) (the clamp's top, pool / 4096 x 512 being far above it)."""
    m = load_model("llama3-8b")
    mem = engine_memory(m, H100, settings=EngineSettings(engine="sglang", engine_version="0.5.3", max_model_len=4096),
                        tokens_per_request=4096)
    assert mem.kv_cache_tokens > 8 * 4096  # a pool worth clamping
    assert mem.max_num_seqs == min(mem.kv_cache_tokens // 2, 4096)
    given = EngineSettings(engine="sglang", engine_version="0.5.3", max_model_len=4096, max_num_seqs=96)
    assert engine_memory(m, H100, settings=given, tokens_per_request=4096).max_num_seqs == 96


@pytest.mark.parametrize(("engine", "flags", "layout", "ranks"), [
    # vLLM FusedMoEParallelConfig.make: EP over dp x tp ranks, attention TP tp on each DP rank
    ("vllm", {"tp": 8, "enable_expert_parallel": True}, (8, 1, 8), 1),  # -tp 8 --enable-expert-parallel: d = 1
    ("vllm", {"tp": 2, "dp": 4, "enable_expert_parallel": True}, (2, 1, 8), 4),
    ("vllm", {"tp": 4, "pp": 2}, (4, 2, 1), 1),
    # SGLang server_args: attention TP = tp / dp with --enable-dp-attention; experts whole over --ep-size = tp
    ("sglang", {"tp": 8, "dp": 8, "ep": 8, "enable_dp_attention": True}, (1, 1, 8), 8),
    ("sglang", {"tp": 8, "dp": 2, "ep": 8, "enable_dp_attention": True}, (4, 1, 8), 2),
    ("sglang", {"tp": 8, "enable_dp_attention": True}, (8, 1, 1), 1),  # dp 1: attention stays TP 8
    ("sglang", {"tp": 8, "ep": 8}, (8, 1, 8), 1),
    # trtllm-bench --tp_size 8 --ep_size 8 with attention DP (the perf-overview rows)
    ("trtllm", {"tp": 8, "ep": 8}, (1, 1, 8), 8),
    ("trtllm", {"tp": 4}, (4, 1, 1), 1),
])
def test_engine_flags_to_layout(engine, flags, layout, ranks) -> None:  # noqa: ANN001
    got = engine_layout(engine, **flags)
    assert got == layout
    assert attention_ranks(got[0], got[2]) == ranks


@pytest.mark.parametrize(("engine", "flags", "flag"), [
    ("vllm", {"tp": 2, "dp": 4}, "--data-parallel-size"),  # DP without EP: experts TP-flattened across DP
    ("sglang", {"tp": 8, "dp": 2}, "--dp"),  # DP replicas behind a router
    ("sglang", {"tp": 8, "dp": 4, "enable_dp_attention": True}, "--ep-size"),  # TP experts under DP attention
    ("sglang", {"tp": 8, "ep": 4}, "--ep-size"),  # moe_tp 2 x EP 4
    ("trtllm", {"tp": 8, "ep": 4}, "--ep_size"),
    ("vllm", {"tp": 4, "pp": 2, "enable_expert_parallel": True}, "--pipeline-parallel-size"),
])
def test_layouts_the_step_model_cannot_time_are_refused(engine, flags, flag) -> None:  # noqa: ANN001
    with pytest.raises(LLMCalcError) as e:
        engine_layout(engine, **flags)
    assert e.value.field == flag


@pytest.mark.parametrize(("tp", "pp", "ep"), [(8, 1, 8), (2, 1, 8), (1, 1, 8), (4, 2, 1)])
def test_emitted_launch_lines_parse_back_to_their_layout(tp, pp, ep) -> None:  # noqa: ANN001
    """`serve --emit` and engine_layout are inverses: the flags of an emitted line give back its layout."""
    m, s = load_model("qwen3-235b-a22b"), EngineSettings(max_model_len=4096)
    best = SimpleNamespace(tp=tp, pp=pp, ep=ep, batch=64)
    p = argparse.ArgumentParser(exit_on_error=False)
    for flag in ("--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size", "--tp", "--dp",
                 "--ep-size", "--pp-size"):
        p.add_argument(flag, type=int)
    for flag in ("--enable-expert-parallel", "--enable-dp-attention"):
        p.add_argument(flag, action="store_true")
    v, _ = p.parse_known_args(shlex.split(launch_command(m, s, best, "vllm", "bf16", 8192))[3:])
    assert engine_layout("vllm", v.tensor_parallel_size, v.pipeline_parallel_size or 1, v.data_parallel_size or 1,
                         enable_expert_parallel=v.enable_expert_parallel) == (tp, pp, ep)
    g, _ = p.parse_known_args(shlex.split(launch_command(m, s, best, "sglang", "bf16", 8192))[3:])
    assert engine_layout("sglang", g.tp, g.pp_size or 1, g.dp or 1, g.ep_size or 1,
                         enable_dp_attention=g.enable_dp_attention) == (tp, pp, ep)


def test_a_run_of_fewer_requests_keeps_the_launched_engine() -> None:
    """max_load_layout(requests=R): the batch is min(KV cap, max_num_seqs, R) while the engine's memory (its
    profile run at max_num_seqs) is the one launched: 10 requests run as a batch of 10 on the same KV cache. 150-token
    requests: 1,024 of them hold 153,600 tokens x 128 KiB (llama3-8b bf16 KV) = 20 GB, within the H100's cache."""
    m = load_model("llama3-8b")
    kw = {"prompt": 100, "output": 50, "tp": 1, "settings": EngineSettings(engine="vllm", engine_version="0.11.0")}
    full, ten = max_load_layout(m, H100, **kw), max_load_layout(m, H100, **kw, requests=10)
    assert full.batch == 1024 and ten.batch == 10  # 0.11 on an H100: max_num_seqs 1024 (get_batch_defaults)
    assert ten.kv_cache_tokens == full.kv_cache_tokens


def test_corpus_rows_run_the_layout_their_flags_give() -> None:
    """GPUStack's `vllm serve -tp 8 --enable-expert-parallel` is attention TP 8 with EP 8 (not TensorRT-LLM's
    attention DP); SGLang --tp-size 8 --enable-dp-attention at --dp 1 keeps attention TP 8; a trtllm-bench EP row
    stays attention DP."""
    import corpus_predict as cp
    from corpus_schema import load_corpus

    rows = {r.id: r for r, _g, _s in load_corpus()}
    for rid, layout in (("gpustack-qwen3-235b-h100-vllm-tp8-ep-fp8-sharegpt", (8, 1, 8)),
                        ("gpustack-qwen3-235b-h100-vllm-tp4-ep-fp8-sharegpt", (4, 1, 4)),
                        ("gpustack-dsr1-h200-sglang-tp8-dpattn-fp8-sharegpt", (8, 1, 1)),
                        ("trtllm-po-v1.0-qwen3-235b-a22b-h200-tp8-fp8-128-4096", (1, 1, 8))):  # tp 8, ep 8
        row = rows[rid]
        assert cp.serving_layout(row, cp.knobs(row)) == layout


def test_mxfp4_on_hopper_is_weight_only() -> None:
    """vLLM's mxfp4 MoE on SM90 (vllm/model_executor/layers/quantization/mxfp4.py get_mxfp4_backend: FlashInfer
    MXFP4 x BF16 behind an env flag, else triton_kernels matmul_ogs, else Marlin) multiplies bf16 activations by
    dequantised 4-bit weights: the H100 has no fp4 tensor peak, so the experts stream 4-bit and compute in bf16."""
    fmt = weight_format(load_model("gpt-oss-120b"), H100, None)
    assert "fp4" not in H100.datasheet_peak_tflops
    assert fmt.compute_dtype == "bf16" and fmt.storage == {"experts": "int4"}


@pytest.mark.parametrize("requests", [None, 10, 300])
def test_max_load_prices_only_its_batch_and_agrees_with_the_whole_frontier(requests) -> None:  # noqa: ANN001
    """max_load_layout prices the one batch it runs, min(KV cap, max_num_seqs, requests); the layout serve's search
    (every power of two below it, then the sizing for ``requests`` users) picks at no target is that same batch with
    the same step times, so the shortcut changes no figure."""
    from calc.serving.plan import _layout, _max_load_replica

    m = load_model("llama3-8b")
    s = EngineSettings(engine="vllm", engine_version="0.11.0")
    fast = max_load_layout(m, H100, prompt=1000, output=200, tp=1, settings=s, requests=requests)
    setup, replica = _max_load_replica(m, H100, 1000, 200, 1, 1, "bf16", None, s, DEFAULT_ASSUMPTIONS, 1)
    slow = _layout(replica, setup.s, None, None, None, requests, 1, DEFAULT_ASSUMPTIONS)
    assert [p.batch for p in fast.frontier] == [fast.batch]
    assert len(slow.frontier) > 1
    for key in ("batch", "tpot_ms", "ttft_ms", "decode_tokens_per_s", "tokens_per_s", "kv_cache_tokens"):
        assert getattr(fast, key) == pytest.approx(getattr(slow, key), rel=1e-12), key
