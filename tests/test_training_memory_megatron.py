"""Megatron-class training memory terms taken from the frameworks' sources: fp8 GEMM inputs saved quantized by
Transformer Engine, Megatron's CPU activation offloading, and Megatron-FSDP's bf16 unit gradients; numbers worked
by hand from the model shapes."""

from __future__ import annotations

import pytest

from calc.errors import LLMCalcError
from calc.memory.activations import LayerSetup, layer_buffers
from calc.memory.training import fsdp_in_flight_bytes
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost
from calc.training.fp8_recipe import saved_gemm_input_bytes
from calc.training.layout import Layout, check_training_layout
from calc.training.step import memory_per_gpu

# Llama 3 70B: H 8192, 64 heads of 128, 8 KV heads, FFN 28672 (SwiGLU), vocab 128256, 80 layers
H, HEADS, KV, D, FFN, V = 8192, 64, 8, 128, 28672, 128256
# one layer's saved bytes per token in bf16, fused norms, FlashAttention, TP 1 (calc.memory.activations.layer_buffers):
# two norm inputs 2 x (2H + 4) + q/k/v input 2H + Q, K, V (64 + 16) x 128 x 2 + O 2 x 64 x 128 + log-sum-exp 4 x 64
# + gate/up input 2H + gate, up outputs 2 x 2 x FFN + down input 2 x FFN
BF16_LAYER = 2 * (2 * H + 4) + 2 * H + (HEADS + 2 * KV) * D * 2 + 2 * HEADS * D + 4 * HEADS + 2 * H + 4 * FFN + 2 * FFN


def test_bf16_layer_matches_hand_count() -> None:
    m = load_model("llama3-70b")
    assert sum(b.bytes for b in layer_buffers(m, 1, 1, LayerSetup(full=True))) == BF16_LAYER == 274_696


def test_fp8_gemm_inputs_saved_quantized() -> None:
    # Transformer Engine under fp8 saves each linear's input quantized: q/k/v input, gate/up input and down input at
    # 1 B instead of 2, and o_proj its own 1-byte copy of the attention output (which stays bf16 for the attention
    # backward): 274,696 - H - H - FFN + HEADS x D = 237,832 B per token; MXFP8 adds one scale byte per 32 elements
    m = load_model("llama3-70b")
    fp8 = BF16_LAYER - H - H - FFN + HEADS * D
    assert sum(b.bytes for b in layer_buffers(m, 1, 1, LayerSetup(full=True, gemm_input_bytes=1.0))) == fp8 == 237_832
    mx = saved_gemm_input_bytes("fp8", "megatron", "mxfp8")
    assert mx == 1 + 1 / 32
    elements = H + H + FFN + HEADS * D  # the four quantized inputs, per token
    assert sum(b.bytes for b in layer_buffers(m, 32, 1, LayerSetup(full=True, gemm_input_bytes=mx))) == 32 * fp8 + elements
    # torchao's Float8Linear (the fsdp stack) keeps the bf16 input; bf16 runs keep theirs
    assert saved_gemm_input_bytes("fp8", "fsdp", "tensorwise") == 0
    assert saved_gemm_input_bytes("bf16", "megatron", "delayed") == 0


def _cost(dtype: str = "bf16", stack: str = "megatron", seq: int = 4096) -> ModelCost:
    return ModelCost(load_model("llama3-70b"), load_gpu("gb200"), load_system("gb200-nvl72"), seq, dtype, Efficiencies(stack=stack))


def test_cpu_offloading_keeps_l_minus_n_layers() -> None:
    # Megatron --cpu-offloading-num-layers 40 of 80 (TE offloads the saved tensors of 40 layers): the GPU keeps 40
    # layers; with one micro-batch of 4096 tokens that is 40 x 274,696 x 4096 B less than keeping all 80
    cost, base = _cost(), Layout(dp=64, zero=1)
    keep_all = memory_per_gpu(cost, base, 1)["activations"]
    offload = memory_per_gpu(cost, base.with_(cpu_offload_layers=40), 1)["activations"]
    assert keep_all - offload == 40 * BF16_LAYER * 4096
    m = cost.m
    assert check_training_layout(m, base.with_(cpu_offload_layers=40), 64, 64, 4096) == 1
    for bad, why in ((base.with_(cpu_offload_layers=80), "only for 0 to 79"),
                     (Layout(pp=2, dp=32, zero=1, cpu_offload_layers=10), "pipeline parallelism"),
                     (base.with_(cpu_offload_layers=10, recompute="full"), "recomputation")):
        with pytest.raises(LLMCalcError, match=why):
            check_training_layout(m, bad, 64, 64, 4096)


def test_megatron_fsdp_unit_gradients_in_bf16() -> None:
    # ZeRO-3 at TP 1: the largest unsharded unit is the root (embedding + head + final norm, 2 V H + H parameters):
    # bf16 weights 2 B + its unreduced gradient, bf16 (2 B) in Megatron-FSDP without grad_reduce_in_fp32, fp32 (4 B)
    # in torchtitan's FSDP2 (reduce_dtype float32)
    m = load_model("llama3-70b")
    root = 2 * V * H + H
    assert fsdp_in_flight_bytes(m, 1, reduce_bytes=2) == root * 4
    assert fsdp_in_flight_bytes(m, 1) == root * 6
    layout = Layout(dp=64, zero=3)
    assert memory_per_gpu(_cost(), layout, 1)["FSDP unsharded layers"] == root * 4
    assert memory_per_gpu(_cost(stack="torchtitan"), layout, 1)["FSDP unsharded layers"] == root * 6


def test_memory_mode_train_fsdp_units_named_input() -> None:
    # memory --mode train keeps PyTorch FSDP's fp32 reduce (as fine-tuning): the root unit 2 V H + H parameters x (2 + 4) B;
    # with Megatron-FSDP's bf16 gradients (x (2 + 2) B) it prices what train-step prices on a Megatron stack
    from calc.memory.training import MEGATRON_FSDP_GRAD_BYTES, training_memory
    from calc.specs import Parallelism

    m = load_model("llama3-70b")
    r = training_memory(m, plan=Parallelism(dp=64), zero=3, seq=4096, in_flight=1)
    assert r.per_gpu["FSDP unsharded layers"] == (2 * V * H + H) * 6
    meg = training_memory(m, plan=Parallelism(dp=64), zero=3, seq=4096, in_flight=1, fsdp_reduce_bytes=MEGATRON_FSDP_GRAD_BYTES)
    assert meg.per_gpu["FSDP unsharded layers"] == (2 * V * H + H) * 4
    assert meg.per_gpu_bytes == sum(memory_per_gpu(_cost(), Layout(dp=64, zero=3), 1).values())


def test_report_memory_page_matches_train_step_under_zero3() -> None:
    from calc.report.build import timed_plan_memory
    from calc.training.step import train_step

    cost = _cost()
    step = train_step(cost, Layout(tp=4, dp=16, zero=3, sp=True), global_batch=64)
    assert timed_plan_memory(cost.m, cost.gpu, step).per_gpu_bytes == step.memory_per_gpu_bytes
