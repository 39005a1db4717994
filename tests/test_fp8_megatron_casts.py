"""fp8 casts and TP all-gathers of a Megatron-Core (Transformer Engine) step (calc.training.cost.fp8_cast_s,
calc.training.fp8_recipe "Megatron-Core"), each against bytes worked out by hand from Llama-3-8B's shapes
(H 4096, 32 query / 8 KV heads of 128, MLP 14336) at T = 8192 tokens, on an H100 SXM (3.35 TB/s x 0.9)."""

from __future__ import annotations

import pytest

from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost

HBM = 3.35e12 * 0.9
T, H = 8192, 4096  # tokens per micro-batch, hidden size (KV width 1024, MLP width 14336 in the comments)


def _cost(dtype: str = "fp8", recipe: str | None = None) -> ModelCost:
    return ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), T, dtype,
                     Efficiencies(stack="megatron", fp8_recipe=recipe))


def test_delayed_no_tp_casts_only_the_unfused_inputs_and_the_gradients() -> None:
    # TP 1: q/k/v and gate/up inputs quantized inside the RMSNorm kernel (0 B more), weights cached across
    # micro-batches; o_proj input [T, 4096] and down_proj input [T, 14336] cast at 4 B:
    # 4 x 8192 x (4096 + 14336) = 603,979,776 B
    lc = _cost().layer(0, 1, 1, 1, 1, False)
    assert lc.cast_fwd == pytest.approx(603_979_776 / HBM, rel=1e-9)
    assert lc.cast_fwd == pytest.approx(200.3e-6, rel=1e-3)
    # backward: every output gradient at 4 B: qkv [T, 4096 + 2 x 1024], o [T, 4096], gate + up [T, 2 x 14336],
    # down [T, 4096]: 4 x 8192 x 43,008 = 1,409,286,144 B
    assert lc.cast_bwd == pytest.approx(1_409_286_144 / HBM, rel=1e-9)


def test_current_scaling_pays_the_norm_fed_casts_once_per_fused_linear() -> None:
    # tensorwise (TE Float8CurrentScaling): not norm-fused, 6 B per element, but q/k/v share one cast (linear_qkv)
    # and gate/up one (linear_fc1): 6 x 8192 x (4096 [qkv] + 4096 [fc1] + 4096 [o] + 14336 [down]) = 1,308,622,848 B
    lc = _cost(recipe="tensorwise").layer(0, 1, 1, 1, 1, False)
    assert lc.cast_fwd == pytest.approx(1_308_622_848 / HBM, rel=1e-9)
    rows = {g[0]: g for g in _cost(recipe="tensorwise").layer_gemms(0, 1, 1, 1, 1)}
    assert rows["attention.k_proj"][6] == 0.0 and rows["mlp.up_proj"][6] == 0.0  # no second cast of the same input


def test_sequence_parallel_casts_local_rows_and_transposes_the_gathered_copy() -> None:
    # TP 2 with SP, delayed: the norm-fed inputs are quantized in the norm on T/2 rows (0 B more) and gathered in fp8;
    # the columnwise copy is made after the gather: 2 B x T x 4096 each for linear_qkv and linear_fc1 (67,108,864 B
    # each); o_proj input [T, 2048] and down_proj input [T, 7168] at 4 B: 67,108,864 + 234,881,024
    lc = _cost().layer(0, 1, 2, 1, 1, True)
    assert lc.cast_fwd == pytest.approx((2 * 67_108_864 + 67_108_864 + 234_881_024) / HBM, rel=1e-9)
    # backward: qkv grad [T, 3072] and gate/up grad [T, 14336] at 4 B (100,663,296 + 469,762,048); the row-parallel
    # o_proj and down_proj output gradients cast on T/2 rows at 3 B and transposed after the gather at 2 B:
    # (3 x 4096 + 2 x 8192) x 4096 = 117,440,512 B each
    assert lc.cast_bwd == pytest.approx((100_663_296 + 469_762_048 + 2 * 117_440_512) / HBM, rel=1e-9)


def test_bf16_run_has_no_casts() -> None:
    lc = _cost("bf16").layer(0, 1, 2, 1, 1, True)
    assert (lc.cast_fwd, lc.cast_bwd) == (0.0, 0.0)


def test_sequence_parallel_all_gathers_move_fp8() -> None:
    # dense layer, TP 2 + SP: forward 2 all-gathers of [T, H] at 1 B (fp8) + 2 reduce-scatters at 2 B (bf16); backward
    # the output-gradient gathers and the input re-gathers in fp8 (4) + 2 reduce-scatters
    fp8, bf16 = _cost(), _cost("bf16")
    ag8 = fp8.coll("all_gather", T * H * 1.0, 2)
    ag16, rs16 = fp8.coll("all_gather", T * H * 2.0, 2), fp8.coll("reduce_scatter", T * H * 2.0, 2)
    lc = fp8.layer(0, 1, 2, 1, 1, True)
    assert lc.tp_fwd == pytest.approx(2 * ag8 + 2 * rs16, rel=1e-12)
    assert lc.tp_bwd == pytest.approx(4 * ag8 + 2 * rs16, rel=1e-12)
    ref = bf16.layer(0, 1, 2, 1, 1, True)
    assert ref.tp_fwd == pytest.approx(2 * ag16 + 2 * rs16, rel=1e-12)
    assert ag8 < ag16
