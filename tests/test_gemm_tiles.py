"""GEMM tile quantisation: the least-padding CTA tile of the generation's library list (calc.hardware.efficiency)."""

from __future__ import annotations

import pytest

from calc.hardware.efficiency import gemm_tile, gemm_time, row_tile, tile_quantisation
from calc.sources.catalog import load_gpu


def test_hopper_decode_rows_pad_to_64() -> None:
    """A decode step of 175 + 87 = 262 rows on Hopper: wgmma's M is 64 per warpgroup and CUTLASS ships a 64x128 CTA
    tile, so the rows pad to ceil(262/64) x 64 = 320, not ceil(262/128) x 128 = 384. N = K = 4096: no padding there.
    q = 262/320 = 0.81875, padded FLOPs 2 x 320 x 4096 x 4096 = 10,737,418,240 (was 2 x 384 x 4096^2 = 12,884,901,888)."""
    assert gemm_tile("Hopper", 262, 4096) == (64, 128)
    assert row_tile("Hopper", 262) == 64
    q = tile_quantisation("Hopper", 262, 4096, 4096)
    assert q == pytest.approx(262 / 320)
    assert 2 * 262 * 4096 * 4096 / q == pytest.approx(10_737_418_240)


def test_ampere_pads_rows_and_columns_to_64() -> None:
    """Ampere's smallest CUTLASS sm80 tile is 64x64: 192 rows x 960 columns fit it exactly (every other listed tile
    pads 192 to 256 or 960 to 1024); 100 rows x 1000 columns pad to 128 x 1024 (so does 128x256, the larger tile of
    that tie), K 1000 to 1024 (the 64-deep K tile): q = (100/128) x (1000/1024) x (1000/1024)."""
    assert gemm_tile("Ampere", 192, 960) == (64, 64)
    assert tile_quantisation("Ampere", 100, 1000, 1000) == pytest.approx(100 / 128 * 1000 / 1024 * 1000 / 1024)
    assert tile_quantisation("Ada", 100, 1000, 1000) == tile_quantisation("Ampere", 100, 1000, 1000)


def test_generation_without_a_tile_list_keeps_128() -> None:
    """CDNA3 (no sourced tile list): one 128 x 128 tile, 262 rows -> 384."""
    assert gemm_tile("CDNA3", 262, 4096) == (128, 128)
    assert tile_quantisation("CDNA3", 262, 4096, 4096) == pytest.approx(262 / 384)


def test_large_shapes_are_not_padded() -> None:
    """Multiples of every tile: q = 1 on every generation."""
    for arch in ("Hopper", "Ampere", "CDNA3"):
        assert tile_quantisation(arch, 4096, 8192, 4096) == 1.0


def test_gemm_time_compute_bound_on_the_padded_rows() -> None:
    """H100 SXM bf16 (989.4 TFLOP/s dense), plateau 0.5: [262, 8192] @ [8192, 8192] computes 320 padded rows,
    2 x 320 x 8192^2 = 42,949,672,960 FLOP / (989.4e12 x 0.5) = 86.819 us, above streaming it ((2 x 262 x 8192 +
    8192^2) x 2 B = 142,802,944 B / (3.35e12 x 0.9) = 47.36 us): 86.819 + 4 us launch."""
    h100 = load_gpu("h100")
    expected = 2 * 320 * 8192 * 8192 / (989.4e12 * 0.5) + 4e-6
    assert gemm_time(h100, 262, 8192, 8192, "bf16", plateau=0.5) == pytest.approx(expected, rel=1e-9)
