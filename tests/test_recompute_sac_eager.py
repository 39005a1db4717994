"""torchtitan's op-level SAC under eager attention: its save list (torchtitan activation_checkpoint.py _save_list:
aten.mm and the SDPA kernels) holds no op of an eager attention (batched matmuls and a softmax), so the attention
core is recomputed and nothing of it is kept; under FlashAttention the kernel's output and log-sum-exp are kept.
Megatron's selective is a different level (the attention core recomputed, every other tensor kept)."""

from __future__ import annotations

import pytest

_BASE = ("memory", "llama2-7b", "--mode", "train", "--gpu", "h100", "--num-gpus", "8", "--dp", "8", "--zero", "3",
         "--batch", "1", "--seq", "4096", "--recompute", "sac")


def test_eager_layer_keeps_input_and_every_second_matmul_output(cli) -> None:
    """Llama-2-7B (H 4,096, MLP 11,008), 4,096 tokens, bf16, worked by hand: layer input, q, v, down = 4 x 4,096 x
    4,096 x 2 B = 134,217,728, gate 4,096 x 11,008 x 2 B = 90,177,536: 224,395,264 B; under FlashAttention + the
    attention output and log-sum-exp 4,096 x (4,096 x 2 + 32 x 4) = 34,078,720: 258,473,984 B."""
    eager = cli(*_BASE, "--attention", "unfused", "--explain")
    flash = cli(*_BASE, "--explain")
    assert eager.code == 0 and flash.code == 0, eager.err + flash.err
    assert "32 layers x 224,395,264 B" in eager.out
    assert "32 layers x 258,473,984 B" in flash.out


def test_sac_is_not_megatron_selective_under_eager_attention(cli) -> None:
    sac = cli(*_BASE, "--attention", "unfused", "--json").json()["activation_bytes"]
    selective = cli(*_BASE[:-1], "selective", "--attention", "unfused", "--json").json()["activation_bytes"]
    # Megatron's selective keeps every tensor but the s x s scores: far more than every second matmul output
    assert sac < selective / 1.5


def test_eager_sac_step_reruns_the_attention_core(cli) -> None:
    """train-step prices what the memory drops: with unfused attention SAC runs half the non-attention forward (as
    under flash, the same GEMMs) and the attention core forward again, which is Megatron selective's whole recompute."""
    def rec(recompute, attention):
        r = cli("train-step", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--dp", "8", "--zero", "3",
                "--micro-batch", "1", "--seq", "4096", "--global-batch", "64", "--recompute", recompute,
                "--attention", attention, "--json")
        assert r.code == 0, r.err
        return r.json()["recompute_s"]
    assert rec("sac", "unfused") == pytest.approx(rec("sac", "flash") + rec("selective", "unfused"), rel=1e-9)
