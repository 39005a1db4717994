"""Step time and HFU of Megatron-Core's --recompute-modules: each listed module's forward runs again in the backward
(calc.training.cost, "recompute modules"), worked by hand from the GEMM FLOPs, the tensor rate and the HBM traffic."""

from __future__ import annotations

import pytest

from calc.hardware.efficiency import GEMM_LAUNCH_S
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import EW_I_PASSES, Efficiencies, ModelCost
from calc.training.layout import Layout
from calc.training.step import hfu_flops, step_terms

PLATEAU = 0.5  # a given GEMM plateau: a tile-aligned compute-bound GEMM runs at exactly half the peak


def _cost(name: str, seq: int = 4096) -> ModelCost:
    return ModelCost(load_model(name), load_gpu("h100-sxm"), load_system("dgx-h100"), seq, "bf16",
                     Efficiencies(gemm_plateau=PLATEAU))


def test_dense_mlp_recompute_by_hand() -> None:
    """llama3-8b (H 4096, I 14336, gated, 32 layers), b 1, s 4096, TP 1, 2 micro-batches, H100 SXM bf16 989.4 TFLOP/s:
    the MLP's three GEMMs [4096, 4096] @ [4096, 14336] (gate, up) and [4096, 14336] @ [14336, 4096] (down) are each
    2 x 4096 x 4096 x 14336 = 481,036,337,152 FLOPs, tile-aligned, at 0.5 x 989.4e12 = 494.7e12 FLOP/s:
    0.97238... ms each + 4 us launch; the activation reads / writes EW_I_PASSES x 4096 x (2 x 14336) bf16 elements
    at the run's HBM rate. recompute_s = 2 micro-batches x 32 layers x (3 GEMMs + activation)."""
    cost = _cost("llama3-8b")
    gemm = 2 * 4096 * 4096 * 14336 / (0.5 * 989.4e12) + GEMM_LAUNCH_S
    act = EW_I_PASSES * 4096 * 2 * 14336 * 2 / cost.hbm
    per_layer = 3 * gemm + act
    assert 3 * gemm == pytest.approx(2.9291e-3, rel=1e-4)
    lay = Layout(dp=1, recompute="selective", recompute_modules=frozenset({"mlp"}))
    t = step_terms(cost, lay, 2, 2)
    assert t.exposed["recompute_s"] == pytest.approx(2 * 32 * per_layer, rel=1e-9)
    # layernorm as well: + the two RMSNorms' traffic, read + write 4096 x 4096 bf16 each
    both = step_terms(cost, lay.with_(recompute_modules=frozenset({"mlp", "layernorm"})), 2, 2)
    norms = 2 * 2 * 4096 * 4096 * 2 / cost.hbm
    assert both.exposed["recompute_s"] == pytest.approx(2 * 32 * (per_layer + norms), rel=1e-9)
    # HFU: + 2 x s x the MLP's 3 x 4096 x 14336 weights x 32 layers per sequence
    base = hfu_flops(cost, Layout(dp=1), 2)
    assert hfu_flops(cost, lay, 2) - base == pytest.approx(2 * 2 * 4096 * 3 * 4096 * 14336 * 32, rel=1e-12)


def test_moe_recompute_makes_the_step_slower() -> None:
    """Qwen3-235B-A22B with EP 8: --recompute-modules moe re-runs the router, the grouped expert GEMMs, the routing
    traffic and the dispatch + combine all-to-all; the step is slower than without, by more than the experts' GEMMs."""
    cost = _cost("qwen3-235b-a22b")
    base = Layout(tp=2, pp=8, dp=2, ep=8, etp=1, sp=True, zero=1)
    plain = step_terms(cost, base, 64, 32)
    moe = step_terms(cost, base.with_(recompute="selective", recompute_modules=frozenset({"moe"})), 64, 32)
    assert moe.step_time_s > plain.step_time_s
    assert moe.exposed["recompute_s"] > 0 == plain.exposed["recompute_s"]
    assert moe.totals["ep_comm_s"] > plain.totals["ep_comm_s"]  # the all-to-all runs again
    assert moe.totals["tp_comm_s"] > plain.totals["tp_comm_s"]  # and the MLP's SP gather / scatter
    # HFU per sequence: 94 layers x 2 x s x (router 4096 x 128 + 8 active experts x 3 x 4096 x 1536)
    per_layer = 4096 * 128 + 8 * 3 * 4096 * 1536
    layout = base.with_(recompute="selective", recompute_modules=frozenset({"moe"}))
    assert hfu_flops(cost, layout, 64) - hfu_flops(cost, base, 64) == pytest.approx(64 * 94 * 2 * 4096 * per_layer, rel=1e-12)
    # "mlp" is the dense MLP: a model of MoE layers only recomputes nothing with it
    mlp = step_terms(cost, base.with_(recompute="selective", recompute_modules=frozenset({"mlp"})), 64, 32)
    assert mlp.exposed["recompute_s"] == 0 and mlp.step_time_s == plain.step_time_s


def test_moe_act_is_the_routed_share_of_the_activation() -> None:
    """DeepSeek-V3 MoE layer: routed k x I_e = 8 x 2048, one shared expert of 2048: moe_act re-runs 8/9 of the
    activation traffic, shared_experts the shared GEMMs and the other 1/9; nested in "moe" each runs once more (their
    checkpoints re-run inside moe's recomputation and again in their own backward), so the times add."""
    cost = _cost("deepseek-v3")
    lc = cost.layer(1, 1, 1, 1, 8, False)  # kind 1: the MoE layers
    assert lc.moe and lc.act_routed_fwd == pytest.approx(lc.act_fwd * 8 / 9, rel=1e-12)
    act, _, _ = lc.module_recompute(("moe_act",))
    shared, _, _ = lc.module_recompute(("shared_experts",))
    moe, _, ep = lc.module_recompute(("moe",))
    assert act == pytest.approx(lc.act_fwd * 8 / 9) and shared == pytest.approx(lc.shared_gemm_fwd + lc.act_fwd / 9)
    assert ep == lc.ep_fwd > 0
    assert lc.module_recompute(("moe", "moe_act", "shared_experts"))[0] == pytest.approx(moe + act + shared)
    # mla_up_proj: q_b_proj 1536 x 24576 and kv_b_proj 512 x 32768 at T = 4096, the DeepSeek recompute's GEMMs
    up = 2 * 4096 * (1536 * 24576 + 512 * 32768) / (0.5 * 989.4e12) + 2 * GEMM_LAUNCH_S
    assert lc.module_recompute(("mla_up_proj",))[0] == pytest.approx(up, rel=1e-9)


def test_no_modules_is_megatrons_default_core_attn() -> None:
    """--recompute selective with no module list keeps Megatron's default, recompute_modules ["core_attn"]: Megatron-
    Core checkpoints the core attention (attention.py _checkpointed_attention_forward), so its forward (the flash
    kernel) runs again before the backward: the step and HFU both count it (QA finding: HFU counted it, time did not)."""
    cost = _cost("llama3-8b")
    none = step_terms(cost, Layout(tp=2, dp=4, sp=True), 16, 8)
    sel = step_terms(cost, Layout(tp=2, dp=4, sp=True, recompute="selective"), 16, 8)
    core = step_terms(cost, Layout(tp=2, dp=4, sp=True, recompute="selective", recompute_modules=frozenset({"core_attn"})),
                      16, 8)
    assert sel.step_time_s > none.step_time_s
    assert sel.step_time_s == pytest.approx(core.step_time_s, rel=1e-12)
    layer = cost.layer(0, 1, 2, 1, 1, True)
    assert sel.totals["recompute_s"] == pytest.approx(8 * 32 * layer.attn_fwd, rel=1e-9)
    assert hfu_flops(cost, Layout(tp=2, dp=4, recompute="selective"), 16) == pytest.approx(
        16 * (cost.model_flops_per_seq + cost.layer_attention_flops_per_seq))


def test_explain_names_the_recomputed_modules(cli) -> None:
    out = cli("train-step", "qwen3-30b-a3b", "--gpu", "h100-sxm", "--num-gpus", "8", "--tp", "1", "--ep", "8",
              "--zero", "1", "--recompute", "selective", "--recompute-modules", "moe,layernorm",
              "--global-batch", "16", "--seq", "4096", "--explain")
    assert out.code == 0, out.err
    assert "recomputed modules layernorm, moe" in out.out


def test_core_attn_listed_reruns_the_fused_kernel() -> None:
    """Listed explicitly, core_attn re-runs the attention forward even under FlashAttention: Megatron-Core wraps the
    core attention in tensor_parallel.checkpoint (attention.py _checkpointed_attention_forward), whose backward runs
    the fused kernel's forward again (transformer_config.py warns it is not needed with fused attention). 32 layers x
    2 micro-batches x one layer's attention forward; its HFU adds the attention FLOPs as plain selective does."""
    cost = _cost("llama3-8b")
    lay = Layout(dp=1, recompute="selective", recompute_modules=frozenset({"core_attn"}))
    attn = cost.layer(0, 1, 1, 1, 1, False).attn_fwd
    assert attn > 0
    assert step_terms(cost, lay, 2, 2).exposed["recompute_s"] == pytest.approx(2 * 32 * attn, rel=1e-12)
    assert hfu_flops(cost, lay, 2) == hfu_flops(cost, Layout(dp=1, recompute="selective"), 2)
