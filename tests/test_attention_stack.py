"""Attention kernel rates from the published FlashAttention-2/3 / cuDNN tables, the named training stacks and the fp8
recipes (calc.hardware.attention, calc.training.stack, calc.training.fp8_recipe): each number from the paper or README
it cites, or worked by hand in a comment."""

from __future__ import annotations

import subprocess
import sys

import pytest

from calc.hardware.attention import attention_rate
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost
from calc.training.fp8_recipe import recipe_of
from calc.training.layout import Layout
from calc.training.stack import default_efficiency, stack_key
from calc.training.step import train_step

TF = 1e12


@pytest.mark.parametrize(("kernel", "direction", "head_dim", "seq", "causal", "published"), [
    ("fa3", "fwd", 128, 16384, True, 616),    # FA3 paper Fig. 5(d): FlashAttention-3, causal, hd 128, 16k
    ("cudnn", "fwd", 128, 2048, True, 484),   # Fig. 5(d): cuDNN, causal, hd 128, 2k
    ("fa2", "fwd", 64, 512, False, 282),      # Fig. 5(a): FlashAttention-2, non-causal, hd 64, 512
    ("fa3", "fwd", 256, 8192, False, 746),    # Fig. 5(c): FlashAttention-3, non-causal, hd 256, 8k
    ("fa2", "bwd", 128, 8192, False, 318),    # Fig. 6(b): FlashAttention-2 backward, hd 128, 8k
    ("cudnn", "bwd", 128, 1024, False, 408),  # Fig. 6(b): cuDNN backward, hd 128, 1k
])
def test_h100_rates_reproduce_the_published_bars(kernel, direction, head_dim, seq, causal, published) -> None:
    rate = attention_rate(load_gpu("h100"), kernel, direction, head_dim, seq, causal)
    assert rate / TF == pytest.approx(published * 989.4 / 989.0, rel=1e-3)  # the catalog's 989.4 vs the tables' 989


def test_rates_between_and_beyond_the_table() -> None:
    h100 = load_gpu("h100")
    # 2896 = 2^11.5, half way in log2 between 2k (521) and 4k (579): (521 + 579) / 2 = 550
    assert attention_rate(h100, "fa3", "fwd", 128, 2896.3, True) / TF == pytest.approx(550 * 989.4 / 989, rel=2e-3)
    # past 16k the kernels have plateaued: 64k reads the 16k bar
    assert attention_rate(h100, "fa2", "fwd", 128, 65536) == attention_rate(h100, "fa2", "fwd", 128, 16384)
    # the backward is slower than the forward for every kernel at 2k-16k (Fig. 5 vs Fig. 6)
    for kernel in ("fa2", "cudnn", "fa3"):
        for seq in (2048, 16384):
            assert attention_rate(h100, kernel, "bwd", 128, seq) < attention_rate(h100, kernel, "fwd", 128, seq)
    # a causal mask costs most at short sequences: FA2 hd 128 at 512 is 191 / 309 = 0.62 of non-causal
    ratio = attention_rate(h100, "fa2", "fwd", 128, 512, True) / attention_rate(h100, "fa2", "fwd", 128, 512, False)
    assert ratio == pytest.approx(191 / 309, rel=1e-6)


def test_a100_and_triton_rates() -> None:
    a100, h100 = load_gpu("a100"), load_gpu("h100")
    # Dao 2023 sec. 4.1: FA2 on A100 up to 73% (fwd) / 63% (bwd) of 312 TFLOP/s at its best shape (hd 128, long, non-causal)
    assert attention_rate(a100, "fa2", "fwd", 128, 16384, False) / TF == pytest.approx(0.73 * 312, rel=1e-6)
    assert attention_rate(a100, "fa2", "bwd", 128, 16384, False) / TF == pytest.approx(0.63 * 312, rel=1e-6)
    # FA3 / cuDNN need sm90: asked on an A100 they fall back to FA2's rate
    assert attention_rate(a100, "fa3", "fwd", 128, 4096) == attention_rate(a100, "fa2", "fwd", 128, 4096)
    # llm-foundry's Triton kernel: FA2 / 1.8 (FA2 1.3-2.5x faster than FlashAttention in Triton): 335 / 1.8 = 186.1
    assert attention_rate(h100, "triton", "fwd", 128, 16384) / TF == pytest.approx(335 / 1.8 * 989.4 / 989, rel=1e-3)


def test_layer_attention_time_uses_the_stack_kernel() -> None:
    # Llama-3-8B at 32k, b = 1: 2 b h (d_qk + d_v) s(s+1)/2 = 2 x 32 x 256 x 32768 x 32769 / 2 = 8.7968e12 FLOPs forward
    flops = 2 * 32 * 256 * 32768 * 32769 / 2
    assert flops == pytest.approx(8.7968e12, rel=1e-4)
    m, g, s = load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100")
    cost = ModelCost(m, g, s, 32768, "bf16", Efficiencies(stack="fsdp", stack_efficiency=1.0))
    lc = cost.layer(0, 1, 1, 1, 1, False)
    # fsdp = SDPA's FlashAttention-2: 335 TFLOP/s causal forward at >= 16k; backward 2.5 x FLOPs at 335 x 322/370
    assert lc.attn_fwd == pytest.approx(flops / (335e12 * 989.4 / 989), rel=1e-3)
    assert lc.bwd - 2 * lc.gemm_fwd - 2 * lc.ew_fwd == pytest.approx(2.5 * flops / (335e12 * 322 / 370 * 989.4 / 989), rel=1e-3)
    # the stack efficiency divides every compute kernel: 0.5 doubles the layer's forward
    half = ModelCost(m, g, s, 32768, "bf16", Efficiencies(stack="fsdp", stack_efficiency=0.5)).layer(0, 1, 1, 1, 1, False)
    assert half.fwd == pytest.approx(2 * lc.fwd, rel=1e-9)


def test_stack_names() -> None:
    assert stack_key("nemo") == stack_key("megatron-bridge") == stack_key(None) == "megatron"
    assert stack_key("torchtitan") == "fsdp" and stack_key("llm-foundry") == "llm-foundry"
    assert stack_key("hai-llm (DeepSeek internal)") == "other"
    assert default_efficiency("megatron") == 1.0  # the reference, by definition


def test_fp8_recipe_spellings() -> None:
    assert recipe_of("float8 rowwise (torchao)") == "rowwise"
    assert recipe_of("current-scaling (per-tensor)") == "tensorwise"
    assert recipe_of("Transformer Engine amp_fp8 (delayed scaling, TE default)") == "delayed"
    assert recipe_of("mxfp8") == "mxfp8" and recipe_of(None) is None


def test_rowwise_over_tensorwise_reproduces_torchao_benchmark() -> None:
    # torchao/float8/README.md "Training benchmarks": Llama3-8B, 8 x H100, seq 8192, batch 1, FSDP2, per-op SAC:
    # tensorwise 7689.5 tokens/s, rowwise 6768: the rowwise step is 7689.5 / 6768 = 1.136 x the tensorwise one
    m, g, s = load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100")

    def step(recipe: str) -> float:
        cost = ModelCost(m, g, s, 8192, "fp8", Efficiencies(stack="fsdp", fp8_recipe=recipe))
        return train_step(cost, Layout(dp=8, zero=3, recompute="sac"), global_batch=8).step_time_s

    assert step("rowwise") / step("tensorwise") == pytest.approx(7689.5 / 6768, rel=0.03)


def test_cli_refuses_an_unknown_stack() -> None:
    out = subprocess.run([sys.executable, "-c", "from calc.cli.app import main; main()", "train-step", "llama3-8b",
                          "--gpu", "h100", "--num-gpus", "8", "--global-batch", "32", "--stack", "bogus"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "--stack" in out.stderr and "Traceback" not in out.stderr
