"""Serving prices the checkpoint as shipped unless --dtype is typed (calc.serving.weights).

Numbers worked out by hand from the configs (gpt-oss-120b: 36 layers, hidden 2880, 64 query heads and
8 KV heads of 64, 128 experts of intermediate 2880 (top-4) with biases, vocab 201,088, untied head,
MXFP4 experts = 4 bits + one E8M0 byte per 32 weights; DeepSeek-V3: 671,026,419,200 parameters, FP8
with 128x128 fp32 block scales, embedding/head/router/norms in bf16).
"""

from __future__ import annotations

import json

import pytest

from calc.memory.weights import requantize, weights_per_gpu
from calc.serving.assumptions import ServingAssumptions
from calc.serving.engine_memory import engine_memory
from calc.serving.step import weight_gemm_time
from calc.serving.weights import weight_format
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings

GIB = 2**30
# gpt-oss-120b by hand: experts 36 x 128 x (2880 x 5760 + 2880 x 2880) = 114,661,785,600 weights at 0.53125 B
# = 60,914,073,600 B, their biases 36 x 128 x (5760 + 2880) = 39,813,120 x 2 B = 79,626,240 B; everything
# else in bf16: attention 955,805,184 + router 13,275,648 + norms 210,240 + embedding and head 2 x 579,133,440
# = 2,127,557,952 params x 2 = 4,255,115,904 B.  Total 65,248,815,744 B = 60.77 GiB (model card: 60.8 GiB).
GPT_OSS_SHIPPED = 60_914_073_600 + 79_626_240 + 4_255_115_904


def test_gpt_oss_weights_as_shipped_per_rank():
    m = load_model("gpt-oss-120b")
    assert GPT_OSS_SHIPPED == 65_248_815_744
    assert weights_per_gpu(m, None, 1, 1) == GPT_OSS_SHIPPED
    assert GPT_OSS_SHIPPED / GIB == pytest.approx(60.8, abs=0.05)
    # TP 2 halves everything (vocab-parallel embedding and head) but the router, whole on both ranks (vLLM's
    # ReplicatedLinear gate): 36 layers x (2,880 x 128 + 128 bias) x 2 B = 26,551,296 B, half of it more a rank
    assert weights_per_gpu(m, None, 2, 1) == GPT_OSS_SHIPPED // 2 + 26_551_296 // 2
    # --dtype bf16 keeps the old answer: 116,829,156,672 params x 2 B (114,701,598,720 expert + 2,127,557,952 other)
    assert weights_per_gpu(m, "bf16", 1, 1) == (114_701_598_720 + 2_127_557_952) * 2


def test_dtype_mxfp4_on_a_checkpoint_shipped_in_mxfp4_is_that_checkpoint():
    """`--dtype mxfp4` on gpt-oss names the published checkpoint (MXFP4 experts, attention bf16), not a second
    conversion that would put the 955,805,184 attention weights at 4.25 bits too."""
    m, dtype = requantize(load_model("gpt-oss-120b"), "mxfp4")
    assert dtype is None
    assert weights_per_gpu(m, None, 1, 1) == GPT_OSS_SHIPPED
    # a dense bf16 model has no MXFP4 checkpoint to name: --dtype mxfp4 converts its block Linears
    dense, _ = requantize(load_model("llama2-7b"), "mxfp4")
    assert dense.quantization is not None and not dense.quantization.experts_only


def test_gpt_oss_kv_tokens_on_one_h100_by_hand():
    """vLLM V0 ("0.6") on one H100 (CUDA total 81,105 MiB = 85,044,756,480 B), max_model_len 8192 (no chunked prefill: the
    profile run is 8192 tokens, logits of max_num_seqs 256 rows sampled with top-k / top-p, 30 B per logit at the sort
    before 0.6.2):
      usable     = int(0.9 x 85,044,756,480)                               = 76,540,280,832
      activation = the larger of the forward 8192 x (3 x 2880 + 3 x 4 x 2880) x 2 = 707,788,800 and the sampling
                   phase 8192 x 2880 x 2 + 256 x 201,088 x 30 = 47,185,920 + 1,544,355,840 = 1,591,541,760
      non-torch  = 0.1 GiB (V0 before 0.6.4 reads its free memory after the CUDA context exists) = 107,374,182
      budget     = 76,540,280,832 - 65,248,815,744 - 1,591,541,760 - 107,374,182 = 9,592,549,146
      KV/token   = 36 layers x 2 x 8 heads x 64 x 2 B = 73,728; block = 16 x 73,728 = 1,179,648
      blocks     = floor(9,592,549,146 / 1,179,648) = 8,131 (8,131 x 1,179,648 = 9,591,717,888)
      tokens     = 130,096
      one 8K request: V0's block manager keeps one block table for every layer, so a model mixing window and full
                  layers caches the whole context on all 36 (calc.serving.hybrid_alloc.local_layers_cached_whole):
                  36 x 8192 x 2048 B = 603,979,776 B (the window layers still attend over 128 tokens)
      concurrency = floor(9,591,717,888 / 603,979,776) = 15"""
    m, g = load_model("gpt-oss-120b"), load_gpu("h100")
    mem = engine_memory(m, g, settings=EngineSettings(engine="vllm-v0", max_model_len=8192), dtype=None,
                        tokens_per_request=8192)
    assert mem.dtype == "as-shipped" and mem.kv_dtype == "bf16"
    assert mem.weights_bytes == GPT_OSS_SHIPPED
    assert mem.activation_peak_bytes == 1_591_541_760
    assert mem.kv_budget_bytes == 9_592_549_146
    assert mem.num_gpu_blocks == 8_131 and mem.kv_cache_tokens == 130_096
    assert mem.kv_bytes_per_request == 603_979_776 and mem.max_concurrency == 15
    # the same model priced in bf16 does not fit one H100 at all
    assert engine_memory(m, g, settings=EngineSettings(max_model_len=8192), dtype="bf16").max_concurrency == 0


def test_gpt_oss_decode_step_streams_mxfp4_experts():
    """Batch 1 decode reads the attention (36 x (2880 x 5120 + 4096 x 2880) = 955,514,880 weights), router
    (36 x 2880 x 128 = 13,271,040) and head (579,133,440) in bf16, and 4 of 128 experts per layer:
    36 x 4 x 24,883,200 = 3,583,180,800 weights at 0.53125 B as shipped (2 B in bf16).
      as shipped: (955,514,880 + 13,271,040 + 579,133,440) x 2 + 3,583,180,800 x 0.53125 = 3,095,838,720 + 1,903,564,800
      bf16:       3,095,838,720 + 3,583,180,800 x 2 = 10,262,200,320"""
    m, g = load_model("gpt-oss-120b"), load_gpu("h100")
    _, _, shipped = weight_gemm_time(m, g, 1, 1, 1, None)
    _, _, bf16 = weight_gemm_time(m, g, 1, 1, 1, "bf16")
    assert bf16 == pytest.approx(10_262_200_320, rel=1e-9)
    # the expert group's bytes per weight average in its bf16 biases (0.53176 vs 0.53125): within 0.1%
    assert shipped == pytest.approx(3_095_838_720 + 1_903_564_800, rel=1e-3)


def test_weight_only_decode_streams_its_4bit_weights():
    """At batch 1 a Marlin-style dequantising GEMV is bound by streaming its weights: the step's GEMMs take
    bytes / (3.35 TB/s x 0.90) = 5.0006e9 / 3.015e12 = 1.659 ms, plus one launch per GEMM, not the 128-row tile
    compute (which, at 2 FLOPs x 1 row per 0.53 B, would be ~2.3x longer at the bf16 peak)."""
    from calc.hardware.efficiency import GEMM_LAUNCH_S
    from calc.serving.step import model_gemms

    m, g = load_model("gpt-oss-120b"), load_gpu("h100")
    # the grouped-GEMM penalty of routed experts and the whole-step MoE serving rate (calc.serving.moe) off: this
    # checks the 4-bit streaming alone
    seconds, _, moved = weight_gemm_time(m, g, 1, 1, 1, None, a=ServingAssumptions(grouped_gemm_efficiency=1.0,
                                                                                   moe_serving_rate=1.0))
    launches = sum(gm.layers for gm in model_gemms(m)[0]) * GEMM_LAUNCH_S
    stream = 5_000_641_920 / (3.35e12 * 0.90)
    assert stream * 0.999 <= seconds - launches <= stream * 1.01


def test_compute_dtype_assumptions():
    ds, oss = load_model("deepseek-v3"), load_model("gpt-oss-120b")
    h100, a100 = load_gpu("h100"), load_gpu("a100-80g")
    assert weight_format(ds, h100, None).compute_dtype == "fp8"  # W8A8 block fp8 on Hopper
    assert weight_format(ds, a100, None).compute_dtype == "bf16"  # no fp8 tensor cores: weight-only, dequantised
    assert weight_format(oss, h100, None).compute_dtype == "bf16"  # MXFP4 dequantised (no fp4 peak on H100)
    assert weight_format(load_model("llama3-8b"), h100, None).label == "bf16"  # unquantized: as shipped = bf16
    # an A100 still answers for the FP8 checkpoint (streamed at 1 B/weight, multiplied in bf16)
    fp8_a100 = weight_gemm_time(ds, a100, 1, 1, 8, None)
    bf16_a100 = weight_gemm_time(ds, a100, 1, 1, 8, "bf16")
    # half the bf16 bytes, except the head (926,679,040, split over the 8 ranks) and the routers (58 x 256 x 7168 =
    # 106,430,464, whole on every rank as vLLM's ReplicatedLinear) stay at 2 B: + 926,679,040 x 2 / 8 / 2 +
    # 106,430,464 x 2 / 2; block scales add ~0.02%
    assert fp8_a100[2] == pytest.approx(bf16_a100[2] / 2 + 926_679_040 * 2 / 8 / 2 + 106_430_464 * 2 / 2, rel=1e-3)
    assert fp8_a100[0] < bf16_a100[0]


def test_deepseek_v3_fits_8_h200_as_shipped_not_in_bf16(cli):
    """Per rank at TP 8, by hand: every Linear weight at 1 B (671,026,419,200) + 1 more byte for the
    1,960,685,056 bf16 parameters (embedding 926,679,040, head 926,679,040, router 106,445,312, norms 881,664)
    + fp32 scales per 128x128 block (~4/16384 of 669.07e9 = ~0.163e9) = ~673.150e9 B; / 8 = ~84.144e9 B, + 7/8 of
    what vLLM keeps whole on every rank (deepseek_v2.py ReplicatedLinear): q_a_proj and kv_a_proj_with_mqa, 61 x
    7,168 x (1,536 + 576) = 923,467,776 fp8 weights (+ 61 x (56 x 12 + 56 x 5) x 4 B = 232,288 B of scales), and the
    router, 106,445,312 bf16 parameters (212,890,624 B): 7/8 x 1,136,590,688 = ~0.9945e9 B -> ~85.138e9 B.
    bf16: 671,026,419,200 x 2 / 8 = 167,756,604,800 B, + 7/8 x (923,467,776 + 106,445,312) x 2 B = 1,802,347,904 B
    = 169,558,952,704 B = 157.9 GiB per rank > 140.4 GiB (143,771 MiB)."""
    m, g = load_model("deepseek-v3"), load_gpu("h200")
    assert weights_per_gpu(m, None, 8, 1) == pytest.approx((671_026_419_200 + 1_960_685_056 + 163e6) / 8
                                                           + 7 * 1_136_590_688 / 8, rel=5e-5)
    assert weights_per_gpu(m, "bf16", 8, 1) == 167_756_604_800 + 1_802_347_904 > g.memory_bytes
    shipped = json.loads(cli("concurrency", "deepseek-v3", "--gpu", "h200", "--num-gpus", "8",
                                 "--max-model-len", "8192", "--json").out)
    assert shipped["dtype"] == "as-shipped" and shipped["max_concurrency"] > 0
    bf16 = json.loads(cli("concurrency", "deepseek-v3", "--gpu", "h200", "--num-gpus", "8",
                              "--max-model-len", "8192", "--dtype", "bf16", "--json").out)
    assert bf16["dtype"] == "bf16" and bf16["max_concurrency"] == 0
    # 1,342 GB over 12 ranks as TP 4 x PP 3 (61 layers: 21 on the busiest stage, 21/61 x 1,342 / 4 = 115.5 GB each,
    # under the 0.9 x 140.4 GiB = 135.7 GB vLLM takes); 8 ranks hold 167.8 GB each
    assert "needs >= 12 GPUs" in bf16["verdict"]


def test_serve_latency_report_compare_as_shipped(cli):
    r = cli("serve", "gpt-oss-120b", "--gpu", "h100", "--num-gpus", "1", "--prompt", "2000", "--output", "300", "--json")
    assert r.code == 0, r.out
    plan = json.loads(r.out)
    assert plan["dtype"] == "as-shipped" and plan["layouts"][0]["tp"] == 1
    assert any("mxfp4" in line for line in plan["assumptions"])
    bf16 = cli("serve", "gpt-oss-120b", "--gpu", "h100", "--num-gpus", "1", "--prompt", "2000", "--output", "300",
                   "--dtype", "bf16", "--json")
    assert bf16.code != 0 or not json.loads(bf16.out)["layouts"]
    lat = json.loads(cli("latency", "gpt-oss-120b", "--gpu", "h100", "--prompt", "1000", "--output", "100", "--json").out)
    assert lat["dtype"] == "as-shipped"
    lat_bf16 = cli("latency", "gpt-oss-120b", "--gpu", "h100", "--prompt", "1000", "--output", "100", "--dtype", "bf16")
    assert lat_bf16.code == 2 and "does not fit" in lat_bf16.out + lat_bf16.err
    rep = json.loads(cli("report", "gpt-oss-120b", "--gpu", "h100", "--prompt", "1000", "--output", "100", "--json").out)
    assert rep["concurrency"]["dtype"] == "as-shipped" and rep["latency"]["dtype"] == "as-shipped"
    rows = json.loads(cli("compare", "deepseek-v3", "h200", "--num-gpus", "8", "--json").out)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert rows[0]["fits"] and rows[0]["peak_tflops"] == load_gpu("h200").datasheet_peak_tflops["fp8"]
