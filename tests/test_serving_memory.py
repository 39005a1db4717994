"""Engine memory (vLLM / SGLang accounting): blocks, tokens and concurrency from hand-worked numbers."""

from __future__ import annotations

import pytest

from calc.errors import LLMCalcError
from calc.serving.assumptions import ServingAssumptions
from calc.serving.capacity import concurrency
from calc.serving.engine_memory import engine_memory
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings

GIB = 2**30


def test_vllm_blocks_llama2_70b_tp2_a800() -> None:
    # A800: CUDA reports 81157 MiB (mem_get_info total; the A100-SXM4-80GB reading, nvidia-smi's 81920 less the
    # driver reserve) = 85,099,282,432 B; x 0.9 = int 76,589,354,188.
    # weights per rank: 68,976,648,192 params x 2 B / 2 = 68,976,648,192 B.
    # max_model_len = 4096 (model), no chunked prefill -> profile run of max(4096, 2048) = 4096 tokens, the larger of
    #   forward  4096 x 151,552 = 620,756,992 B (V0 "0.6" < 0.6.4: llama.py's MLP holds the gate+up output through
    #            down_proj: 3 held [T, H] + gate_up 2I/t + act I/t + down output H = (3 x 8192 + 2 x 14336 + 14336
    #            + 8192) x 2 = 151,552 B a token) and
    #   sampling 4096 x 8192 x 2 + 256 rows x 32000 x 30 B (V0 "0.6" < 0.6.2: 16-bit top-k/top-p sort, at the sort:
    #   2 + 2 + 8 + iota 8 + cub 2 + 8) = 67,108,864 + 245,760,000 = 312,868,864 B.
    # non-torch: V0 before 0.6.4 reads its initial free memory after the CUDA context exists, so only the
    #   0.1 GiB of workspaces, int(0.1 x 2^30) = 107,374,182 B, + the communication buffers of TP 2 on the HGX A800
    #   (NVSwitch, 8 NVLinks: 16 NCCL channels; Ampere: no NVLS; 2 ranks: ring 1 + tree 1 connections per channel):
    #   2 communicators x 16 x 2 x 12,582,912 B (a connection: LL 524,288 + LL128 4,915,200 + Simple 4,194,304 B of
    #   buffers, each side with its 4,096-B header rounded up to NCCL's CUDA_IPC_MIN 2 MiB: 6 + 6 MiB with the
    #   A800's P2P read) = 805,306,368 B + custom all-reduce 3 x 8 MiB = 25,165,824 B -> 937,846,374 B.
    # budget = 76,589,354,188 - 68,976,648,192 - 620,756,992 - 937,846,374 = 6,054,102,630 B.
    # KV/token/rank = 2 x 80 x (8/2) x 128 x 2 = 163,840 B; block of 16 = 2,621,440 B.
    # blocks = floor(6,054,102,630 / 2,621,440) = 2309; tokens 36,944; 4000-token requests take 250 blocks -> 9.
    v0 = EngineSettings(engine="vllm-v0")
    mem = engine_memory(load_model("llama2-70b"), load_gpu("a800"), settings=v0, tp=2, dtype="fp16", tokens_per_request=4000)
    assert mem.activation_peak_bytes == 620_756_992
    assert mem.kv_budget_bytes == 6_054_102_630
    assert mem.num_gpu_blocks == 2309 and mem.kv_cache_tokens == 36_944
    assert mem.max_concurrency == 9
    assert "# GPU blocks: 2309, # CPU blocks: 0" in mem.log
    # `concurrency` sets max_model_len = the request (4000): forward 4000 x 151,552 = 606,208,000 B;
    # budget 76,589,354,188 - 68,976,648,192 - 606,208,000 - 937,846,374 = 6,068,651,622 B / 2,621,440 = 2315.0
    # -> 2315 blocks = 37,040 tokens -> 9.
    r = concurrency(load_model("llama2-70b"), load_gpu("a800"), num_gpus=2, max_tokens=4000, settings=v0)
    assert r.num_gpu_blocks == 2315 and r.kv_cache_tokens == 37_040 and r.max_concurrency == 9
    assert r.kv_cache_bytes_per_request == 2 * 250 * 2_621_440


def test_utilization_and_block_size_change_the_answer() -> None:
    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    base = engine_memory(m, gpu, settings=EngineSettings(max_model_len=8192))
    lower = engine_memory(m, gpu, settings=EngineSettings(max_model_len=8192, gpu_memory_utilization=0.8))
    # 0.1 x 81105 MiB (the CUDA total) = 8,504,475,648 B less budget; / 131,072 B per token (32 x 8 x 128 x 2 x 2)
    # = 64,884 tokens
    assert base.kv_cache_tokens - lower.kv_cache_tokens == pytest.approx(64_884, abs=32)
    big_blocks = engine_memory(m, gpu, settings=EngineSettings(max_model_len=8192, block_size=32))
    assert big_blocks.kv_cache_tokens % 32 == 0 and big_blocks.kv_cache_tokens <= base.kv_cache_tokens


def test_chunked_prefill_shrinks_the_profile_run() -> None:
    # 131072-token context: vLLM V0 0.6.5 chunks prefill (2048-token steps; 512 before 0.6.5); forcing whole
    # prompts profiles 131072 tokens.
    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    chunked = engine_memory(m, gpu, settings=EngineSettings(engine="vllm-v0", engine_version="0.6.5", max_model_len=131072))
    whole = engine_memory(m, gpu, settings=EngineSettings(engine="vllm-v0", engine_version="0.6.5", max_model_len=131072,
                                                          enable_chunked_prefill=False))
    assert chunked.batched_tokens == 2048 and whole.batched_tokens == 131072
    # whole prompts: the forward of 131072 tokens, 131072 x (3 x 4096 + 3 x 14336) x 2 = 14,495,514,624 B, outweighs
    # the sampling phase; chunked: the sampling phase outweighs the 2048-token forward (226,492,416 B): hidden states
    # 2048 x 4096 x 2 = 16,777,216 + 256 rows x 128,256 x 38 B (V0 0.6.5 top-k/top-p: fp32 logits sorted by ATen,
    # 2 + 4 + values 4 + indices 8 + iota 8 + cub's alternate keys 4 and values 8) = 1,247,674,368.
    assert whole.activation_peak_bytes == 131072 * (3 * 4096 + 3 * 14336) * 2 == 14_495_514_624
    assert chunked.activation_peak_bytes == 16_777_216 + 1_247_674_368


def test_sglang_pool() -> None:
    # Llama-3-8B on one H100, SGLang 0.5.3, mem_fraction_static 0.88 (its TP-1 default before 0.5.4):
    # total = free after the context = CUDA total 81105 MiB - 0.5 GiB = 85,044,756,480 - 536,870,912
    # = 84,507,885,568 B; x 0.88 = int 74,366,939,299; weights 8,030,261,248 x 2 = 16,060,522,496 B;
    # pool = 58,306,416,803 B / 131,072 B per token = 444,842 tokens.
    mem = engine_memory(load_model("llama3-8b"), load_gpu("h100"), settings=EngineSettings(engine="sglang", engine_version="0.5.3"))
    assert mem.kv_cache_tokens == 444_842
    assert "max_total_num_tokens=444842" in mem.log


def test_fp8_kv_doubles_the_tokens() -> None:
    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    bf16 = engine_memory(m, gpu, settings=EngineSettings(max_model_len=8192))
    fp8 = engine_memory(m, gpu, settings=EngineSettings(max_model_len=8192), kv_dtype="fp8")
    assert fp8.kv_bytes_per_token * 2 == bf16.kv_bytes_per_token
    assert fp8.kv_cache_tokens == pytest.approx(2 * bf16.kv_cache_tokens, abs=32)


def test_shared_prefix_admits_more_requests() -> None:
    # 4000-token requests sharing a 2000-token system prompt: 125 shared blocks stored once,
    # each request then takes 250 - 125 = 125 blocks: concurrency = floor((blocks - 125) / 125).
    m, gpu = load_model("llama2-70b"), load_gpu("a800")
    mem = engine_memory(m, gpu, settings=EngineSettings(engine="vllm-v0"), tp=2, dtype="fp16", tokens_per_request=4000,
                        shared_prefix=2000)
    assert mem.max_concurrency == (2335 - 125) // 125  # 2335 blocks: test_vllm_blocks_llama2_70b_tp2_a800


def test_bad_engine_inputs() -> None:
    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    with pytest.raises(LLMCalcError, match="--max-model-len"):
        engine_memory(m, gpu, settings=EngineSettings(max_model_len=4096), tokens_per_request=8000)
    with pytest.raises(LLMCalcError, match="--shared-prefix"):
        engine_memory(m, gpu, tokens_per_request=1000, shared_prefix=1000)


def test_vllm_v1_blocks_llama2_70b_tp2_a800() -> None:
    # vLLM V1 (current): an A800 (80 GiB, not an "a100" by name) gets the big-GPU defaults of
    # EngineArgs.get_batch_defaults for `vllm serve`: max_num_batched_tokens 8192, max_num_seqs 1024; chunked always.
    # profile run (the larger phase): forward 8192 x (3 x 8192 + 3 x 28672 / 2) x 2 = 1,107,296,256 B; sampling
    #   8192 x 8192 x 2 = 134,217,728 hidden states + min(1024, 8192) rows x 32000 x 38 B (0.11: PyTorch-native
    #   top-k/top-p sort: bf16 2 + fp32 4 + sorted 4 + int64 indices 8 + int64 iota 8 + CUB alternate buffers 12)
    #   = 1,245,184,000 -> 1,379,401,728 B.
    # non-torch: V1 >= 0.9.1 counts only the increase over its snapshot: 0.1 GiB + TP 2's communication buffers
    #   on the HGX A800 (test_vllm_blocks_llama2_70b_tp2_a800) = 107,374,182 + 830,472,192 = 937,846,374 B.
    # budget = 76,589,354,188 - 68,976,648,192 - 1,379,401,728 - 937,846,374 = 5,295,457,894 B (4.93 GiB)
    # blocks = floor(5,295,457,894 / 2,621,440) = 2020; tokens 32,320; 4000-token requests (250 blocks) -> 8.
    mem = engine_memory(load_model("llama2-70b"), load_gpu("a800"), tp=2, dtype="fp16", tokens_per_request=4000)
    assert mem.batched_tokens == 8192 and mem.max_num_seqs == 1024 and mem.chunked_prefill
    assert mem.activation_peak_bytes == 1_379_401_728
    assert mem.kv_budget_bytes == 5_295_457_894
    assert mem.num_gpu_blocks == 2020 and mem.kv_cache_tokens == 32_320 and mem.max_concurrency == 8
    assert mem.log[:2] == ["Available KV cache memory: 4.93 GiB", "GPU KV cache size: 32,320 tokens"]


def test_vllm_v1_defaults_by_version_and_gpu() -> None:
    # get_batch_defaults (>= 0.9): >= 70 GiB and not an A100 -> 8192 / 1024; else 2048 / 256; 0.8.x: 2048 / 256
    m = load_model("llama3-8b")
    for gpu, version, batched, seqs in (("h100", None, 8192, 1024), ("a100-80gb", None, 2048, 256),
                                        ("l4", None, 2048, 256), ("h100", "0.8.5", 2048, 256)):
        mem = engine_memory(m, load_gpu(gpu), settings=EngineSettings(engine_version=version), tokens_per_request=4096)
        assert (mem.batched_tokens, mem.max_num_seqs, mem.chunked_prefill) == (batched, seqs, True), gpu
    # a release before 0.8 ran V0: a 4096-token context profiles max(4096, 2048) whole tokens
    old = engine_memory(m, load_gpu("h100"), settings=EngineSettings(engine_version="0.6.3", max_model_len=4096))
    assert old.batched_tokens == 4096 and not old.chunked_prefill and old.log[0].startswith("# GPU blocks:")


def test_sglang_054_mem_fraction_heuristic() -> None:
    # SGLang >= 0.5.4 server_args._handle_gpu_memory_settings on an H100 (nvidia-smi 81559 MiB: the heuristic reads
    # get_device_memory_capacity, nvidia-smi memory.total), TP 1:
    # bucket < 90 GiB -> chunked_prefill_size 8192, cuda_graph_max_bs 256;
    # reserved = 512 + 1.5 x 8192 + 2 x 256 + 1 x 1 / 8 x 1024 = 13,440 MiB (> 10,240 floor);
    # mem_fraction_static = round((81559 - 13440) / 81559, 3) = round(0.83521, 3) = 0.835.
    # TP 8: cuda_graph_max_bs 512 -> 512 + 12288 + 1024 + 1024 = 14,848 -> round(66711 / 81559, 3) = 0.818.
    gpu = load_gpu("h100")
    s = EngineSettings(engine="sglang")
    assert s.mem_fraction(1, gpu.memory_bytes) == 0.835 and s.mem_fraction(8, gpu.memory_bytes) == 0.818
    mem = engine_memory(load_model("llama3-8b"), gpu, settings=s)
    assert mem.batched_tokens == 8192
    # pool = int(0.835 x 84,507,885,568 (CUDA total 81105 MiB - 0.5 GiB)) - 16,060,522,496 = 70,564,084,449
    # - 16,060,522,496 = 54,503,561,953 / 131,072 B per token = 415,829 tokens
    assert mem.kv_cache_tokens == 415_829


def test_trtllm_pytorch_backend_kv() -> None:
    # TRT-LLM PyTorch backend (1.0), Llama-3-8B on one H100 (CUDA total 81105 MiB = 85,044,756,480 B):
    # KvCacheCreator: KV = 0.9 x (total - non-torch 0.5 GiB - weights 16,060,522,496 - warm-up peak of max_num_tokens
    # 8192: the forward 8192 x (3 x 4096 + 3 x 14336) x 2 = 905,969,664 (the 2 dummy requests of 8,191 tokens sample
    # 2 rows only) - the CUDA-graph pool captured before the estimation at max_batch_size 2048:
    # 2048 x (128,256 logits + 3 x 4096 + 3 x 14336) x 2 = 751,828,992)
    # free = 85,044,756,480 - 536,870,912 - 16,060,522,496 - 905,969,664 - 751,828,992 = 66,789,564,416
    # KV = int(0.9 x free) = 60,110,607,974; block 32 x 131,072 = 4,194,304 B -> 14,331 blocks = 458,592 tokens
    # (14,331 x 4 MiB = 55.98 GiB).
    mem = engine_memory(load_model("llama3-8b"), load_gpu("h100"), settings=EngineSettings(engine="trtllm"))
    assert mem.block_size == 32 and mem.batched_tokens == 8192
    assert mem.kv_budget_bytes == 60_110_607_974
    assert mem.kv_cache_tokens == 458_592
    # 60,110,607,974 B = 55.98 GiB: _util.py's estimate, then the C++ allocation of the whole blocks
    assert mem.log == ["Estimated max memory in KV cache : 55.98 GiB",
                       "[MemUsageChange] Allocated 55.98 GiB for max tokens in paged KV cache (458592)."]


def test_trtllm_engine_flow_has_no_graph_pool() -> None:
    # v0.17 (TensorRT engine flow): the C++ KVCacheManager::calculateMaxNumBlocks takes 0.9 of the memory free after
    # the engine (weights + activations of the max_num_tokens profile): no CUDA-graph pool. Same numbers as above
    # without the 751,828,992 B pool: free 67,541,393,408 -> int(0.9 x free) = 60,787,254,067 -> 14,492 blocks.
    mem = engine_memory(load_model("llama3-8b"), load_gpu("h100"),
                        settings=EngineSettings(engine="trtllm", engine_version="0.17"))
    assert mem.kv_budget_bytes == 60_787_254_067
    assert mem.kv_cache_tokens == 14_492 * 32


def test_vllm_v1_profile_sampler_bytes_by_sampler_path() -> None:
    # vLLM V1's profile run samples min(max_num_seqs, max_num_batched_tokens) rows with top_p 0.9, top_k = V - 1
    # (gpu_model_runner.py _dummy_sampler_run). Qwen3-30B-A3B, TP 4, vLLM 0.8.5 on an A10 (defaults 2048 batched
    # tokens, 256 sequences); forward 2048 x (3 x 2048 + 8 experts x 768 x 3 / 4) x 2 = 44,040,192 B, below either
    # sampling phase (hidden states 2048 x 2048 x 2 = 8,388,608 B +):
    #   PyTorch-native sort (0.8.5 pip wheel, no FlashInfer): 256 x 151,936 x 38 = 1,478,033,408 -> 1,486,422,016 B
    #   FlashInfer (0.8.5: fp32 logits then softmax, 2 + 4 + 4 B): 256 x 151,936 x 10 = 388,956,160 -> 397,344,768 B
    #   V0 0.6.5 chunked to 2048 (fp32 top-k/top-p: the same ATen sort, 2 + 4 + 4 + 8 + iota 8 + cub 4 + 8 = 38 B):
    #     256 x 151,936 x 38 = 1,478,033,408 -> 1,486,422,016 B
    # A10: CUDA total 22587 MiB (the A10G reading) = 23,684,186,112 B x 0.9 = int 21,315,767,500; weights
    # 30,532,122,624 x 2 / 4 = 15,266,061,312; non-torch 0.5 + 0.25 GiB = 805,306,368 (0.8.5 counts the CUDA
    # context), + 3/4 of the router on each rank (whole on every rank, vLLM's ReplicatedLinear gate: 2,048 x 128 a layer
    # x 48 layers x 2 B = 25,165,824 B, 18,874,368 B more than a quarter share); KV block 16 x 24,576 = 393,216 B:
    #   native:     21,315,767,500 - 15,284,935,680 - 1,486,422,016 - 805,306,368 = 3,739,103,436 -> 9,509 blocks
    #   FlashInfer: 21,315,767,500 - 15,284,935,680 - 397,344,768 - 805,306,368 = 4,828,180,684 -> 12,278 blocks
    # = 152,144 and 196,448 tokens (the log of vllm issue #17469, a docker image with FlashInfer: 198,784).
    m, gpu = load_model("qwen3-30b-a3b"), load_gpu("a10")
    s = EngineSettings(engine_version="0.8.5", max_model_len=8192)
    native = engine_memory(m, gpu, settings=s, tp=4)
    fi = engine_memory(m, gpu, settings=s, tp=4, assumptions=ServingAssumptions(vllm_flashinfer_sampler=True))
    v0 = engine_memory(m, gpu, settings=EngineSettings(engine="vllm-v0", engine_version="0.6.5", max_model_len=8192,
                                                       enable_chunked_prefill=True),
                       tp=4)
    assert native.batched_tokens == v0.batched_tokens == 2048 and native.max_num_seqs == v0.max_num_seqs == 256
    assert native.activation_peak_bytes == 1_486_422_016
    assert fi.activation_peak_bytes == 397_344_768
    assert v0.activation_peak_bytes == 1_486_422_016
    assert native.kv_budget_bytes == 3_739_103_436 and fi.kv_budget_bytes == 4_828_180_684
    assert native.kv_cache_tokens == 152_144 and fi.kv_cache_tokens == 196_448
