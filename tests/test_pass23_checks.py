"""Pass 23: a serving step's host overhead is a fixed part plus a part per sequence the step schedules
(calc.serving.step.step_overhead), each fitted per engine family and each overridable
(--step-overhead-ms, --step-overhead-per-seq-us)."""
from __future__ import annotations

import pytest

# 16 prompts of 512 tokens: 8,192 prompt tokens, one prefill step within vLLM V1's default 8,192-token budget
RUN = ("llama3-8b", "--gpu", "h100", "--prompt", "512", "--output", "64", "--batch", "16")


def test_per_sequence_overhead_adds_batch_times_it_to_each_step(cli) -> None:
    """q = 20 us per sequence against q = 0 at batch 16: each decode step holds 16 sequences, +320 us; the one
    prefill step holds the 16 prompts, +320 us (by hand: 16 x 20e-6 s)."""
    base = cli("latency", *RUN, "--step-overhead-ms", "2", "--step-overhead-per-seq-us", "0", "--json").json()
    more = cli("latency", *RUN, "--step-overhead-ms", "2", "--step-overhead-per-seq-us", "20", "--json").json()
    assert base["prefill_steps"] == 1
    assert more["tpot_s"] - base["tpot_s"] == pytest.approx(16 * 20e-6, rel=1e-9)
    assert more["ttft_s"] - base["ttft_s"] == pytest.approx(16 * 20e-6, rel=1e-9)
    assert more["decode_overhead_s"] == pytest.approx(2e-3 + 16 * 20e-6, rel=1e-12)
    assert more["step_overhead_per_seq_s"] == 20e-6


def test_batch_one_carries_one_sequence_of_it(cli) -> None:
    """At batch 1 the per-sequence part is one sequence's: a fixed part fitted on full batches does not land on
    a single stream (q = 50 us adds 50 us to TPOT, not 50 us x a full batch)."""
    run = ("llama3-8b", "--gpu", "h100", "--prompt", "512", "--output", "64", "--batch", "1", "--step-overhead-ms", "1")
    base = cli("latency", *run, "--step-overhead-per-seq-us", "0", "--json").json()
    more = cli("latency", *run, "--step-overhead-per-seq-us", "50", "--json").json()
    assert more["tpot_s"] - base["tpot_s"] == pytest.approx(50e-6, rel=1e-9)


@pytest.mark.parametrize("command", [
    ("compare", "llama3-8b", "h100"),
    ("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--output", "256", "--rate", "2"),
    ("report", "llama3-8b", "--gpu", "h100"),
])
def test_every_serving_command_takes_the_per_sequence_overhead(cli, command) -> None:
    """The option changes the answer wherever --step-overhead-ms does (one vocabulary): 200 us per sequence on a
    full batch is tens of ms a step."""
    default = cli(*command, "--json")
    slower = cli(*command, "--step-overhead-per-seq-us", "200", "--json")
    assert default.code == 0 and slower.code == 0, slower.err
    assert default.out != slower.out


def test_the_flag_is_refused_out_of_range(cli) -> None:
    r = cli("latency", *RUN, "--step-overhead-per-seq-us", "-5")
    assert r.code == 2 and "--step-overhead-per-seq-us" in r.err and "Traceback" not in r.err


def test_the_fitted_file_carries_both_parts_for_every_engine_family() -> None:
    """Both parts are fitted parameters of the data file (benchmarks/fit_corpus.py), keyed alike, and the engine's
    default assumptions read vLLM V1's of each."""
    from calc.fitted import fitted
    from calc.serving.assumptions import DEFAULT_ASSUMPTIONS

    params = fitted()["parameters"]
    assert set(params["step_overhead_per_seq_s"]) == set(params["step_overhead_s"])
    assert DEFAULT_ASSUMPTIONS.step_overhead_per_seq_s == params["step_overhead_per_seq_s"]["vllm"]["value"]
    assert all(e["status"] for e in params["step_overhead_per_seq_s"].values())


def test_an_moe_model_reads_its_engines_moe_overhead_and_a_dense_one_never_does(cli) -> None:
    """The fitted step overhead is keyed by engine and MoE-ness (calc.serving.assumptions.overhead_family): every
    vLLM V1 row of the fit split is an MoE model's, so what they ask for is read by MoE models alone."""
    from calc.fitted import parameter

    values = parameter("step_overhead_s")
    moe = cli("latency", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "2", "--prompt", "512", "--output", "64",
              "--json").json()
    dense = cli("latency", *RUN, "--json").json()
    assert moe["step_overhead_s"] == values["vllm/moe"]
    assert dense["step_overhead_s"] == values["vllm"]
    explain = " ".join(cli("latency", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "2", "--explain").out.split())
    assert "(vllm/moe: " in explain


def test_corpus_rows_inform_the_key_the_engine_reads() -> None:
    """A corpus row's overhead key is the one the CLI reads for its engine and model (one function each side)."""
    import corpus_predict as cp
    from corpus_schema import load_corpus

    rows = {row.id: row for row, _group, _split in load_corpus()}
    assert cp.overhead_key(rows["gpustack-gptoss20b-a100-vllm-tp1-mxfp4-sharegpt"]) == "vllm/moe"
    assert cp.overhead_key(rows["dstack-405b-h100-metafp8-tp8-b4-128-2048-e2e"]) == "vllm-v0"  # dense, vLLM 0.6.3
    assert cp.parameter_keys(rows["gpustack-gptoss20b-a100-vllm-tp1-mxfp4-sharegpt"])["step_overhead_s"] == "vllm/moe"
