"""Eager steps (no CUDA / HIP graph, calc.serving.eager), the step overhead per engine family (vLLM V0 apart) and
their flags: numbers worked by hand from vLLM's llama.py layer and the sourced launch costs."""

from __future__ import annotations

import pytest

from calc.hardware.efficiency import GEMM_PLATEAU
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions, engine_overhead
from calc.serving.eager import forward_kernels, launch_s
from calc.serving.latency import latency
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings

# Llama-2-7B fp16 decode on one A100 (tests/test_serving_step.py's hand-worked step): 6,607,077,376 matmul weights
# on one padded 128-row tile at the fitted Ampere plateau e (with the launches 8.1516 ms at e = 0.71, 8.0454 ms at 0.72) plus 129 GEMM
# launches of 4 us, and the KV read of 513 tokens 0.1466 ms, plus the 2 ms overhead.
LLAMA2_FORWARD_MS = (6_607_077_376 * 2 * 128 / (312e12 * GEMM_PLATEAU["Ampere"]) + 129 * 4e-6) * 1e3 \
    + 513 * 524_288 / (2.039e12 * 0.9) * 1e3


def test_kernels_per_forward_counted_from_the_llama_layer() -> None:
    # per layer: qkv, o, gate_up, down GEMMs + 2 norms, rotary, KV write, attention, SiLU (6) [+ 2 all-reduces at TP > 1]
    # [+ one fp8 quantisation per GEMM]; Llama 3.1 405B has 126 layers, Llama 2 7B 32
    big, small = load_model("llama3.1-405b"), load_model("llama2-7b")
    mi300x, a100 = load_gpu("mi300x"), load_gpu("a100")
    assert forward_kernels(big, mi300x, "fp8", 8) == 126 * (4 + 4 + 6 + 2) == 2016
    assert forward_kernels(big, mi300x, "bf16", 8) == 126 * (4 + 6 + 2) == 1512
    assert forward_kernels(small, a100, "fp16", 1) == 32 * (4 + 6) == 320


def test_launch_cost_by_vendor_and_overridable() -> None:
    assert launch_s(load_gpu("mi300x")) == 11e-6  # PyTorch PR #196920: launch-bound rocBLAS calls on gfx942
    assert launch_s(load_gpu("h100")) == 5e-6  # HTA docs: 5-20 us on the CPU side, the low end
    assert launch_s(load_gpu("mi300x"), 2e-6) == 2e-6


def test_an_eager_decode_of_405b_on_mi300x_is_bound_by_the_host() -> None:
    # 2,016 kernels x 11 us = 22.176 ms of launches; the graph-captured forward (weights 50.6 GB / (5.3 TB/s x 0.8)
    # = 11.9 ms + all-reduces) is shorter, so the eager step is launches + the 2 ms overhead
    m, g = load_model("llama3.1-405b"), load_gpu("mi300x")
    run = dict(num_gpus=8, batch=4, prompt=128, output=2048, dtype="fp8")
    graph = latency(m, g, **run, assumptions=ServingAssumptions(step_overhead_s=2e-3))
    eager = latency(m, g, **run, assumptions=ServingAssumptions(step_overhead_s=2e-3, eager=True))
    assert graph.tpot_s - 2e-3 < 2016 * 11e-6  # the premise: the forward is shorter than its launches
    assert eager.tpot_s == pytest.approx(2016 * 11e-6 + 2e-3, rel=1e-9)
    assert eager.decode_bound == "host launches"
    assert any("eager: host kernel launches 22.176 ms" in line for line in eager.explain)


def test_an_eager_step_the_gpu_outlasts_costs_nothing_more() -> None:
    # Llama 2 7B decode: 320 kernels x 5 us = 1.6 ms of launches hide under the 8.3 ms forward; at 30 us a launch they
    # take 9.6 ms and set the step: 9.6 + 2 ms
    m, g = load_model("llama2-7b"), load_gpu("a100")
    run = dict(batch=1, prompt=512, output=1, dtype="fp16")
    graph = latency(m, g, **run).tpot_s
    assert latency(m, g, **run, assumptions=ServingAssumptions(eager=True)).tpot_s == pytest.approx(graph, rel=1e-12)
    overhead_ms = DEFAULT_ASSUMPTIONS.step_overhead_s * 1e3  # the per-step overhead, a fitted input (2 ms at pass 21)
    assert graph * 1e3 == pytest.approx(LLAMA2_FORWARD_MS + overhead_ms, rel=1e-3)
    slow = latency(m, g, **run, assumptions=ServingAssumptions(eager=True, eager_launch_s=30e-6)).tpot_s
    assert slow * 1e3 == pytest.approx(320 * 0.030 + overhead_ms, rel=1e-9)


def test_step_overhead_read_per_engine_family(monkeypatch) -> None:  # noqa: ANN001
    import calc.serving.assumptions as assumptions

    table = {"vllm": 1e-3, "vllm/moe": 5.5e-3, "vllm-v0": 7e-3, "trtllm": 4.75e-3, "other": 2e-3}
    monkeypatch.setattr(assumptions, "parameter", lambda name: table)
    assert engine_overhead("step_overhead_s", EngineSettings(engine="vllm", engine_version="0.6.3")) == 7e-3  # V0: before 0.8
    assert engine_overhead("step_overhead_s", EngineSettings(engine="vllm-v0")) == 7e-3
    assert engine_overhead("step_overhead_s", EngineSettings(engine="vllm", engine_version="0.11")) == 1e-3  # V1
    assert engine_overhead("step_overhead_s", EngineSettings(engine="trtllm")) == 4.75e-3
    assert engine_overhead("step_overhead_s", EngineSettings(engine="sglang")) == 2e-3  # no key of its own in this table: "other"
    # an MoE model reads its engine's "/moe" key (fitted on MoE rows alone), else "other", never the dense key
    assert engine_overhead("step_overhead_s", EngineSettings(engine="vllm", engine_version="0.11"), moe=True) == 5.5e-3
    assert engine_overhead("step_overhead_s", EngineSettings(engine="trtllm"), moe=True) == 2e-3


LATENCY = ("latency", "llama3-8b", "--gpu", "h100", "--prompt", "512", "--output", "128", "--batch", "4", "--json")


def test_step_overhead_flag_adds_its_difference_to_every_step(cli) -> None:  # noqa: ANN001
    # TPOT is one decode step, TTFT one prefill step: 7 ms instead of 2 ms adds 5 ms to each
    low = cli(*LATENCY, "--step-overhead-ms", "2").json()
    high = cli(*LATENCY, "--step-overhead-ms", "7").json()
    assert high["tpot_s"] - low["tpot_s"] == pytest.approx(5e-3, rel=1e-9)
    assert high["ttft_s"] - low["ttft_s"] == pytest.approx(5e-3, rel=1e-9)
    assert high["step_overhead_s"] == 7e-3


def test_engine_picks_its_fitted_overhead(cli) -> None:  # noqa: ANN001
    from calc.fitted import parameter

    values, per_seq = parameter("step_overhead_s"), parameter("step_overhead_per_seq_s")
    trt = cli(*LATENCY, "--engine", "trtllm").json()
    assert trt["step_overhead_s"] == values["trtllm"] and trt["step_overhead_per_seq_s"] == per_seq["trtllm"]
    v0 = cli(*LATENCY, "--engine", "vllm", "--engine-version", "0.6.3").json()
    assert v0["step_overhead_s"] == values.get("vllm-v0", values["other"])
    assert v0["step_overhead_per_seq_s"] == per_seq.get("vllm-v0", per_seq["other"])
    explain = " ".join(cli(*LATENCY[:-1], "--engine", "trtllm", "--explain").out.split())
    assert (f"per-step scheduling/launch overhead = {values['trtllm'] * 1e3:g} ms + {per_seq['trtllm'] * 1e6:g} us per "
            "sequence in the step (trtllm: ") in explain
    given = " ".join(cli(*LATENCY[:-1], "--step-overhead-ms", "6", "--step-overhead-per-seq-us", "15", "--explain").out.split())
    assert ("per-step scheduling/launch overhead = 6 ms + 15 us per sequence in the step (--step-overhead-ms; per "
            "sequence: --step-overhead-per-seq-us)") in given


def test_enforce_eager_is_explained_and_emitted(cli) -> None:  # noqa: ANN001
    out = " ".join(cli(*LATENCY[:-1], "--enforce-eager", "--explain").out.split())
    assert "eager steps (no CUDA / HIP graph)" in out
    serve = ("serve", "llama3-8b", "--gpu", "h100", "--prompt", "512", "--output", "128", "--enforce-eager")
    r = cli(*serve, "--emit", "vllm")
    assert r.code == 0 and any(x.startswith("vllm serve") and x.endswith(" --enforce-eager") for x in r.out.splitlines())
    r = cli(*serve, "--emit", "trtllm")
    assert r.code == 2 and "--enforce-eager" in r.err and len(r.err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [
    ("latency", "llama3-8b", "--gpu", "h100", "--prompt", "512", "--step-overhead-ms", "-1"),
    ("report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--step-overhead-ms", "3"),
    ("report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--enforce-eager"),
])
def test_bad_overhead_flags_are_one_line_refusals(cli, args) -> None:  # noqa: ANN001
    r = cli(*args)
    assert r.code == 2 and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    assert ("--step-overhead-ms" in r.err) or ("--enforce-eager" in r.err)


def test_corpus_rows_read_the_vllm_v0_key_by_release() -> None:
    import corpus_predict as cp
    from corpus_schema import load_corpus

    families = {row.id: cp.engine_family(row) for row, _group, _split in load_corpus()}
    assert families["dstack-405b-h100-metafp8-tp8-b4-128-2048-e2e"] == "vllm-v0"  # vLLM 0.6.3.post2
    assert families["oracle-405b-fp8-mi300x-tp8-bs1-128-128-e2e"] == "vllm"  # version unknown: the current (V1)
    value, why = cp.predict_or_reason(next(r for r, _g, _s in load_corpus()
                                           if r.id == "dstack-405b-mi300x-amdfp8kv-tp8-b4-128-2048-e2e"))
    assert value is not None, why  # an --enforce-eager row is predicted, not refused


def test_vllm_v0_prefill_runs_eager_and_its_decode_on_graphs() -> None:
    # V0 replays a graph for decode-only batches alone: a one-token prefill of Llama 2 7B at 30 us a launch takes
    # 320 x 30 us = 9.6 ms of launches (over its ~8.3 ms forward) + 2 ms; the decode step keeps the graph price
    m, g = load_model("llama2-7b"), load_gpu("a100")
    run = dict(batch=1, prompt=1, output=2, dtype="fp16")
    graph = latency(m, g, **run)
    v0 = latency(m, g, **run, assumptions=ServingAssumptions(eager_prefill=True, eager_launch_s=30e-6))
    assert v0.ttft_s * 1e3 == pytest.approx(320 * 0.030 + DEFAULT_ASSUMPTIONS.step_overhead_s * 1e3, rel=1e-9)
    assert v0.tpot_s == pytest.approx(graph.tpot_s, rel=1e-12)


def test_engine_vllm_v0_sets_eager_prefill(cli) -> None:  # noqa: ANN001
    out = " ".join(cli(*LATENCY[:-1], "--engine", "vllm-v0", "--explain").out.split())
    assert "vLLM V0: steps holding prompt tokens run eager" in out
    assert "vLLM V0: steps holding prompt tokens run eager" not in " ".join(cli(*LATENCY[:-1], "--explain").out.split())


def test_multi_step_scheduling_amortises_the_overhead_not_the_launches() -> None:
    # vLLM V0 --num-scheduler-steps 15: the scheduler runs once per 15 decode steps (llm_engine.py _has_remaining_steps),
    # so a decode step carries 2 ms / 15 = 0.1333 ms; the eager launches stay: 2,016 kernels x 11 us = 22.176 ms per step
    # (Llama 3.1 405B fp8, TP 8, MI300X). The prefill (a single step) keeps the whole 2 ms.
    m, g = load_model("llama3.1-405b"), load_gpu("mi300x")
    run = dict(num_gpus=8, batch=4, prompt=128, output=2048, dtype="fp8")
    one = latency(m, g, **run, assumptions=ServingAssumptions(step_overhead_s=2e-3, eager=True))
    multi = latency(m, g, **run, assumptions=ServingAssumptions(step_overhead_s=2e-3, eager=True, scheduler_steps=15))
    assert multi.tpot_s * 1e3 == pytest.approx(22.176 + 2.0 / 15, rel=1e-9)
    assert one.tpot_s - multi.tpot_s == pytest.approx(2e-3 * 14 / 15, rel=1e-9)
    assert multi.ttft_s == pytest.approx(one.ttft_s, rel=1e-12)
    assert any("--num-scheduler-steps 15" in line for line in multi.explain)


def test_corpus_rows_carry_their_num_scheduler_steps() -> None:
    # dstack's MI300X Meta-FP8 runs passed --num-scheduler-step 15 (their CSV's command), the others 1
    import corpus_knobs
    from corpus_schema import load_corpus

    rows = {row.id: row for row, _group, _split in load_corpus()}
    assert corpus_knobs.knobs(rows["dstack-405b-mi300x-metafp8-eager-tp8-b4-128-2048-e2e"])["num_scheduler_steps"] == 15
    assert "num_scheduler_steps" not in corpus_knobs.knobs(rows["dstack-405b-mi300x-amdfp8kv-tp8-b4-128-2048-e2e"])


def test_num_scheduler_steps_flag_takes_the_overhead_off_decode_steps(cli) -> None:  # noqa: ANN001
    # --step-overhead-ms 6 --num-scheduler-steps 4: a decode step carries 6 / 4 = 1.5 ms, 4.5 ms less than with one step;
    # the prefill step keeps its 6 ms (TTFT unchanged)
    base = (*LATENCY, "--engine", "vllm-v0", "--step-overhead-ms", "6")
    one, four = cli(*base).json(), cli(*base, "--num-scheduler-steps", "4").json()
    assert one["tpot_s"] - four["tpot_s"] == pytest.approx(4.5e-3, rel=1e-9)
    assert four["ttft_s"] == pytest.approx(one["ttft_s"], rel=1e-12)
    assert four["decode_step_overhead_s"] == pytest.approx(1.5e-3, rel=1e-12) and one["decode_step_overhead_s"] is None
    explain = " ".join(cli(*LATENCY[:-1], "--engine", "vllm-v0", "--num-scheduler-steps", "4", "--explain").out.split())
    assert "vLLM V0 --num-scheduler-steps 4" in explain


@pytest.mark.parametrize("extra", [(), ("--engine", "sglang"), ("--engine", "vllm", "--engine-version", "0.11"),
                                   ("--engine", "vllm-v0", "--num-scheduler-steps", "0")])
def test_num_scheduler_steps_refused_where_the_engine_has_none(cli, extra) -> None:  # noqa: ANN001
    args = (*LATENCY, *extra) if "--num-scheduler-steps" in extra else (*LATENCY, *extra, "--num-scheduler-steps", "8")
    r = cli(*args)
    assert r.code == 2 and "--num-scheduler-steps" in r.err and len(r.err.strip().splitlines()) == 1
