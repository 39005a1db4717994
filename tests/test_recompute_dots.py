"""The "dots" recompute level: JAX's jax.checkpoint_policies.dots_with_no_batch_dims_saveable (Pax
SAVE_DOT_WITH_NO_BATCH_DIM, MaxText remat_policy minimal): each layer keeps its input and every weight-matmul output,
and the attention core and the elementwise ops run again in backward."""

from __future__ import annotations

import pytest


def _train(cli, *extra):
    r = cli("train-step", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--dp", "8", "--zero", "3", "--micro-batch", "1",
            "--seq", "4096", "--global-batch", "64", "--json", *extra)
    assert r.code == 0, r.err
    return r.json()


def test_one_layer_keeps_its_input_and_every_weight_matmul_output(cli) -> None:
    """Llama-2-7B (H 4,096, MLP 11,008, 32 heads of 128, MHA), 4,096 tokens, bf16, TP 1, worked by hand:
    layer input + q, k, v, o = 5 x 4,096 x 4,096 x 2 B; gate, up = 2 x 4,096 x 11,008 x 2 B; down 4,096 x 4,096 x 2 B:
    6 x 33,554,432 + 2 x 90,177,536 = 381,681,664 B."""
    r = cli("memory", "llama2-7b", "--mode", "train", "--gpu", "h100", "--num-gpus", "8", "--dp", "8", "--zero", "3",
            "--batch", "1", "--seq", "4096", "--recompute", "dots", "--explain")
    assert r.code == 0
    assert "32 layers x 381,681,664 B" in r.out


def test_between_none_and_full(cli) -> None:
    none, dots, full = (_train(cli, "--recompute", level) for level in ("none", "dots", "full"))
    # memory: every weight-matmul output but no elementwise intermediate kept; full keeps only the layer inputs
    assert full["memory_per_gpu_bytes"] < dots["memory_per_gpu_bytes"] < none["memory_per_gpu_bytes"]
    # time: the attention core and the elementwise ops again (no GEMM), full a whole forward again
    assert none["step_time_s"] < dots["step_time_s"] < full["step_time_s"]
    # the model FLOPs are the same; the hardware count adds the attention core, as under Megatron's selective
    sel = _train(cli, "--recompute", "selective")
    assert dots["mfu"] * dots["step_time_s"] == pytest.approx(none["mfu"] * none["step_time_s"], rel=1e-9)
    assert dots["hfu"] * dots["step_time_s"] == pytest.approx(sel["hfu"] * sel["step_time_s"], rel=1e-9)


def test_eager_scores_are_recomputed(cli) -> None:
    """The attention's QK^T and PV are dot_generals with batch dimensions: not saved, so under eager attention the
    s x s scores are not kept either (the engine's eager "none" keeps them)."""
    base = ("memory", "llama2-7b", "--mode", "train", "--gpu", "h100", "--num-gpus", "8", "--dp", "8", "--zero", "3",
            "--batch", "1", "--seq", "4096", "--attention", "unfused", "--json")
    eager_none = cli(*base, "--recompute", "none").json()["activation_bytes"]
    eager_dots = cli(*base, "--recompute", "dots").json()["activation_bytes"]
    assert eager_dots < eager_none
    # every layer keeps what it keeps under FlashAttention (only the one layer rebuilt in backward holds its scores)
    explain = cli(*base[:-1], "--recompute", "dots", "--explain").out
    assert "32 layers x 381,681,664 B" in explain
