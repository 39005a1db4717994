"""vLLM 0.5.2 (V0) sizes its profile run from one whole max_model_len prefill; auto-chunking above 32K came in
0.5.3 (vllm-project/vllm PR #6666: arg_utils.py "use_long_context" is in the 0.5.3 sdist, not in 0.5.2's).
Meta's Llama-3.1-405B-Instruct-FP8 (fbgemm_fp8) keeps attention, the first and last layers and lm_head in bf16:
weights per GPU at TP 8 worked out by hand below."""

from pathlib import Path

from calc.memory.weights import weights_per_gpu
from calc.sources.catalog import load_gpu, load_model
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


def test_v0_llama_forward_peak_by_release():
    # vllm/model_executor/models/llama.py, eager V0: the loop variable, the residual and the MLP input ([T, H] each)
    # are held through the MLP; LlamaMLP holds gate_up [T, 2I/t] through down_proj up to 0.6.3.post1 (vllm-project/vllm
    # PR #10339 rebinds it away from 0.6.4); fp8 W8A8 GEMMs write a 1-B copy of their input first.
    from calc.serving.engine_memory import vllm_v0_forward_bytes_per_token

    m = load_model(str(CONFIG))
    H, W = 16384, 53248 // 8
    held = 3 * H * 2  # 98,304
    # 0.6.3: down_proj with gate_up still alive: 98,304 + gate_up 26,624 + act 13,312 + fp8 act 6,656 + output 32,768
    assert held + 2 * W * 2 + W * 2 + W + H * 2 == 177_664
    assert vllm_v0_forward_bytes_per_token(m, 8, (0, 6, 3), True) == 177_664
    # 0.6.4: gate_up freed; down_proj 98,304 + 13,312 + 6,656 + 32,768 = 151,040 tops the gate_up GEMM
    # (98,304 + fp8 input 16,384 + 26,624 = 141,312) and SiluAndMul (98,304 + 39,936 = 138,240)
    assert vllm_v0_forward_bytes_per_token(m, 8, (0, 6, 4), True) == 151_040
    # Llama-3-8B bf16 on one GPU: 0.6.4 peaks at SiluAndMul, (3 x 4096 + 3 x 14336) x 2 = 110,592 B a token;
    # 0.6.3 at down_proj, (3 x 4096 + 2 x 14336 + 14336 + 4096) x 2 = 118,784
    small = load_model("llama3-8b")
    assert vllm_v0_forward_bytes_per_token(small, 1, (0, 6, 4), False) == 110_592
    assert vllm_v0_forward_bytes_per_token(small, 1, (0, 6, 3), False) == 118_784


def test_v0_whole_91680_token_profile_leaves_no_kv_room_on_h100():
    # The dstack H100 runs (vLLM 0.6.3.post2.dev308, --max-model-len 91680, 8 x H100 80GB, utilization 0.9) started,
    # so they cannot have profiled a whole 91,680-token prefill: that forward peaks at 91,680 x 177,664 =
    # 16,288,235,520 B (15.17 GiB), and 56.7 GiB of weights + 15.17 GiB exceed 0.9 x the card before any non-torch
    # memory. Chunked (512 tokens), the sampling phase is the peak: 512 x 16384 x 2 + 256 x 128,256 x 38 B (V0 >= 0.6.2
    # top-k/top-p sort of fp32 logits) = 16,777,216 + 1,247,674,368 = 1,264,451,584 B.
    from calc.serving.engine_memory import engine_memory

    m, g = load_model(str(CONFIG)), load_gpu("h100-sxm")
    whole = EngineSettings(engine="vllm-v0", engine_version="0.6.3.post2.dev308", max_model_len=91_680,
                           enable_chunked_prefill=False)
    mem = engine_memory(m, g, settings=whole, tp=8, dtype=None)
    assert mem.activation_peak_bytes == 16_288_235_520
    assert mem.weights_bytes + mem.activation_peak_bytes > mem.usable_bytes
    assert mem.kv_cache_tokens == 0
    chunked = engine_memory(m, g, settings=whole.model_copy(update={"enable_chunked_prefill": None}), tp=8, dtype=None)
    assert chunked.batched_tokens == 512 and chunked.activation_peak_bytes == 1_264_451_584
    assert chunked.kv_cache_tokens > 91_680  # the engine admitted --max-model-len 91680 (raise_if_cache_size_invalid)
