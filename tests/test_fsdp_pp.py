"""torchtitan's FSDP2 with pipeline parallelism as its own sharding (issue 21 items 2 and 3): the stage's weights stay
gathered and its fp32 gradients accumulate unsharded through the step, fp32 master + Adam sharded over DP; one weight
all-gather and one gradient reduce-scatter per step; Megatron/DeepSpeed-style ZeRO-2/3 with PP still refused."""

from __future__ import annotations

import pytest

from benchmarks.corpus_knobs import knobs, training_layout
from benchmarks.corpus_schema import load_corpus
from calc.errors import LLMCalcError
from calc.memory.training import FSDP_PP, fsdp_pp_states, training_bytes_per_gpu
from calc.model.params import count_params
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import ModelCost
from calc.training.layout import Layout, check_training_layout
from calc.training.step import memory_per_gpu, step_terms

# Llama 3 8B: 8,030,261,248 parameters (the safetensors total of meta-llama/Meta-Llama-3-8B, "8.03B" on its card)
LLAMA3_8B = 8_030_261_248


def test_fsdp_pp_states_hand_worked() -> None:
    # t = 2, p = 4: 8,030,261,248 / 8 = 1,003,782,656 parameters per GPU on its stage
    #   weights   bf16 gathered all step: 2 x 1,003,782,656           = 2,007,565,312
    #   gradients fp32 accumulated unsharded: 4 x 1,003,782,656       = 4,015,130,624
    #   optimizer fp32 master + Adam m, v over d = 8: 12 x 1,003,782,656 / 8 = 1,505,673,984
    assert fsdp_pp_states(LLAMA3_8B, 0, w=2, o=12, tp=2, pp=4, dp=8, ep=1) == (2_007_565_312, 4_015_130_624, 1_505_673_984)


def test_fsdp_pp_peak_keeps_gradients_beside_activations() -> None:
    m = load_model("llama3-8b")
    assert count_params(m).total_params == LLAMA3_8B
    common = dict(params=LLAMA3_8B, tp=2, pp=4, dp=8, zero=3, micro_batch=1, seq=4096, recompute="full", grad_accum=8,
                  reserve_bytes=0, fragmentation=0.0)
    fsdp_pp = training_bytes_per_gpu(m, sharding=FSDP_PP, **common)
    # the rank priced is the last: 8 layers x 218,112,000 + the final norm 4,096 + the head 128,256 x 4,096 =
    # 2,270,236,672 parameters (the first has the same less the norm), the head's logits its larger activations;
    # over TP 2, 1,135,118,336 a GPU: bf16 weights 2 B, fp32 gradients 4 B, fp32 master + Adam 12 B over d = 8
    last = (8 * 218_112_000 + 4_096 + 128_256 * 4_096) // 2
    assert fsdp_pp["weights"] == 2 * last == 2_270_236_672
    assert fsdp_pp["optimizer"] == 12 * last // 8 == 1_702_677_504
    assert fsdp_pp["gradients"] == 4 * last  # whole, persisting: they accumulate from the first backward
    assert fsdp_pp["FSDP unsharded layers"] == 0  # everything of the stage is gathered already
    # ZeRO-1 (Megatron's distributed optimizer) on the same layout: bf16 gradients, 2 B per parameter
    zero1 = training_bytes_per_gpu(m, **{**common, "zero": 1})
    assert zero1["gradients"] == 2 * last and zero1["weights"] == fsdp_pp["weights"]
    assert zero1["activations"] == fsdp_pp["activations"]


def test_megatron_zero3_with_pp_still_refused_fsdp_pp_allowed() -> None:
    m = load_model("llama3-8b")
    with pytest.raises(LLMCalcError, match="ZeRO-3 with PP 4"):
        check_training_layout(m, Layout(pp=4, dp=2, zero=3), 8, 16, 4096)
    assert check_training_layout(m, Layout(pp=4, dp=2, zero=3, sharding=FSDP_PP), 8, 16, 4096) == 8
    for bad in (Layout(pp=1, dp=8, zero=3, sharding=FSDP_PP), Layout(pp=4, dp=2, zero=1, sharding=FSDP_PP),
                Layout(pp=4, dp=2, zero=3, sharding="hsdp")):
        with pytest.raises(LLMCalcError):
            check_training_layout(m, bad, 8, 16, 4096)


def test_fsdp_pp_communication_once_per_step() -> None:
    cost = ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), 4096)
    lay = Layout(tp=1, pp=4, dp=16, zero=3, sharding=FSDP_PP, recompute="full")
    # the parameters of the rank holding the most (no TP): the last, 8 layers x 218,112,000 + the final norm 4,096 +
    # the head 128,256 x 4,096 = 2,270,236,672 (N/p = 2,007,565,312 averaged), gathered in bf16 (2 B) once, gradients
    # reduce-scattered in fp32 (4 B) once, over the 16 DP ranks (2 nodes), whatever the number of micro-batches
    local = 8 * 218_112_000 + 4_096 + 128_256 * 4_096
    once = cost.coll("all_gather", local * 2, 16, 1) + cost.coll("reduce_scatter", local * 4, 16, 1)
    for micro in (4, 16):
        t = step_terms(cost, lay, 16 * micro, micro)
        # (within 1%: step.py's over_dp also prices an empty expert-group collective, its latency only, for a dense model)
        assert t.totals["zero_gather_s"] == pytest.approx(once, rel=0.01)
        # exposed: at least the whole reduce-scatter (after the last backward, nothing left to hide it under)
        assert cost.coll("reduce_scatter", local * 4, 16, 1) <= t.exposed["zero_gather_s"] <= t.totals["zero_gather_s"]
    # ZeRO-3 without PP re-gathers every micro-batch: its total grows with m
    flat = Layout(tp=1, pp=1, dp=64, zero=3, recompute="full")
    assert step_terms(cost, flat, 64 * 16, 16).totals["zero_gather_s"] > 3 * step_terms(cost, flat, 64 * 4, 4).totals["zero_gather_s"]
    mem = memory_per_gpu(cost, lay, 8)
    assert mem["gradients"] == 4 * local  # fp32 unsharded gradients of the last stage (its logits make it the fullest)


def test_torchtitan_pp_rows_map_to_fsdp_pp() -> None:
    rows = {row.id: row for row, _g, _s in load_corpus()}
    one = rows["titan-202412-t5-llama3.1-405b-512gpu-1f1b"]
    lay, gb = training_layout(one, knobs(one))
    # Table 5: FSDP 8, TP 8, PP 8, local batch 32 split into PP = 8 micro-batches of 4 (torchtitan 9dec370 default)
    assert lay["sharding"] == FSDP_PP and lay["zero"] == 3 and lay["micro_batch"] == 4 and gb == 256
    inter = rows["titan-202412-t5-llama3.1-405b-512gpu-interleaved-1f1b"]
    assert training_layout(inter, knobs(inter))[0]["vpp"] == 2
    cp8 = rows["titan-202412-t6-llama3.1-405b-cp8-seq262144"]
    lay, gb = training_layout(cp8, knobs(cp8))
    assert (lay["dp"], lay["cp"], lay["micro_batch"], gb) == (1, 8, 1, 8)  # local batch 8 = 8 micro-batches of 1
    # no Megatron-style row is moved off ZeRO: FSDP_PP only where a stack of FSDP_PP_STACKS (torchtitan, NeMo AutoModel:
    # FSDP2 stages under torch.distributed.pipelining) runs FSDP with PP
    from benchmarks.corpus_knobs import FSDP_PP_STACKS

    assert set(FSDP_PP_STACKS) == {"torchtitan", "nemo-automodel"}
    for row in rows.values():
        if row.kind.startswith("training") and row.stack.name not in FSDP_PP_STACKS and row.config.get("pp", 1) > 1:
            try:
                lay, _ = training_layout(row, knobs(row))
            except Exception:  # noqa: BLE001 - rows the knobs cannot represent are not this test's concern
                continue
            # a row that states its own sharding keeps it (the Llama 3 paper's FSDP: zero2-pp, tests/test_zero2_pp.py)
            assert lay.get("sharding", "zero") == knobs(row).get("sharding", "zero")


def test_train_step_sharding_flag(cli) -> None:
    base = ("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "16", "--global-batch", "64", "--pp", "4", "--zero", "3")
    refused = cli(*base)
    assert refused.code == 2 and "--zero" in refused.err and "--sharding fsdp-pp" in refused.err
    d = cli(*base, "--sharding", "fsdp-pp", "--json").json()
    # PP 4, the first rank priced (16 micro-batches, 4 in flight of 8 layers' full activations): 8 x 218,112,000 + the
    # embedding 128,256 x 4,096 = 2,270,232,576 parameters: bf16 weights 4,540,465,152 B, fp32 gradients
    # 9,080,930,304 B, fp32 master + Adam 12 x 2,270,232,576 / DP 4 = 6,810,697,728 B
    first = 8 * 218_112_000 + 128_256 * 4_096
    assert (d["memory_per_gpu"]["weights"], d["memory_per_gpu"]["gradients"], d["memory_per_gpu"]["optimizer"]) == (
        2 * first, 4 * first, 12 * first // 4) == (4_540_465_152, 9_080_930_304, 6_810_697_728)
    assert "FSDP+PP" in d["layout"]
    pp1 = tuple("1" if a == "4" else a for a in base)  # --pp 1
    for args in ((*pp1, "--sharding", "fsdp-pp"), (*base, "--sharding", "hsdp")):
        r = cli(*args)
        assert r.code == 2 and r.err.count("\n") == 1 and "--sharding" in r.err
