"""TensorRT-LLM's own memory accounting (calc.serving.trtllm_memory): numbers worked by hand from the engine's
sources (tensorrt_llm/_torch/pyexecutor/_util.py KvCacheCreator, tensorrt_llm/bench/build/tuning.py,
bench/benchmark/utils/general.py, tensorrt_llm/_torch/model_config.py moe_max_num_tokens)."""

from __future__ import annotations

import pytest

from calc.serving.capacity import concurrency
from calc.serving.engine_memory import engine_memory
from calc.serving.plan import serve_plan
from calc.serving.trtllm_memory import (
    bench_engine_settings,
    bench_finetune,
    dummy_requests,
    moe_gathered_bytes,
    trtllm_backend,
)
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings


def test_flow_by_release() -> None:
    # the LLM API's default backend is the PyTorch one from 1.0; v0.17 built TensorRT engines
    assert trtllm_backend((1, 0)) == "pytorch" and trtllm_backend((1, 2)) == "pytorch"
    assert trtllm_backend((0, 17)) == "tensorrt"


@pytest.mark.parametrize(("requests", "isl", "osl", "expected"), [
    (489.04, 128, 2048, (512, 2048)),  # 128 x ceil(489.04 / 128) = 512; 519.6 tokens -> the 2048 floor
    (100.0, 128, 128, (128, 2048)),  # 32 x ceil(100 / 32) = 128; 200 tokens -> 2048
    (20.0, 128, 128, (64, 2048)),  # below 256: at least 64
    (1500.0, 1000, 1000, (1536, 3072)),  # 256 x ceil(1500 / 256) = 1536; 3000 tokens -> 256 x 12 = 3072
    (700.0, 5000, 500, (768, 8192)),  # 128 x 6 = 768; 700 x 11 = 7700 -> 512 x ceil(15.04) = 8192
    (9000.0, 2048, 128, (4096, 32768)),  # capped at 4096 requests; 4096 x 17 = 69,632 -> capped at 32768
])
def test_bench_finetune_by_hand(requests: float, isl: int, osl: int, expected: tuple[int, int]) -> None:
    assert bench_finetune(requests, isl, osl) == expected


def test_bench_settings_llama31_8b_h100() -> None:
    # trtllm-bench (1.0, PyTorch backend) for nvidia/Llama-3.1-8B-Instruct-FP8 on one H100 (NVML total 81559 MiB =
    # 85,520,809,984 B), --kv_cache_free_gpu_mem_fraction 0.9, fp8 KV:
    #   engine 8,030,261,248 params x 1 B; available 77,490,548,736 B x 0.9 = 69,741,493,862
    #   per token 2 x 32 layers x max(1, 8) heads x 128 x 1 B = 65,536 B
    #   128/2048: / (65,536 x 2176) = 489.04 requests -> (512, 2048); chunked prefill off: max(2048, 128 + 512) = 2048
    #   2048/128: the same 489.04 requests -> 512; 489.04 x 17 = 8313.7 tokens -> 1024 x 9 = 9216 (> 2048 + 512)
    m, gpu = load_model("llama3.1-8b"), load_gpu("h100")
    kw = {"tp": 1, "pp": 1, "weight_dtype": "fp8", "kv_dtype": "fp8", "fraction": 0.9}
    assert bench_engine_settings(m, gpu.memory_bytes, isl=128, osl=2048, **kw) == (512, 2048)
    assert bench_engine_settings(m, gpu.memory_bytes, isl=2048, osl=128, **kw) == (512, 9216)
    # 20000/2000: 69,741,493,862 / (65,536 x 22,000) = 48.37 requests -> 64; 48.37 x 11 = 532 -> 2048 tokens, then the
    # un-chunked PyTorch run needs the whole prompt: max(2048, 20000 + 64) = 20064; an engine build keeps 2048
    assert bench_engine_settings(m, gpu.memory_bytes, isl=20000, osl=2000, **kw) == (64, 20064)
    assert bench_engine_settings(m, gpu.memory_bytes, isl=20000, osl=2000, engine_build=True, **kw) == (64, 2048)


def test_dummy_requests_fill_max_num_tokens() -> None:
    # _create_dummy_context_requests: prompts of min(max_num_tokens, max_seq_len - 1) until max_num_tokens are filled
    assert dummy_requests(8192, 4096) == 3  # 4095 + 4095 + 2
    assert dummy_requests(8192, 131072) == 1
    assert dummy_requests(2048, 2) == 2048


def test_moe_gathered_rows_under_attention_dp() -> None:
    # Mixtral 8x7B (H 4096, top-2, I_e 14336), max_num_tokens 2048 on each of 8 attention-DP ranks:
    # rows 16,384 x (2 x 4096 + 2 x (2 x 4096 + 3 x 14336)) x 2 B = 16,384 x 110,592 x 2 = 3,623,878,656 B
    m = load_model("mixtral-8x7b")
    assert moe_gathered_bytes(m, 2048, 8) == 3_623_878_656
    assert moe_gathered_bytes(m, 2048, 1) == 0  # TP experts: the rank's own tokens, in the dense forward term
    assert moe_gathered_bytes(load_model("llama3-8b"), 2048, 8) == 0


def test_attention_dp_rank_memory() -> None:
    # Mixtral 8x7B FP8 on 8 x H100 with attention DP (TP 1 attention, EP 8), TRT-LLM 1.0 defaults (max_num_tokens
    # 8192, max_batch_size 2048): each rank holds the attention / embedding weights whole, 1/8 of the experts, the
    # full 8 KV heads, and warms up the MoE on 8 x 8192 gathered rows:
    #   65,536 x 110,592 x 2 = 14,495,514,624 + the residual stream 3 x 8192 x 4096 x 2 = 201,326,592
    #   = 14,696,841,216 B (above the rank's dense forward 8192 x (3 x 4096 + 2 x 14336 x 3) x 2 = 1,610,612,736)
    m, gpu = load_model("mixtral-8x7b"), load_gpu("h100")
    s = EngineSettings(engine="trtllm", max_model_len=4096)
    dp = engine_memory(m, gpu, settings=s, tp=1, ep=8, dtype="fp8")
    assert dp.activation_peak_bytes == 14_696_841_216
    assert dp.kv_bytes_per_token == 32 * 8 * 128 * 2 * 2  # the full KV heads on every attention rank (bf16 KV)
    tp8 = engine_memory(m, gpu, settings=s, tp=8, dtype="fp8")
    assert dp.weights_bytes > tp8.weights_bytes  # attention replicated on every DP rank, experts split 8 ways both


def test_concurrency_and_serve_share_the_accounting() -> None:
    # `concurrency --engine trtllm` and `serve --engine trtllm` size the same engine with one function
    m, gpu = load_model("llama3.1-8b"), load_gpu("h100")
    s = EngineSettings(engine="trtllm")
    c = concurrency(m, gpu, max_tokens=3000, settings=s, dtype="fp8")
    plan = serve_plan(m, gpu, prompt=1000, output=2000, settings=s, dtype="fp8", max_gpus=1)
    layout = next(x for x in plan.layouts if (x.tp, x.pp, x.ep) == (1, 1, 1))
    assert layout.kv_cache_tokens == c.kv_cache_tokens
    assert layout.max_concurrency == c.max_concurrency


def test_stored_elements_of_an_mxfp4_checkpoint_by_hand() -> None:
    # The Hub's parameter totals (benchmarks/data/checkpoints.json hub_totals): gpt-oss-20b 20,914,757,184 and
    # gpt-oss-120b 116,829,156,672. Their experts (gate_up 5760 x 2880 and down 2880 x 2880 per expert) ship as U8
    # *_blocks [E, out, 90, 16] and U8 *_scales [E, out, 90]: 5760 x 1440 + 5760 x 90 + 2880 x 1440 + 2880 x 90 =
    # 13,219,200 elements per expert for its 24,883,200 weights.
    #   20b:  24 layers x 32 experts:  20,914,757,184 - 768 x 24,883,200 + 768 x 13,219,200 = 11,956,805,184
    #   120b: 36 layers x 128 experts: 116,829,156,672 - 4,608 x 24,883,200 + 4,608 x 13,219,200 = 63,081,444,672
    from calc.memory.weights import stored_elements

    assert stored_elements(load_model("gpt-oss-20b")) == 11_956_805_184
    assert stored_elements(load_model("gpt-oss-120b")) == 63_081_444_672
    # one element per weight for a 16-bit checkpoint: the parameter count itself
    assert stored_elements(load_model("llama3.1-8b")) == 8_030_261_248


def test_bench_settings_gpt_oss_120b_h200_counts_packed_elements() -> None:
    # trtllm-bench reads param_count as the safetensors elements (dataclasses.py get_param_count) and MXFP4 is not in
    # tuning.py's BYTES_PER_ELEM (FP8, FP8_BLOCK_SCALES, NVFP4), so 2 B each: engine 63,081,444,672 x 2 =
    # 126,162,889,344 B. H200 NVML total 143,771 MiB = 150,754,820,096 B; available 24,591,930,752 x 0.9 =
    # 22,132,737,677; per token 2 x 36 layers x 8 heads x 64 x 2 B = 73,728, x 2,000 tokens = 147,456,000:
    # 150.1 requests -> 32 x ceil(150.1 / 32) = 160; 300 tokens -> the 2048 floor (> 1000 + 160).
    # (Its 116.8 B weights x 2 B = 233.7 GB would exceed the GPU: trtllm-bench would have refused the run.)
    m, gpu = load_model("gpt-oss-120b"), load_gpu("h200")
    assert gpu.memory_bytes == 150_754_820_096
    assert bench_engine_settings(m, gpu.memory_bytes, tp=1, pp=1, isl=1000, osl=1000, weight_dtype=None,
                                 kv_dtype="bf16", fraction=0.9) == (160, 2048)
