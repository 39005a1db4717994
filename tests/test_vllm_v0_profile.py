"""vLLM 0.5.2 (V0) sizes its profile run from one whole max_model_len prefill; auto-chunking above 32K came in
0.5.3 (vllm-project/vllm PR #6666: arg_utils.py "use_long_context" is in the 0.5.3 sdist, not in 0.5.2's).
Meta's Llama-3.1-405B-Instruct-FP8 (fbgemm_fp8) keeps attention, the first and last layers and lm_head in bf16:
weights per GPU at TP 8 worked out by hand below."""

from pathlib import Path

from calc.memory.weights import weights_per_gpu
from calc.sources.catalog import load_model
from calc.specs.serving import EngineSettings

CONFIG = Path(__file__).resolve().parents[1] / "benchmarks/data/corpus/configs/llama-3.1-405b-instruct-fp8.json"


def test_vllm_052_profiles_whole_context_053_chunks():
    old = EngineSettings(engine="vllm-v0", engine_version="0.5.2", max_model_len=131072)
    new = EngineSettings(engine="vllm-v0", engine_version="0.5.3", max_model_len=131072)
    assert not old.chunked(131072) and old.batched_tokens(131072, 80 * 2**30) == 131072  # max(max_model_len, 2048)
    # vllm/config.py SchedulerConfig at 0.5.3 (sdist): chunked prefill on, none given -> max_num_batched_tokens = 512
    assert new.chunked(131072) and new.batched_tokens(131072, 80 * 2**30) == 512
    # a 32K context (not above 32768) keeps whole prompts in 0.5.3 too
    assert not new.model_copy(update={"max_model_len": 32768}).chunked(131072)


def test_405b_fp8_weights_per_gpu_tp8():
    H, inter, V, L = 16384, 53248, 128256, 126
    attn = H * H * 2 + 2 * H * 1024  # q, o + k, v (8 KV heads x 128)
    mlp = 3 * H * inter
    fp8_mlp = mlp + 4 * (2 * inter + H) + 3 * 4  # 1 B/weight + fp32 row scales + input_scale_ub per matrix
    total = L * attn * 2 + 2 * mlp * 2 + (L - 2) * fp8_mlp + 2 * V * H * 2 + (2 * L + 1) * H * 2
    got = weights_per_gpu(load_model(str(CONFIG)), None, tp=8)
    assert abs(got - total / 8) < 1e6
    assert 56.6 < got / 2**30 < 56.8  # vs 57.75 GiB logged in vllm-project/vllm issue #6746; all-fp8 would be ~47.3
