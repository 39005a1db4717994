"""Engine step time and layouts: hand-worked decode steps, TP across nodes, sliding windows, the serve plan."""

from __future__ import annotations

import pytest

from calc.hardware.efficiency import GEMM_PLATEAU
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS
from calc.serving.engine_memory import engine_memory
from calc.serving.latency import latency
from calc.serving.plan import serve_plan
from calc.serving.step import step_time, wave_efficiency
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings

# the per-step overhead every step adds: an input (fitted by benchmarks/fit_corpus.py, calc/data/fitted_defaults.json),
# not part of the arithmetic these tests work by hand
OVERHEAD_MS = DEFAULT_ASSUMPTIONS.step_overhead_s * 1e3

# Llama-2-7B on one A100-80GB, fp16, by calc.hardware.efficiency's defaults: Ampere GEMM plateau e (0.71),
# HBM 0.9 x 2.039 TB/s = 1.8351e12 B/s, 4 us per GEMM launch; flash attention 0.58 of 312 TFLOPS.
# Every weight GEMM at M <= 128 rows is padded to one 128-row tile (q = M/128), so its compute time per
# weight element is 2 x 128 / (312e12 x 0.71) = 1.1557e-12 s, just above streaming it (2 / 1.8351e12 =
# 1.0899e-12 s): 6,607,077,376 matmul weights -> 7.6356 ms, plus 129 GEMM launches (32 layers x qkv, o,
# gate_up, down + the head) = 0.516 ms, plus the per-step overhead (the fitted vLLM default, OVERHEAD_MS).
PLATEAU = GEMM_PLATEAU["Ampere"]
GEMMS_MS = 6_607_077_376 * 2 * 128 / (312e12 * PLATEAU) * 1e3 + 129 * 4e-3
BANDWIDTH = 2.039e12 * 0.9


def test_decode_step_batch_1() -> None:
    # context 512 + 1: KV read 513 x 524,288 B / 1.8351e12 = 0.1466 ms (its attention FLOPs take 1.5 us)
    r = latency(load_model("llama2-7b"), load_gpu("a100"), batch=1, prompt=512, output=1, dtype="fp16")
    assert GEMMS_MS == pytest.approx(8.1516 if PLATEAU == 0.71 else GEMMS_MS, abs=1e-3)
    assert r.tpot_s * 1e3 == pytest.approx(GEMMS_MS + 513 * 524_288 / BANDWIDTH * 1e3 + OVERHEAD_MS, rel=1e-3)


def _gemm_ms(m_rows: int, k: int, n: int) -> float:
    """One fp16 GEMM [M, K] @ [K, N] on the A100: max(one 128-row tile of compute, weights + activations in and out
    streamed) + the 4 us launch (calc.hardware.efficiency.gemm_time)."""
    compute = 2 * 128 * k * n / (312e12 * PLATEAU)
    memory = (m_rows * k + k * n + m_rows * n) * 2 / BANDWIDTH
    return (max(compute, memory) + 4e-6) * 1e3


def test_decode_step_batch_64() -> None:
    # 64 sequences at the mean context 128 + 64 = 192. Llama-2-7B's GEMMs per layer (vLLM fused): qkv 4096 x 12288,
    # o 4096 x 4096, gate_up 4096 x 22016, down 11008 x 4096, and the head 4096 x 32000; at 64 rows the activations
    # streamed in and out add 64 (K + N) x 2 B to each. KV read 64 x 192 x 524,288 B = 6,442,450,944 B -> 3.5107 ms
    # (attention FLOPs 0.036 ms hide under it); plus the per-step overhead.
    gemms = 32 * sum(_gemm_ms(64, k, n) for k, n in ((4096, 12288), (4096, 4096), (4096, 22016), (11008, 4096))) \
        + _gemm_ms(64, 4096, 32000)
    r = latency(load_model("llama2-7b"), load_gpu("a100"), batch=64, prompt=128, output=128, dtype="fp16")
    assert r.tpot_s * 1e3 == pytest.approx(gemms + 6_442_450_944 / BANDWIDTH * 1e3 + OVERHEAD_MS, rel=1e-3)
    assert r.decode_tokens_per_s == pytest.approx(64 / r.tpot_s)
    assert r.tokens_per_s == pytest.approx(64 * 128 / (r.ttft_s + 127 * r.tpot_s))  # prefill included: B O / e2e


def test_wave_quantisation() -> None:
    # H100: 132 SMs. M = 256, N = 2048: 2 x 16 = 32 tiles, K = 8192 allows 8-way split-K but 5 fill the
    # SMs (ceil(132/32)): 160 CTAs -> 2 waves of 132 -> 160/264 = 0.606. M < 128 rows: GEMV, 1.
    h100 = load_gpu("h100")
    assert wave_efficiency(h100, 256, 2048, 8192) == pytest.approx(160 / 264)
    assert wave_efficiency(h100, 64, 2048, 8192) == 1.0


def test_tp_across_nodes_is_slower() -> None:
    # Llama-3-70B decode, 64 sequences: TP 16 spans two DGX H100 nodes, so its 160 all-reduces run over
    # the 50 GB/s NIC with 10 us steps instead of NVLink; TP 8 inside one node is faster per step.
    m, h100 = load_model("llama3-70b"), load_gpu("h100")
    inside = step_time(m, h100, DEFAULT_ASSUMPTIONS, tp=8, decode_seqs=64, decode_context=2000)
    across = step_time(m, h100, DEFAULT_ASSUMPTIONS, tp=16, decode_seqs=64, decode_context=2000)
    assert across.comm_s > inside.comm_s and across.total_s > inside.total_s
    plan = serve_plan(m, h100, prompt=2000, output=300, tpot_ms=40)
    best_per_tp = {x.tp: x.tokens_per_s_per_gpu for x in plan.layouts if x.pp == 1}
    assert best_per_tp[16] < best_per_tp[8]
    assert all(x.tp_spans_nodes == (x.tp > 8) for x in plan.layouts)


def test_sliding_window_admits_more_requests() -> None:
    # Mistral-7B shapes, 32K requests: every layer full vs every layer a 4096-token window: a request's
    # KV is 8x smaller, so about 8x the requests fit in the same KV budget.
    shipped = load_model("mistral-7b")  # v0.1: every layer a 4096-token window
    full = shipped.model_copy(update={"layer_types": None, "sliding_window": None})
    windowed = full.model_copy(update={"layer_types": ["sliding"] * full.num_layers, "sliding_window": 4096})
    s = EngineSettings(max_model_len=32768)
    a = engine_memory(full, load_gpu("h100"), settings=s, tokens_per_request=32768)
    b = engine_memory(windowed, load_gpu("h100"), settings=s, tokens_per_request=32768)
    assert a.kv_budget_bytes == b.kv_budget_bytes
    assert b.kv_bytes_per_request * 8 == a.kv_bytes_per_request
    assert b.max_concurrency >= 8 * a.max_concurrency > 0


def test_serve_plan_sizes_for_the_rate() -> None:
    m, h100 = load_model("llama3-70b"), load_gpu("h100")
    plan = serve_plan(m, h100, prompt=2000, output=300, ttft_ms=1000, tpot_ms=40, rate=20)
    best = plan.best
    assert best is not None and plan.gpus_needed == best.gpus_needed == best.replicas * best.tp * best.pp
    assert best.tpot_ms <= 40 and best.ttft_ms <= 1000
    # the replicas carry the rate: replicas x requests/s each >= 20
    assert best.replicas * best.requests_per_s_per_replica >= 20
    # ranked for a rate: meeting layouts first, by fewest GPUs, then tokens/s per GPU
    meets = [(x.gpus_needed, -x.tokens_per_s_per_gpu) for x in plan.layouts if x.meets_targets]
    assert meets == sorted(meets)
    # twice the rate needs at least as many GPUs; a tighter TPOT target cannot raise tokens/s/GPU
    assert serve_plan(m, h100, prompt=2000, output=300, ttft_ms=1000, tpot_ms=40, rate=40).gpus_needed >= plan.gpus_needed
    tight = serve_plan(m, h100, prompt=2000, output=300, ttft_ms=1000, tpot_ms=25, rate=20)
    assert tight.best is None or tight.best.tokens_per_s_per_gpu <= best.tokens_per_s_per_gpu


def test_expert_parallel_layout_memory_and_plan() -> None:
    # Mixtral-8x7B, data-parallel attention + EP 2: each rank holds everything but the routed experts
    # (attention 1,342,177,280 + router 1,048,576 + norms 266,240 + embedding and head 2 x 131,072,000)
    # and half of the experts' 45,097,156,608: 24,154,214,400 params x 2 B = 48,308,428,800 B.
    from calc.memory.weights import weights_per_gpu

    m = load_model("mixtral-8x7b")
    assert weights_per_gpu(m, "bf16", 1, 1, ep=2) == 48_308_428_800
    plan = serve_plan(m, load_gpu("h100"), prompt=1000, output=200, tpot_ms=30, emit="vllm")
    ep = [x for x in plan.layouts if x.ep > 1]
    # EP = DP x TP: every EP layout's replica is its EP group, TP dividing it; TP x EP mixes are searched too
    assert ep and all(x.gpus_per_replica == x.ep and x.ep % x.tp == 0 for x in ep)
    assert {x.tp for x in ep} >= {1, 2}
    if plan.best and plan.best.ep > 1:
        assert "--enable-expert-parallel" in plan.launch


def test_speculative_decoding() -> None:
    # Leviathan et al. 2023 eq. 1: a = 0.7, k = 4 -> E = (1 - 0.7^5) / 0.3 = 2.7731 tokens per verification step
    from calc.serving.speculative import Speculation

    spec = Speculation(method="ngram")
    assert spec.expected_tokens == pytest.approx(2.7731, abs=1e-4)
    m, h100 = load_model("llama3-70b"), load_gpu("h100")
    plain = serve_plan(m, h100, prompt=2000, output=300, num_gpus=4)
    ngram = serve_plan(m, h100, prompt=2000, output=300, num_gpus=4, speculation=spec)
    draft = serve_plan(m, h100, prompt=2000, output=300, num_gpus=4,
                       speculation=Speculation(method="draft", draft=load_model("llama3-8b")))

    def batch1(plan):  # noqa: ANN001, ANN202
        return next(x for x in plan.layouts if x.name == "TP4 x PP1").frontier[0].tpot_ms

    # at batch 1 decode is weight streaming: verifying 5 tokens costs about one step, so TPOT falls ~E-fold;
    # a draft model adds 4 of its own steps
    assert batch1(plain) / batch1(ngram) > 2
    assert batch1(ngram) < batch1(draft) < batch1(plain)
    assert any("speculative decoding" in line for line in ngram.assumptions)


def test_disaggregated_pools() -> None:
    # Decode-only replicas carry no prefill chunks, so at the same batch their step is shorter; the prefill pool's
    # GPUs count in gpus_needed; TTFT = prefill + KV transfer (+ queue) with 2000 x 81,920 B per rank of KV.
    from calc.serving.disagg import kv_transfer_seconds

    m, h100 = load_model("llama3-70b"), load_gpu("h100")
    plan = serve_plan(m, h100, prompt=2000, output=300, ttft_ms=1000, tpot_ms=40, rate=20, disaggregated=True)
    pools = [x for x in plan.layouts if x.prefill_gpus]
    assert pools and all(x.gpus_needed == x.replicas * x.tp + x.prefill_gpus for x in pools)
    pooled = next(x for x in pools if x.tp == 4)
    colocated = next(x for x in plan.layouts if x.name == "TP4 x PP1")
    assert pooled.batch > colocated.batch  # no prefill interference: more sequences fit under the TPOT target
    mem = engine_memory(m, h100, settings=EngineSettings(max_model_len=8192), tp=4, tokens_per_request=2300)
    assert mem.kv_bytes_per_token == 80 * 2 * 2 * 128 * 2  # 80 layers x K,V x (8 KV heads / TP 4) x 128 x 2 B = 81,920

    class R:  # the two fields kv_transfer_seconds reads, besides the node
        p, gpu, a = 2000, h100, DEFAULT_ASSUMPTIONS
    # DGX H100: 50 GB/s per GPU NIC, 10 us: 2000 x 81,920 B / 50e9 + 1e-5 = 3.2868 ms
    assert kv_transfer_seconds(R, mem) == pytest.approx(2000 * 81_920 / 50e9 + 1e-5)
