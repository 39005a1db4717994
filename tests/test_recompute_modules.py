"""Megatron-Core's selective recomputation of named modules (--recompute-modules): the tensors each one drops,
worked by hand from the model shapes (calc.memory.activations.module_buffers)."""

from __future__ import annotations

import pytest

from calc.errors import LLMCalcError
from calc.memory.activations import LayerSetup, stage_activations
from calc.sources.catalog import load_model
from calc.training.layout import Layout, check_training_layout

SEQ = 4096


def _dropped_per_token(model: str, *modules: str) -> tuple[float, float]:
    m = load_model(model)
    full = stage_activations(m, 1, SEQ, LayerSetup(full=True), "none", 1, 1)
    mod = stage_activations(m, 1, SEQ, LayerSetup(full=True, recompute_modules=frozenset(modules)), "none", 1, 1)
    return (full.saved - mod.saved) / SEQ, mod.recompute / SEQ


def test_qwen3_moe_layernorm_and_moe() -> None:
    # Qwen3-235B-A22B: H 4096, top-8 of 128 experts of width 1536, no shared expert; bf16, TP 1, per token:
    # layernorm: the two norm outputs 2 x 4096 x 2 B = 16,384
    # moe: gate/up outputs 2 x 8 x 1536 x 2 = 49,152 + down input 8 x 1536 x 2 = 24,576 + 7 routed copies
    #      7 x 4096 x 2 = 57,344 + router probabilities 128 x 4 = 512 -> 131,584 (the block input, the norm output, stays)
    assert _dropped_per_token("qwen3-235b-a22b", "layernorm", "moe") == (16_384 + 131_584, 16_384 + 131_584)
    # moe_act: only the activation output act(gate)*up, the down projection's input: 8 x 1536 x 2 = 24,576
    assert _dropped_per_token("qwen3-235b-a22b", "moe_act") == (24_576, 24_576)
    # core_attn under FlashAttention drops nothing; mlp is the dense MLP, not the MoE block
    assert _dropped_per_token("qwen3-235b-a22b", "core_attn", "mlp") == (0, 0)


def test_deepseek_v3_mla_up_proj() -> None:
    # DeepSeek-V3 MLA: 128 heads, Q/K 192 and V 128 per head, r_q 1536, r_kv 512, d_rope 64; per token, bf16, TP 1:
    # dropped: Q, K, V after RoPE 128 x (2 x 192 + 128) x 2 = 131,072 and the normed latents (1536 + 512) x 2 x 2 = 8,192;
    # kept for the recomputation: the latents and the RoPE key (1536 + 512 + 64) x 2 = 4,224 -> net 135,040
    saved, rebuilt = _dropped_per_token("deepseek-v3", "mla_up_proj")
    assert saved == 131_072 + 8_192 - 4_224
    assert rebuilt == 131_072 + 8_192


def test_modules_need_selective_and_known_names() -> None:
    m = load_model("qwen3-235b-a22b")
    base = Layout(tp=4, pp=8, vpp=4, dp=8, ep=8, etp=1, sp=True, zero=1, pp_embedding=True, pp_loss=True)
    assert check_training_layout(m, base.with_(recompute="selective", recompute_modules=frozenset({"layernorm", "moe"})),
                                 256, 256, 16384) == 32
    with pytest.raises(LLMCalcError, match="--recompute-modules"):
        check_training_layout(m, base.with_(recompute="full", recompute_modules=frozenset({"moe"})), 256, 256, 16384)
    with pytest.raises(LLMCalcError, match="unknown module"):
        check_training_layout(m, base.with_(recompute="selective", recompute_modules=frozenset({"attention"})), 256, 256, 16384)


def _offloaded_per_token(model: str, offload: tuple[str, ...], recompute: tuple[str, ...] = ()) -> tuple[float, float]:
    m = load_model(model)
    base = stage_activations(m, 1, SEQ, LayerSetup(full=True, recompute_modules=frozenset(recompute)), "none", 1, 1)
    off = stage_activations(m, 1, SEQ, LayerSetup(full=True, recompute_modules=frozenset(recompute),
                                                  offload_modules=frozenset(offload)), "none", 1, 1)
    return (base.saved - off.saved) / SEQ, (off.recompute - base.recompute) / SEQ


def test_fine_grained_offloading_of_expert_inputs() -> None:
    # Megatron --offload-modules expert_fc1 moe_act (each module's input to host memory): Qwen3-235B-A22B per token,
    # bf16, TP 1: expert_fc1's input, the 7 routed copies beyond the norm output 7 x 4096 x 2 = 57,344, and moe_act's
    # input, the gate/up outputs 2 x 8 x 1536 x 2 = 49,152, leave the GPU; one layer of them is reloaded in backward
    assert _offloaded_per_token("qwen3-235b-a22b", ("expert_fc1", "moe_act")) == (106_496, 106_496)
    # with --recompute-modules moe_act the activation output (24,576) is already gone: offloading adds the same 106,496
    assert _offloaded_per_token("qwen3-235b-a22b", ("expert_fc1", "moe_act"), ("moe_act",)) == (106_496, 106_496)
    # a dense model has no expert modules to offload; attn_norm is its attention norm input 4096 x 2 + 4
    assert _offloaded_per_token("llama3-8b", ("expert_fc1", "moe_act")) == (0, 0)
    assert _offloaded_per_token("llama3-8b", ("attn_norm",)) == (4096 * 2 + 4, 4096 * 2 + 4)


def test_offload_modules_checked_as_megatron_does() -> None:
    m = load_model("qwen3-235b-a22b")
    base = Layout(tp=1, pp=4, vpp=6, dp=64, ep=64, etp=1, zero=1, micro_batch=3, pp_embedding=True, pp_loss=True)
    assert check_training_layout(m, base.with_(offload_modules=frozenset({"expert_fc1", "moe_act"})), 256, 3072, 4096) == 16
    with pytest.raises(LLMCalcError, match="attn_proj cannot be offloaded without core_attn"):
        check_training_layout(m, base.with_(offload_modules=frozenset({"attn_proj"})), 256, 3072, 4096)
    with pytest.raises(LLMCalcError, match="unknown module"):
        check_training_layout(m, base.with_(offload_modules=frozenset({"experts"})), 256, 3072, 4096)
