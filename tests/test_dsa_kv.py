"""DeepSeek-V3.2's sparse attention (DSA) cache, worked by hand from its config.json (tests/fixtures/hf/deepseek-v3.2-exp.json:
61 layers, kv_lora_rank 512, qk_rope_head_dim 64, index_head_dim 128) and the engines' sources:

- the lightning indexer caches one fp8 key of index_head_dim per token per layer with one fp32 scale per 128 values:
  128 + 4 = 132 B (vLLM deepseek_v2.py Indexer k_cache head_dim = head_dim + head_dim // quant_block_size * 4, uint8;
  SGLang NSATokenToKVPool; TensorRT-LLM's DSA cache manager);
- an fp8 latent is FlashMLA's sparse record: 512 fp8 + 4 fp32 scales (16 B) + 64 bf16 rope values (128 B) = 656 B
  (vLLM FlashMLASparseBackend.get_kv_cache_shape "custom storage format is 656 bytes");
- vLLM V1 starts a V3.2 model's ``auto`` cache as that fp8 record (vllm/model_executor/models/config.py
  DeepseekV32ForCausalLM.verify_and_update_config), ``--kv-cache-dtype bfloat16`` keeps it 16-bit.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from typer.testing import CliRunner

from calc.cli.app import app
from calc.errors import LLMCalcWarning
from calc.memory.kv import kv_cache_bytes_for_tokens, kv_cache_bytes_per_token
from calc.serving.engine_memory import engine_memory
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings

V32 = str(Path(__file__).parent / "fixtures" / "hf" / "deepseek-v3.2-exp.json")
BF16_PER_TOKEN = 61 * ((512 + 64) * 2 + 128 + 4)  # 78,324 B
FP8_PER_TOKEN = 61 * (512 + 16 + 128 + 132)  # 48,068 B


def test_indexer_key_and_fp8_record_per_token() -> None:
    m = load_model(V32)
    assert kv_cache_bytes_per_token(m, "bf16") == BF16_PER_TOKEN == 78_324
    assert kv_cache_bytes_per_token(m, "fp8") == FP8_PER_TOKEN == 48_068
    # MLA's latent is replicated on every TP rank (so is the indexer key); PP 2 puts 31 layers on the first stage
    assert kv_cache_bytes_per_token(m, "fp8", tp=8) == FP8_PER_TOKEN
    assert kv_cache_bytes_per_token(m, "fp8", pp=2) == 31 * (656 + 132)
    assert kv_cache_bytes_for_tokens(m, 1000, "bf16") == 1000 * BF16_PER_TOKEN


def test_dense_attention_mla_unchanged() -> None:
    # DeepSeek-V3 has no indexer: 61 x (512 + 64) x bytes, fp8 one byte a value
    m = load_model("deepseek-v3")
    assert kv_cache_bytes_per_token(m, "bf16") == 61 * 576 * 2
    assert kv_cache_bytes_per_token(m, "fp8") == 61 * 576


def test_vllm_auto_is_the_fp8_record_sglang_keeps_the_model_dtype() -> None:
    m, h200 = load_model(V32), load_gpu("h200")
    vllm = engine_memory(m, h200, settings=EngineSettings(engine="vllm", max_model_len=8192), tp=8, dtype=None)
    sglang = engine_memory(m, h200, settings=EngineSettings(engine="sglang", max_model_len=8192), tp=8, dtype=None)
    bf16 = engine_memory(m, h200, settings=EngineSettings(engine="vllm", max_model_len=8192), tp=8, dtype=None, kv_dtype="bf16")
    assert (vllm.kv_dtype, sglang.kv_dtype, bf16.kv_dtype) == ("fp8", "bf16", "bf16")
    # the same budget holds 78,324 / 48,068 = 1.63x the tokens in the fp8 record, in whole 64-token blocks either way
    # (vllm/platforms/cuda.py forces 64 for FlashMLA, dense or sparse, on Hopper: "Forcing kv cache block size to 64")
    assert vllm.block_size == bf16.block_size == 64 and vllm.kv_cache_tokens // 64 == vllm.num_gpu_blocks
    budget_blocks_bf16 = bf16.num_gpu_blocks * 64 * BF16_PER_TOKEN
    assert abs(vllm.num_gpu_blocks * 64 * FP8_PER_TOKEN - budget_blocks_bf16) <= 64 * BF16_PER_TOKEN


def test_commands_agree_and_the_line_keeps_a_16_bit_cache() -> None:
    runner = CliRunner()
    mem = runner.invoke(app, ["memory", V32, "--mode", "infer", "--gpu", "h200", "--tp", "8", "--seq", "4096", "--json"])
    assert mem.exit_code == 0, mem.output
    assert '"kv_cache_bytes_per_token": 48068' in mem.stdout
    with warnings.catch_warnings():  # the fit verdict's own warning line (tight or not) is not this test's concern
        warnings.simplefilter("ignore", LLMCalcWarning)
        line = runner.invoke(app, ["serve", V32, "--gpu", "h200", "--prompt", "4000", "--output", "1000", "--rate", "1",
                                   "--kv-dtype", "bf16", "--emit", "vllm"])
    assert line.exit_code == 0, line.output
    assert "--kv-cache-dtype bfloat16" in line.stdout  # "auto" would start vLLM's fp8 record for this model


def test_sparse_attention_pairs_and_indexer_flops() -> None:
    """DSA (DeepSeek-V3.2-Exp report, sec. 2.1): each query attends the index_topk = 2,048 keys its lightning indexer
    picks, and the indexer scores every cached key in 64 heads of 128: 2 x 64 x 128 FLOPs a (query, key) pair."""
    from calc.model.flops import forward_flops
    from calc.model.layers import keys_seen

    m = load_model(V32)
    s = 32_000
    main_pairs = 61 * (2048 * 2049 // 2 + (s - 2048) * 2048)  # min(i + 1, 2048) keys for query i, 61 layers
    indexer = 2 * 64 * 128 * 61 * (s * (s + 1) // 2)
    f = forward_flops(m, 1, s, causal=True)
    assert f.forward_attention_flops == 2 * 128 * (192 + 128) * main_pairs + indexer
    assert keys_seen(m, 10_000) == 61 * 2048 and keys_seen(m, 1_000) == 61 * 1_000


def test_a_sparse_decode_reads_its_top_k_latents_and_every_indexer_key() -> None:
    from calc.memory.kv import kv_bytes_read
    from calc.model.flops import decode_flops

    m = load_model(V32)
    # fp8: the 656-B latent record of the 2,048 picked tokens, the 132-B indexer key of all 10,000, on 61 layers
    assert kv_bytes_read(m, 10_000, "fp8") == 61 * (2048 * 656 + 10_000 * 132)
    assert kv_bytes_read(m, 1_000, "fp8") == 61 * 1_000 * (656 + 132)  # below the top-k every key is read
    d = decode_flops(m, 1, 10_000, 1)
    step = d.first_step_flops - decode_flops(load_model("deepseek-v3"), 1, 10_000, 1).first_step_flops
    # against V3 (the same weights but the indexer's and 61 x 10,001 keys): the indexer's 2 x 64 x 128 x 61 x 10,001
    # minus the absorbed MLA per-key cost 2 x 128 x (576 + 512) on the 61 x (10,001 - 2,048) keys V3.2 skips, plus the
    # indexer's own weights (wq_b, wk, weights_proj: 2 x (1536 x 8192 + 7168 x 128 + 7168 x 64) a layer)
    weights = 2 * 61 * (1536 * 64 * 128 + 7168 * 128 + 7168 * 64)
    assert step == 2 * 64 * 128 * 61 * 10_001 - 2 * 128 * (576 + 512) * 61 * (10_001 - 2048) + weights


def test_a_long_prompt_prefills_faster_under_sparse_attention() -> None:
    from calc.serving.latency import latency

    h200 = load_gpu("h200")
    sparse = latency(load_model(V32), h200, num_gpus=8, prompt=120_000, output=2, dtype=None)
    dense = latency(load_model("deepseek-v3"), h200, num_gpus=8, prompt=120_000, output=2, dtype=None)
    assert sparse.ttft_s < 0.75 * dense.ttft_s
