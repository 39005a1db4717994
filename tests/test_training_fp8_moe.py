"""fp8 training runs (attention core, norms, router, head in bf16; cast traffic) and MoE routing costs of the step
model (calc.training.cost), each checked against a figure worked out by hand from the published shapes and specs."""

from __future__ import annotations

import pytest

from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost
from calc.training.layout import Layout
from calc.training.step import train_step

H100_HBM_B_S = 3.35e12 * 0.9  # H100 SXM HBM3 3.35 TB/s at the 0.9 streaming efficiency of NVIDIA parts
H100_BF16_FLOPS = 989.4e12  # dense bf16 tensor peak (NVIDIA H100 SXM datasheet)


def _llama8b(dtype: str, seq: int = 8192) -> ModelCost:
    return ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), seq, dtype)


def test_fp8_attention_core_runs_at_the_bf16_rate() -> None:
    # Llama-3-8B, s = 8192, b = 1, one GPU: 32 heads of 128; causal pairs s(s+1)/2 = 33,558,528
    # forward FLOPs per layer = 2 b h (d_qk + d_v) pairs = 2 x 32 x 256 x 33,558,528 = 5.4986e11
    flops = 2 * 1 * 32 * (128 + 128) * (8192 * 8193 / 2)
    assert flops == pytest.approx(5.4986e11, rel=1e-4)
    # the default stack (megatron) runs TE's cuDNN fused attention: 529 TFLOP/s forward, causal, head dim 128, 8k
    # (FlashAttention-3 paper, arXiv 2407.08608, Fig. 5), at Megatron's stack efficiency 1
    expected = flops / 529e12
    for dtype in ("bf16", "fp8"):
        lc = _llama8b(dtype).layer(0, 1, 1, 1, 1, False)
        assert lc.attn_fwd == pytest.approx(expected, rel=2e-3), dtype


def test_fp8_elementwise_traffic_is_bf16() -> None:
    # norms/residuals 12 H + activation 2 x (2 x 14336) elements per token, 2 B each (bf16 even in an fp8 run)
    elements = 8192 * (12 * 4096 + 2 * 2 * 14336)
    expected = elements * 2 / H100_HBM_B_S
    for dtype in ("bf16", "fp8"):
        assert _llama8b(dtype).layer(0, 1, 1, 1, 1, False).ew_fwd == pytest.approx(expected, rel=1e-9), dtype


def test_fp8_cast_bytes_per_gemm_operand() -> None:
    # q_proj of Llama-3-8B at T = 8192: input [8192, 4096], weight [4096, 4096], output gradient [8192, 4096];
    # 4 B of HBM traffic per element cast (read 2 + fp8 write 1 + transposed copy 1), every operand of every GEMM cast
    # (a stack without Megatron-Core's fused TE linears: llm-foundry's te.Linear, delayed scaling; the Megatron layout
    # is tests/test_fp8_megatron_casts.py)
    cost = ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), 8192, "fp8",
                     Efficiencies(stack="llm-foundry"))
    fwd, bwd = cost.fp8_cast_s(8192, 4096, 4096)
    assert fwd == pytest.approx(4 * (8192 * 4096 + 4096 * 4096) / H100_HBM_B_S)  # 201.3 MB: 66.8 us
    assert fwd == pytest.approx(66.77e-6, rel=1e-3)
    assert bwd == pytest.approx(4 * 8192 * 4096 / H100_HBM_B_S)
    assert _llama8b("bf16").fp8_cast_s(8192, 4096, 4096) == (0.0, 0.0)
    lc = cost.layer(0, 1, 1, 1, 1, False)
    # the layer's casts: q, o [4096x4096]; k, v [4096x1024]; gate, up [4096x14336]; down [14336x4096], T = 8192
    T, H, kv, inter = 8192, 4096, 1024, 14336
    operands = (2 * (T * H + H * H) + 2 * (T * H + H * kv) + 2 * (T * H + H * inter) + (T * inter + inter * H))
    assert lc.cast_fwd == pytest.approx(4 * operands / H100_HBM_B_S, rel=1e-9)


def test_fp8_head_and_router_stay_bf16() -> None:
    # the output head of the same model costs the same in an fp8 and a bf16 run (Megatron's output_layer is no TE module)
    assert _llama8b("fp8").head_cost(1, 1, 1) == pytest.approx(_llama8b("bf16").head_cost(1, 1, 1))
    moe = ModelCost(load_model("qwen3-30b-a3b"), load_gpu("h100"), load_system("dgx-h100"), 4096, "fp8")
    router = [g for g in moe.layer_gemms(0, 1, 1, 1, 8) if g[0].startswith("router")][0]
    assert router[6:] == (0.0, 0.0)  # no cast


def test_moe_router_and_permute_traffic() -> None:
    # Qwen3-30B-A3B, T = 4096 tokens, E = 128, top-8, H = 2048:
    # router 4096 x 128 x 12 B = 6.29 MB; permute 4096 x 8 x 2048 x 6 B = 402.65 MB; combine 4096 x 2048 x 2 B = 16.78 MB
    # one rank holds all 128 experts (EP 1), so the dispatcher's two local sorts run too (sort_chunks_by_idxs,
    # num_local_experts > 1): 2 x 4096 x 8 copies x 2048 x 4 B = 536.87 MB
    cost = ModelCost(load_model("qwen3-30b-a3b"), load_gpu("h100"), load_system("dgx-h100"), 4096)
    moved = 6_291_456 + 402_653_184 + 16_777_216
    assert cost.moe_routing_s(4096) == pytest.approx((moved + 536_870_912) / H100_HBM_B_S)
    dense = _llama8b("bf16").layer(0, 1, 1, 1, 1, False)
    assert dense.moe_fwd == 0.0


def test_deepseek_v3_dispatcher_traffic_per_rank() -> None:
    # DeepSeek-V3 (H 7168, 256 routed experts, top-8) on GB200 (8.0 TB/s HBM x 0.9), b = 1, s = 4096, TP 2 with SP,
    # EP 32, ETP 1, balanced routing: each rank routes its sequence-parallel slice of 2048 tokens
    #   router   2048 x 256 logits x 12 B                = 6,291,456 B
    #   permute  2048 x 8 copies x 7168 x 6 B            = 704,643,072 B
    #   combine  2048 x 7168 x 2 B                       = 29,360,128 B
    #   2 local sorts (8 experts per rank): 2 x 16,384 received copies x 7168 x 4 B = 939,524,096 B
    from calc.training.cost import Efficiencies
    cost = ModelCost(load_model("deepseek-v3"), load_gpu("gb200"), load_system("gb200-nvl72"), 4096,
                     eff=Efficiencies(expert_load_cv=0.0))
    per_token = 6_291_456 + 704_643_072 + 29_360_128 + 939_524_096
    assert per_token == 1_679_818_752
    hbm = 8.0e12 * 0.9
    assert cost.moe_routing_s(4096, tp=2, ep=32, etp=1) == pytest.approx(per_token / hbm, rel=1e-9)  # 0.2333 ms
    moe_kind = [i for i, (kind, _, _) in enumerate(cost.kinds) if kind == "moe"][0]
    assert cost.layer(moe_kind, 1, 2, 1, 32, True, 1).moe_fwd == pytest.approx(per_token / hbm, rel=1e-9)
    # EP 256: one expert per rank, no local sort
    assert cost.moe_routing_s(4096, tp=2, ep=256, etp=1) == pytest.approx((per_token - 939_524_096) / hbm, rel=1e-9)


def test_explain_names_the_new_terms() -> None:
    cost = ModelCost(load_model("qwen3-30b-a3b"), load_gpu("h100"), load_system("dgx-h100"), 4096, "fp8")
    r = train_step(cost, Layout(dp=16, ep=8, zero=1), global_batch=64, num_gpus=16)
    assert r.fits
    text = "\n".join(r.explain)
    assert "fp8 casts" in text and "router/permute" in text and "bf16 peak" in text


def _qwen3_moe() -> ModelCost:
    return ModelCost(load_model("qwen3-30b-a3b"), load_gpu("h100"), load_system("dgx-h100"), 4096, "bf16")


def test_ep_imbalance_is_the_expected_maximum_over_ranks() -> None:
    # Qwen3-30B-A3B: 128 routed experts. EP 8: 16 experts per rank, rank CV = 0.3 / sqrt(16) = 0.075;
    # expected max of 8 ranks ~ 1 + 0.075 x sqrt(2 ln 8) = 1 + 0.075 x 2.0393 = 1.15295
    cost = _qwen3_moe()
    assert cost.ep_imbalance(8) == pytest.approx(1.15295, rel=1e-4)
    # EP 32: 4 per rank, 0.15 x sqrt(2 ln 32) = 0.15 x 2.6328 -> 1.39492
    assert cost.ep_imbalance(32) == pytest.approx(1.39492, rel=1e-4)
    assert cost.ep_imbalance(1) == 1.0  # one rank holds every expert: no rank waits for another
    assert _llama8b("bf16").ep_imbalance(8) == 1.0  # dense model


def test_ep_imbalance_scales_the_slowest_ranks_expert_tokens_and_all_to_all() -> None:
    # b = 1, s = 4096, EP 8: balanced tokens per local expert = T k e / E = 4096 x 8 x 8 / 128 = 2048;
    # the most-loaded rank's experts each see 2048 x 1.15295 = 2361.2
    cost = _qwen3_moe()
    moe_kind = [i for i, (kind, _, _) in enumerate(cost.kinds) if kind == "moe"][0]
    rows = {name: r for name, r, *_ in cost.layer_gemms(moe_kind, 1, 1, 1, 8)}
    assert rows["experts.down_proj"] == pytest.approx(2048 * 1.15295, rel=1e-4)
    # all-to-all volume of that rank: T k H x 2 B x imbalance = 4096 x 8 x 2048 x 2 x 1.15295 = 154.74 MB
    assert cost.ep_routed_bytes(4096, 8) == pytest.approx(4096 * 8 * 2048 * 2 * 1.15295, rel=1e-4)


def test_balanced_routing_recovers_the_even_split() -> None:
    from calc.training.cost import Efficiencies
    cost = ModelCost(load_model("qwen3-30b-a3b"), load_gpu("h100"), load_system("dgx-h100"), 4096, "bf16",
                     Efficiencies(expert_load_cv=0.0))
    assert cost.ep_imbalance(8) == 1.0
    assert cost.ep_routed_bytes(4096, 8) == 4096 * 8 * 2048 * 2


def test_grouped_gemm_ramp_reads_deepgemm_table() -> None:
    # DeepGEMM README (H800, fp8): masked layout vs contiguous layout at 4096-8192 rows per group
    #   1024 rows: 1233/1346 and 925/1214 -> mean 0.8392;  512 rows: 1040/1346 and 916/1214 -> mean 0.7636
    #   256 rows: 932/1346 and 815/1214 -> mean 0.6819 (the 0.7 floor)
    from calc.hardware.efficiency import grouped_gemm_ramp
    table_1024 = (1233 / 1346 + 925 / 1214) / 2
    table_512 = (1040 / 1346 + 916 / 1214) / 2
    assert grouped_gemm_ramp(1024, 0.7) == pytest.approx(table_1024, rel=0.015)  # 0.85
    assert grouped_gemm_ramp(512, 0.7) == pytest.approx(table_512, rel=0.015)  # 0.775
    assert grouped_gemm_ramp(256, 0.7) == pytest.approx((932 / 1346 + 815 / 1214) / 2, abs=0.02)
    assert grouped_gemm_ramp(4096, 0.7) == 1.0 and grouped_gemm_ramp(64, 0.5) == 0.5


def test_training_expert_gemms_run_at_the_ramp_rate() -> None:
    # Qwen3-30B-A3B, b = 1, s = 4096, EP 8, balanced: 4096 x 8 x 8 / 128 = 2048 tokens per expert, 16 local experts;
    # ramp = 0.7 + 0.3 x log2(2048 / 256) / log2(4096 / 256) = 0.7 + 0.3 x 3/4 = 0.925 of the dense grouped rate
    from calc.training.cost import Efficiencies
    cost = ModelCost(load_model("qwen3-30b-a3b"), load_gpu("h100"), load_system("dgx-h100"), 4096, "bf16",
                     Efficiencies(expert_load_cv=0.0))
    moe_kind = [i for i, (kind, _, _) in enumerate(cost.kinds) if kind == "moe"][0]
    rows = {g[0]: g for g in cost.layer_gemms(moe_kind, 1, 1, 1, 8)}
    name, tokens, n, k, count, seconds = rows["experts.down_proj"][:6]
    assert (tokens, count) == (2048, 16)
    assert cost._gemm(tokens, n, k, count) / seconds == pytest.approx(0.925, rel=1e-9)


def test_deepseek_v3_all_to_all_volume_and_nvlink_rate_against_deepep() -> None:
    # the dispatch of one rank: its sequence-parallel slice (4096 / TP 2 = 2048 tokens) x top-8 x H 7168 x 2 B
    # = 234,881,024 B (balanced routing), each routed copy sent once (Megatron's all-to-all dispatcher does not dedupe)
    from calc.hardware.collectives import collective_time
    from calc.training.cost import Efficiencies
    cost = ModelCost(load_model("deepseek-v3"), load_gpu("gb200"), load_system("gb200-nvl72"), 4096,
                     eff=Efficiencies(expert_load_cv=0.0))
    assert cost.ep_routed_bytes(2048, 32) == 2048 * 8 * 7168 * 2 == 234_881_024
    # DeepEP README (V2, SM100, EP 8 on NVLink, 8K tokens x 7168 hidden x top-8, BF16 combine): 740 GB/s logical
    # bandwidth (726 dispatch). The engine's all-to-all of the same 8192 x 8 x 7168 x 2 B = 939.5 MB inside an NVL72
    # domain: 7/8 of it at 900 GB/s x 0.8 + one 3 us step = 1.145 ms, i.e. 821 GB/s logical: within 11% of DeepEP's
    size = 8192 * 8 * 7168 * 2
    seconds = collective_time("all_to_all", cost.system, size, 8, 1, cost.eff.collective)
    assert seconds == pytest.approx(7 / 8 * size / (900e9 * 0.8) + 3e-6, rel=1e-9)
    assert size / seconds / 1e9 == pytest.approx(740, rel=0.12)
