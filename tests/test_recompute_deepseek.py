"""DeepSeek-V3's recomputation of RMSNorm and MLA up-projections (arXiv 2412.19437 sec. 3.2.3; Megatron-Core
--recompute-modules layernorm mla_up_proj): what it drops, what it re-runs, one meaning in every command."""

from __future__ import annotations

from calc.memory.activations import LayerSetup, stage_activations
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost
from calc.training.layout import Layout
from calc.training.plan import SearchSpace, _recompute_levels
from calc.training.step import memory_per_gpu, step_terms


def _saved(name: str, level: str) -> tuple[int, int]:
    st = stage_activations(load_model(name), 1, 4096, LayerSetup(), level, 1, 1)
    return st.saved, st.recompute


def test_deepseek_v3_layer_drops_norm_outputs_and_up_projections() -> None:
    """DeepSeek-V3 (H 7168, 128 heads, Q/K 192 and V 128 per head, r_q 1536, r_kv 512, d_rope 64), 4096 tokens, bf16:
    dropped: attention-norm output 4096*7168*2 = 58,720,256, MLP-norm output 58,720,256, Q K V
    4096*128*(192+192+128)*2 = 536,870,912, the latents before and after their norms 4096*(1536+512)*2*2 = 33,554,432:
    687,865,856 B, rebuilt for one layer in backward; kept instead: the latents and the RoPE key the recomputation reads,
    4096*(1536+512+64)*2 = 17,301,504. Saved per layer falls by 687,865,856 - 17,301,504 = 670,564,352."""
    none, _ = _saved("deepseek-v3", "none")
    deepseek, rebuilt = _saved("deepseek-v3", "deepseek")
    assert none - deepseek == 670_564_352
    assert rebuilt == 687_865_856


def test_without_mla_only_the_norm_outputs_go() -> None:
    """llama3-8b (H 4096), 4096 tokens: the two norm outputs, 2 x 4096*4096*2 = 67,108,864 B, nothing else."""
    none, _ = _saved("llama3-8b", "none")
    deepseek, rebuilt = _saved("llama3-8b", "deepseek")
    assert none - deepseek == rebuilt == 67_108_864


def _cost(name: str, gpu: str = "h100-sxm") -> ModelCost:
    g = load_gpu(gpu)
    return ModelCost(load_model(name), g, load_system("dgx-h100"), 4096, "bf16", Efficiencies())


def test_deepseek_recompute_reruns_the_up_projections_only() -> None:
    """HFU counts the MLA up-projections once more: q_b_proj 1536 x 128*192 = 37,748,736 and kv_b_proj
    512 x 128*(128+128) = 16,777,216 parameters, 54,525,952 per layer x 61 layers x 2 x 4096 tokens
    = 27,247,272,525,824 FLOPs per sequence; the step re-runs them (and the norms), far less than a full recompute."""
    cost = _cost("deepseek-v3")
    assert cost.up_projection_flops_per_seq == 27_247_272_525_824
    lay = Layout(pp=16, dp=8, ep=8, zero=1)
    levels = [lay.with_(recompute=r) for r in ("none", "deepseek", "full")]
    none, deepseek, full = (sum(memory_per_gpu(cost, x, 16).values()) for x in levels)
    assert none > deepseek > full
    recompute = [step_terms(cost, x, 128, 16).exposed["recompute_s"] for x in levels]
    assert recompute[0] == 0 < recompute[1] < recompute[2] / 10


def test_plan_search_tries_it_for_mla_models_only() -> None:
    assert _recompute_levels(_cost("deepseek-v3"), SearchSpace()) == ["none", "deepseek", "full"]
    assert _recompute_levels(_cost("llama3-8b"), SearchSpace()) == ["none", "full"]


def test_memory_finetune_and_train_accept_it(cli) -> None:
    job = ("deepseek-v2", "--seq", "2048", "--json")
    for mode in (("--mode", "train"), ("--mode", "finetune", "--method", "full")):
        none = cli("memory", *mode, *job).json()["per_gpu"]["activations"]
        assert cli("memory", *mode, *job, "--recompute", "deepseek").json()["per_gpu"]["activations"] < none
