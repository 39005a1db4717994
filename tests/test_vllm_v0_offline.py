"""vLLM V0 (0.5.4-0.6.x) offline accounting, read from the engine's own sources (vllm sdists 0.6.3.post1, 0.6.4,
0.6.5): the chunked-prefill step budget by version, fbgemm_fp8 GEMMs on fp8 tensor cores, offline batches in waves."""

import sys
from pathlib import Path

import pytest

from calc.serving.weights import weight_format
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from corpus_predict import wave_sizes  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "benchmarks/data/corpus/configs/llama-3.1-405b-instruct-fp8.json"
H100 = 85_520_809_984


def test_v0_chunked_step_budget_is_512_before_065():
    # vllm/config.py SchedulerConfig at 0.6.3.post1 / 0.6.4: chunked prefill on, none given -> 512 tokens;
    # max_model_len 91,680 > 32,768 switches chunking on (arg_utils.create_engine_config)
    s = EngineSettings(engine="vllm-v0", engine_version="0.6.3.post2.dev308", max_model_len=91_680)
    assert s.chunked(131_072)
    assert s.batched_tokens(131_072, H100, "h100-sxm", 8) == 512


def test_v0_chunked_step_budget_is_2048_from_065():
    # vllm/config.py SchedulerConfig.__post_init__ at 0.6.5: self.max_num_batched_tokens = 2048
    s = EngineSettings(engine="vllm-v0", engine_version="0.6.5", max_model_len=91_680)
    assert s.batched_tokens(131_072, H100, "h100-sxm", 8) == 2048


def test_v0_chunking_off_profiles_the_whole_context():
    # benchmark_throughput.py at 0.6.3 passes enable_chunked_prefill=False: max(max_model_len, 2048) = 91,680
    s = EngineSettings(engine="vllm-v0", engine_version="0.6.3", max_model_len=91_680, enable_chunked_prefill=False)
    assert s.batched_tokens(131_072, H100, "h100-sxm", 8) == 91_680


def test_fbgemm_fp8_multiplies_on_fp8_tensor_cores_from_sm89():
    # fbgemm_fp8.py: use_marlin = not has_device_capability(89); else apply_fp8_linear (cutlass W8A8)
    m = load_model(str(CONFIG))
    assert weight_format(m, load_gpu("h100"), None).compute_dtype == "fp8"
    assert weight_format(m, load_gpu("a100"), None).compute_dtype == "bf16"  # FP8 Marlin, weight-only


def test_waves_of_whole_requests():
    # 10 equal requests, room for 4 at their longest: 4, 4, then the remaining 2
    assert wave_sizes(10, 4) == [4, 4, 2]
    assert wave_sizes(8, 4) == [4, 4]
    assert wave_sizes(3, 4) == [3]


def _row(prompt: int, output: int, version: str = "0.6.3.post2.dev308", kind: str = "serving_e2e"):
    from types import SimpleNamespace
    return SimpleNamespace(kind=kind, stack=SimpleNamespace(name="vllm", version=version),
                           hardware=SimpleNamespace(num_gpus=8), dtype="fp8"), {
        "batch": 4, "prompt": prompt, "output": output, "tp": 8, "max_model_len": 91_680}


def test_v0_decodes_eager_past_max_seq_len_to_capture():
    # vllm/worker/model_runner.py (0.6.3) _use_captured_graph: max_decode_seq_len <= max_seq_len_to_capture (8192)
    from corpus_predict import v0_eager_context
    row, k = _row(32_784, 2_048)
    assert v0_eager_context(row, k) == 8192  # a 32,784-token prompt decodes at 32,784 > 8,192: eager
    row, k = _row(2_048, 2_048, version="0.8.0")  # V1: no such length test
    assert v0_eager_context(row, k) is None


def test_v0_eager_decode_rows_are_priced_eager(monkeypatch):
    # dstack's 8x H100 vLLM 0.6.3 rows: 32,784 + 2,048 tokens decode eager (calc.serving.eager: max(forward, kernels x
    # launch) + overhead); on 8 H100s a 405B decode step (~2,000 kernels x 5 us = ~10 ms of launches) is GPU-bound, so
    # the eager price equals the graph price; 2,048 + 2,048 = 4,096 <= 8,192 stays on CUDA graphs
    import corpus_predict
    from corpus_schema import load_corpus
    rows = {row.id: row for row, _, _ in load_corpus()}
    long_row = rows["dstack-405b-h100-metafp8-tp8-b4-32784-2048-e2e"]
    eager = corpus_predict.predict(long_row)
    monkeypatch.setattr(corpus_predict, "v0_eager_context", lambda row, k: None)
    assert eager == pytest.approx(corpus_predict.predict(long_row), rel=1e-12)
    assert corpus_predict.predict(rows["dstack-405b-h100-metafp8-tp8-b4-2048-2048-e2e"]) > 0
