"""vLLM's KV budget by release (issue 24): which non-torch memory counts, the profile sampler's bytes per logit,
the V1 >= 0.20 CUDA-graph estimate, and the profile peak as the larger of its two phases. Expected numbers are
worked by hand from the release sources (calc.serving.engine_memory comments) or are a startup log's own figures."""

from __future__ import annotations

import pytest

from calc.serving.assumptions import ServingAssumptions
from calc.serving.engine_memory import engine_memory, sampler_logit_bytes, sampler_scratch_bytes
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings

GIB = 2**30
CONTEXT_MINUS_WORKSPACES = 536_870_912 - 107_374_182  # int(0.5 GiB) - int(0.1 GiB) = 429,496,730 B


def _budget(version: str, engine: str = "vllm", **kw) -> int:
    s = EngineSettings(engine=engine, engine_version=version, max_model_len=4096)
    return engine_memory(load_model("llama3-8b"), load_gpu("h100"), settings=s, **kw).kv_budget_bytes


def test_cuda_context_counts_only_where_the_release_measures_it() -> None:
    # V1 0.9.0 adds every non-torch byte on the device (total - free - torch allocated); 0.9.1 measures the increase
    # over a snapshot taken once the context exists (PR #19312). Same defaults otherwise (8192 / 1024 on an H100,
    # the native sampler): the budgets differ by 0.5 GiB of context less the 0.1 GiB of workspaces still counted.
    assert _budget("0.9.1") - _budget("0.9.0") == CONTEXT_MINUS_WORKSPACES
    # V0: 0.6.3 reads its initial free memory after the context exists; 0.6.4.x counts total - free - torch
    # allocated; 0.6.5 a baseline snapshot again. A 4096-token context profiles 4096 whole tokens in all three and
    # 0.6.3 / 0.6.4 / 0.6.5 all upcast the logits before the top-k/top-p sort (32 B per logit).
    assert _budget("0.6.3", "vllm-v0") - _budget("0.6.4", "vllm-v0") == CONTEXT_MINUS_WORKSPACES
    assert _budget("0.6.5", "vllm-v0") - _budget("0.6.4", "vllm-v0") == CONTEXT_MINUS_WORKSPACES


def test_cuda_graph_estimate_from_0_20() -> None:
    # VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 0 in 0.19.1 and 1 in 0.20.0: the 0.5 GiB estimate comes
    # off the budget; nothing else differs between the two releases here (both run the native sampler).
    assert _budget("0.19.1") - _budget("0.20.0") == 536_870_912
    lower = _budget("0.20.0", assumptions=ServingAssumptions(cuda_graph_gib=0.25))
    assert lower - _budget("0.20.0") == 536_870_912 - 268_435_456


def test_sampler_path_by_release() -> None:
    # Llama-3-8B on an H100 (132 SMs; 1024 rows of 128,256 logits; hidden states 8192 x 4096 x 2 = 67,108,864 B):
    #   0.16 (PyTorch-native sort, 38 B): 67,108,864 + 1024 x 128,256 x 38 = 5,057,806,336 B
    #   0.17 - 0.20 (forward_native masks >= 8 rows with the Triton kernel, PR #33538: bf16 logits 2 + fp32 4 + softmax
    #     4 + exponential noise 4 = 14 B, + its buffer min(next_pow2(min(132, 1024)), 132) = 132 rows x 128,256 x 4 B
    #     = 67,719,168 B): 67,108,864 + 1,838,678,016 + 67,719,168 = 1,973,506,048 B
    #   0.21 (FlashInfer, 14 B, no Triton buffer): 67,108,864 + 1024 x 128,256 x 14 = 1,905,786,880 B
    # all above the forward of 8192 tokens, 8192 x (3 x 4096 + 3 x 14336) x 2 = 905,969,664 B.
    m, gpu = load_model("llama3-8b"), load_gpu("h100")

    def peak(version: str, **kw) -> int:
        return engine_memory(m, gpu, settings=EngineSettings(engine_version=version, max_model_len=4096),
                             **kw).activation_peak_bytes

    assert peak("0.16.0") == 5_057_806_336
    assert peak("0.17.0") == peak("0.20.0") == 1_973_506_048
    assert peak("0.21.0") == 1_905_786_880
    # VLLM_USE_FLASHINFER_SAMPLER=1 on 0.19 skips the Triton masking (forward_cuda -> flashinfer_sample)
    assert peak("0.19.0", assumptions=ServingAssumptions(vllm_flashinfer_sampler=True)) == 1_905_786_880
    # a 0.11 Docker image has FlashInfer installed: the assumption switches the path (0.10.2+ kernel: 14 B)
    assert peak("0.11.0", assumptions=ServingAssumptions(vllm_flashinfer_sampler=True)) == 1_905_786_880


def test_qwen3_14b_profile_peak_drops_at_0_17() -> None:
    # Qwen3-14B on one H100 at max_model_len 8192 (defaults 8192 batched tokens, 1024 sequences; H 5120, V 151,936):
    #   hidden states 8192 x 5120 x 2 = 83,886,080 B; 1024 x 151,936 = 155,582,464 logits
    #   0.16: 83,886,080 + 155,582,464 x 38 = 5,996,019,712 B (5.58 GiB)
    #   0.17: 83,886,080 + 155,582,464 x 14 + 132 x 151,936 x 4 = 83,886,080 + 2,178,154,496 + 80,222,208
    #         = 2,342,262,784 B (2.18 GiB)
    # above the forward, 8192 x (3 x 5120 + 3 x 17408) x 2 = 1,107,296,256 B. (The llm-d-planner version sweep logs
    # 5.64 and 2.23 GiB of activation peak for these two releases.)
    m, gpu = load_model("qwen3-14b"), load_gpu("h100")
    old, new = (engine_memory(m, gpu, settings=EngineSettings(engine_version=v, max_model_len=8192))
                for v in ("0.16.0", "0.17.0"))
    assert old.activation_peak_bytes == 5_996_019_712
    assert new.activation_peak_bytes == 2_342_262_784
    assert new.kv_budget_bytes - old.kv_budget_bytes == 5_996_019_712 - 2_342_262_784


def test_triton_buffer_and_small_batches() -> None:
    # topk_topp_triton.py apply_top_k_top_p_triton: buffer rows = min(next_power_of_2(min(SMs, rows)), SMs)
    # (132 SMs: 100 rows -> 128, 200 rows -> 132, 8 rows -> 8); apply_top_k_top_p sorts below 8 rows.
    a, v = ServingAssumptions(), 1000
    assert sampler_scratch_bytes("vllm-v1", (0, 17), a, 100, v, 132) == 128 * 1000 * 4
    assert sampler_scratch_bytes("vllm-v1", (0, 17), a, 200, v, 132) == 132 * 1000 * 4
    assert sampler_scratch_bytes("vllm-v1", (0, 17), a, 8, v, 132) == 8 * 1000 * 4
    assert sampler_scratch_bytes("vllm-v1", (0, 17), a, 7, v, 132) == 0
    assert sampler_scratch_bytes("vllm-v1", (0, 16), a, 200, v, 132) == 0
    assert sampler_logit_bytes("vllm-v1", (0, 17), a, 7) == 38
    assert sampler_logit_bytes("vllm-v1", (0, 17), a, 8) == 14
    assert sampler_logit_bytes("vllm-v1", (0, 16, 0), a, 8) == 38


def test_llmd_llama3_8b_log_arithmetic() -> None:
    # llm-d/llm-d-benchmark config_explorer/empirical-vllm-memory-results.md: Llama-3.1-8B-Instruct, one H100 read as
    # 79.18 GiB, gpu_memory_utilization 0.9: "Available KV cache memory: 51.38 GiB" = 0.9 x 79.18 - 14.99 weights -
    # 4.76 activation peak - 0.13 non-torch. Ours: 8,030,261,248 x 2 B = 14.96 GiB of weights, a sampling phase of
    # 8192 x 4096 x 2 + 1024 x 128,256 x 38 = 5,057,806,336 B = 4.71 GiB, 0.1 GiB non-torch: 0.03 + 0.05 + 0.03
    # = 0.11 GiB more KV memory than the log.
    s = EngineSettings(max_model_len=16000, block_size=128)
    mem = engine_memory(load_model("llama3.1-8b"), load_gpu("h100"), settings=s, capacity_bytes=int(79.18 * GIB))
    assert mem.activation_peak_bytes == 5_057_806_336
    assert mem.activation_peak_bytes / GIB == pytest.approx(4.76, abs=0.06)
    assert mem.kv_budget_bytes / GIB == pytest.approx(51.38 + 0.11, abs=0.01)


def test_v0_profile_peak_is_the_forward_of_a_long_prompt() -> None:
    # vllm-project/vllm issue #10517 (V0 ~0.6.4, RTX 3090, Llama-3.1-8B, max_model_len 20000): "peak_torch_memory=
    # 17.06GiB" after "Loading model weights took 14.9888 GB" -> a 2.07 GiB activation peak. The profile runs 20000
    # whole tokens: forward 20000 x (3 x 4096 + 3 x 14336) x 2 = 2,211,840,000 B (2.06 GiB); the sampling phase
    # 20000 x 4096 x 2 + 256 x 128,256 x 32 = 1,214,513,152 B comes after it and is smaller, so they do not add.
    s = EngineSettings(engine="vllm-v0", engine_version="0.6.4", max_model_len=20000)
    mem = engine_memory(load_model("llama3-8b"), load_gpu("rtx3090"), settings=s, capacity_bytes=int(23.58 * GIB))
    assert mem.activation_peak_bytes == 2_211_840_000
    assert mem.activation_peak_bytes / GIB == pytest.approx(2.07, abs=0.02)
