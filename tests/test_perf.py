"""The four review questions of reference section 8, re-derived by hand, asserted to 0.1%."""

from __future__ import annotations

import pytest

from calc.serving.capacity import concurrency
from calc.serving.latency import latency
from calc.sources.catalog import load_gpu, load_model
from calc.training.mfu import mfu, train_time

REL = 1e-3


def test_q1_llama3_70b_mfu() -> None:
    # 6N: 6 x 70,553,706,496 x 15e12 = 6.34983e24 FLOPs; 6.4e6 GPU-h x 3600 x 989.4e12 = 2.27958e25
    # -> 27.855%. With attention at S = 8192 (full score matrix): matmul weights M = 69,501,714,432,
    # forward/token = 2M + 80*2*64*256*8192 = 160,478,265,344; x3 = 481,434,796,032 -> 31.679%.
    r = mfu(load_model("llama3-70b"), load_gpu("h100"), seq=8192, tokens=15e12, gpu_hours=6.4e6)
    assert r.mfu_6n == pytest.approx(0.278553, rel=REL)
    assert r.mfu == r.mfu_with_attention == pytest.approx(0.316792, rel=REL)


def test_llama2_paper_gpu_hours_to_mfu() -> None:
    # 7B: 6 x 6,738,415,616 x 2e12 / (184,320 x 3600 x 312e12) = 39.058%.
    # 70B: 6 x 68,976,648,192 x 2e12 / (1,720,320 x 3600 x 312e12) = 42.837%.
    a100 = load_gpu("a100-80g")
    assert mfu(load_model("llama2-7b"), a100, seq=4096, tokens=2e12, gpu_hours=184_320).mfu_6n == pytest.approx(0.390580, rel=REL)
    assert mfu(load_model("llama2-70b"), a100, seq=4096, tokens=2e12, gpu_hours=1_720_320).mfu_6n == pytest.approx(
        0.428367, rel=REL)


def test_mfu_from_tokens_per_s_and_step_time_agree() -> None:
    # 1M tokens/s on 1024 H100 vs 256 sequences x 4096 tokens every 1.048576 s: the same rate.
    m, g = load_model("llama2-7b"), load_gpu("h100")
    a = mfu(m, g, num_gpus=1024, seq=4096, tokens_per_s=1e6)
    b = mfu(m, g, num_gpus=1024, seq=4096, step_time_s=1.048576, global_batch=256)
    assert a.mfu == pytest.approx(b.mfu, rel=1e-12)
    # 1e6 / 1024 tokens/s/GPU x 40,430,493,696 (6N) / 989.4e12 = 3.9906%
    assert a.mfu_6n == pytest.approx(0.039906, rel=REL)


def test_q2_llama2_7b_flops_per_token() -> None:
    from calc.model.flops import forward_flops

    f = forward_flops(load_model("llama2-7b"), 1, 1)
    assert f.approx_2n == 13_476_831_232 and f.approx_6n == 40_430_493_696


def test_q3_prefill_16x4000_on_8_a800() -> None:
    # FLOPs: 2 x 16 x 4000 x (68,713,185,280 - head 262,144,000) = 8.76173e15, the head only for the 16
    # sampled rows (engines compute logits of the last positions): 2 x 16 x 262,144,000 = 8.39e9, plus
    # causal attention (the default, as engines run it: P(P+1)/2 query-key pairs per sequence)
    # 80*2*16*64*256*4000*4001/2 = 3.35628e14 -> 9.09737e15; / (8 x 312e12) = 3.6448 s at 100% of peak.
    # Non-causal (every token sees all 4000 keys): 80*2*16*64*256*4000^2 = 6.71089e14 -> 3.7792 s.
    a800, llama = load_gpu("a800"), load_model("llama2-70b")
    r = latency(llama, a800, num_gpus=8, batch=16, prompt=4000, output=1, target_ttft_s=0.7)
    assert r.ttft_at_full_peak_s == pytest.approx(3.6448, rel=REL)
    full = latency(llama, a800, num_gpus=8, batch=16, prompt=4000, output=1, causal=False)
    assert full.ttft_at_full_peak_s == pytest.approx(3.7792, rel=REL)
    assert r.prefill_bound == "compute"
    assert "not reachable" in r.verdict


def test_decode_is_memory_bound() -> None:
    # One decode step of Llama-2-7B at batch 1 streams its matmul weights, 2 x 6,607,077,376 B (the embedding
    # table is gathered, not read), plus 513 tokens of KV x 524,288 B: 13,483,114,496 B at 3.35 TB/s x 0.9.
    # At batch 1 that 4.47 ms may sit under the engine's fixed per-step overhead (a fitted input): the step is then
    # overhead-bound, else memory-bound; never compute-bound.
    from calc.serving.assumptions import DEFAULT_ASSUMPTIONS

    r = latency(load_model("llama2-7b"), load_gpu("h100"), batch=1, prompt=512, output=1)
    memory_s = (2 * 6_607_077_376 + 524_288 * 513) / (3.35e12 * 0.9)
    assert r.decode_bound == ("memory" if memory_s > DEFAULT_ASSUMPTIONS.step_overhead_s else "overhead")
    assert r.decode_memory_s == pytest.approx(memory_s, rel=REL)


def test_concurrency_zero_is_a_verdict() -> None:
    r = concurrency(load_model("llama2-70b"), load_gpu("a800"), num_gpus=1, max_tokens=4000)
    assert r.max_concurrency == 0 and r.shortfall_bytes > 0
    assert "needs >= 2 GPUs" in r.verdict


def test_train_time_llama2_7b() -> None:
    # 2T tokens x 3 x (2 x 6,607,077,376 + 32*2*32*256*4096) = 9.21698e22 FLOPs;
    # / (2048 x 312e12 x 0.4) = 360,615 s = 4.1738 days; GPU-hours = 205,150; at $2/h = $410,300.
    r = train_time(load_model("llama2-7b"), load_gpu("a100-80g"), num_gpus=2048, tokens=2e12, seq=4096,
                   mfu_assumed=0.4, price_per_gpu_hour=2.0)
    assert r.days == pytest.approx(4.1738, rel=REL)
    assert r.gpu_hours == pytest.approx(205_150, rel=REL)
    assert r.cost == pytest.approx(410_300, rel=REL)
