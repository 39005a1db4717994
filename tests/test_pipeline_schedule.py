"""The layer-micro-batches a pipeline rank holds (calc.memory.pipeline), walked by hand through Megatron-Core's
interleaved 1F1B order, and the memory engines that read them."""

from __future__ import annotations

import pytest

from calc.memory.pipeline import chunk_layers, held_stage_layers, peak_held_layers
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import ModelCost
from calc.training.layout import Layout
from calc.training.step import layout_memory, memory_per_gpu


def test_one_f_one_b_holds_p_minus_rank_micro_batches() -> None:
    # PipeDream-Flush: rank r runs p - r - 1 warm-up forwards, then one more before its first backward
    assert [peak_held_layers(4, 8, r, (3,)) for r in range(4)] == [12, 9, 6, 3]
    assert peak_held_layers(4, 2, 0, (3,)) == 6  # only 2 micro-batches: both forwards, then the backwards


def test_an_empty_chunk_adds_nothing_walked_by_hand() -> None:
    # p = 2, v = 2, N = 2, m = 4; rank 0's chunk 0 is the embedding alone (0 layers), chunk 1 one layer.
    # warm-up 2(p - 1) + (v - 1)N = 4 forwards: F(c0, mb0) F(c0, mb1) F(c1, mb0) F(c1, mb1): 2 layers held;
    # steady: F(c0, mb2) 2, B(c1, mb0) 1, F(c0, mb3) 1, B(c1, mb1) 0, F(c1, mb2) 1, B(c0, mb0) 1, F(c1, mb3) 2, ...
    assert peak_held_layers(2, 4, 0, (0, 1), 2) == 2
    # the same rank with a layer in each chunk: the 4 warm-up forwards + 1 = 5 (in_flight_microbatches' closed form)
    assert peak_held_layers(2, 4, 0, (1, 1), 2) == 5


def test_llama3_405b_split_chunk_by_chunk() -> None:
    # 126 layers + embedding + loss = 128 slots on PP 16 x VPP 8: one per chunk, the first chunk of rank 0 the
    # embedding alone, the last chunk of rank 15 the loss alone (Llama 3 paper sec. 3.3.2)
    split = dict(embedding=True, loss=True)
    assert chunk_layers(126, 16, 8, 0, **split) == (0,) + (1,) * 7
    assert chunk_layers(126, 16, 8, 7, **split) == (1,) * 8
    assert chunk_layers(126, 16, 8, 15, **split) == (1,) * 7 + (0,)
    # m = 32: rank 1 runs 2 x 14 + 7 x 16 = 140 warm-up forwards of one layer + 1 = 141; the last rank 7 x 16 + 1 = 113
    assert held_stage_layers(126, 16, 32, vpp=8, **split) == (141, 113)
    # m = 16 (16,384 GPUs): every rank but the last runs all 128 forwards first, rank 1's all of one layer; the last
    # rank's 16 steady-state forwards are its loss-only chunk's, so it never adds the 113th
    assert held_stage_layers(126, 16, 16, vpp=8, **split) == (128, 112)


def test_uneven_split_second_rank_fullest() -> None:
    # 126 layers on PP 16 without the embedding in the split: Megatron-Core's [7, 8 x 14, 7]; 1F1B at m = 16:
    # rank 0 16 x 7 = 112, rank 1 15 x 8 = 120, rank 15 1 x 7
    assert held_stage_layers(126, 16, 16) == (120, 7)
    assert held_stage_layers(32, 1, 8) is None


def test_memory_train_and_train_step_read_one_schedule() -> None:
    m = load_model("llama3.1-405b")
    cost = ModelCost(m, load_gpu("h100"), load_system("dgx-h100"), 8192)
    lay = Layout(tp=8, pp=16, dp=64, vpp=8, sp=True, zero=1, pp_embedding=True, pp_loss=True)
    step = sum(memory_per_gpu(cost, lay, 32).values())
    page = layout_memory(m, lay, 32, seq=8192, gpu=cost.gpu).per_gpu_bytes
    assert step == page
    # the fullest rank holds 141 layers of 533,209,088 B (tests/test_training_memory.py) + the workspace 436,207,616
    assert memory_per_gpu(cost, lay, 32)["activations"] == pytest.approx(141 * 533_209_088 + 436_207_616, abs=1)


def test_memory_modes_share_the_uneven_split(cli) -> None:
    # llama3-70b, 80 layers. PP 4 (20 a stage) and PP 5 (16 a stage) both keep 80 layer-micro-batches on rank 0
    # (4 x 20, 5 x 16); PP 6 is Megatron-Core's uneven [12, 14 x 4, 12]: rank 0 holds 6 x 12 = 72, rank 1 5 x 14 = 70.
    # `memory --mode train` and `--mode finetune --method full` read the same split.
    def act(pp: int, mode: tuple[str, ...] = ("--mode", "train")) -> int:
        r = cli("memory", "llama3-70b", *mode, "--stack", "megatron", "--gpu", "h100", "--tp", "8", "--pp", str(pp),
                "--dp", "2", "--seq", "4096", "--zero", "1", "--json")
        assert r.code == 0, r.err
        return r.json()["per_gpu"]["activations"]

    assert act(4) == act(5)
    eight_layers = act(5) - act(6)
    assert eight_layers > 0 and eight_layers % 8 == 0
    assert act(6, ("--mode", "finetune", "--method", "full")) == act(6)


def _full_walk(pp: int, micro: int, rank: int, chunks: tuple[int, ...], group: int) -> int:
    """The schedule walked to its end, forward by forward (no shortcut): the reference for peak_held_layers."""
    v, total = len(chunks), micro * len(chunks)
    warm = min(2 * (pp - rank - 1) + (v - 1) * group if v > 1 else pp - rank - 1, total)

    def layers(k: int, forward: bool) -> int:
        c = (k % (group * v)) // group
        return chunks[c if forward else v - 1 - c]

    held = peak = sum(layers(k, True) for k in range(warm))
    for i in range(total - warm):
        held += layers(warm + i, True)
        peak = max(peak, held)
        held -= layers(i, False)
    return max(peak, held)


def test_the_walk_stops_after_one_period_without_changing_the_peak() -> None:
    import random
    import time

    rng = random.Random(2705)
    for _ in range(500):
        pp, v = rng.randint(2, 10), rng.randint(1, 5)
        group = pp * rng.randint(1, 3) if v > 1 else pp
        micro = group * rng.randint(1, 6)
        chunks = tuple(rng.randint(0, 3) for _ in range(v))
        rank = rng.randint(0, pp - 1)
        assert peak_held_layers.__wrapped__(pp, micro, rank, chunks, group) == _full_walk(pp, micro, rank, chunks, group)
    start = time.perf_counter()  # ten million micro-batches (a hostile --global-batch): no longer than ten
    assert held_stage_layers(126, 16, 10_000_000, vpp=8, embedding=True, loss=True) == (141, 113)
    assert time.perf_counter() - start < 0.5
