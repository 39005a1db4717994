"""Pass 44: serve's TTFT bills a prompt's last chunk for its own tokens (QA43b B16), activation offloading costs
host-copy time (QA43 A17). Each checked against an independent path: the other command, a hand count."""

from __future__ import annotations

import pytest

GIB = 2**30


def test_serve_and_latency_bill_a_prompt_in_the_same_chunks(cli) -> None:
    """QA43b B16: a 12,000-token prompt under vLLM V1's 8,192-token budget runs in a step of 8,192 and one of 3,808
    (its scheduler takes the last chunk as it is), so at batch 1 `serve` and `latency` must report one TTFT. serve
    billed ceil(12,000 / 8,192) = 2 full steps (16,384 tokens: 507 ms against latency's 375 ms) and refused a
    --ttft-ms 450 that latency said was met."""
    from calc.serving.step import prompt_chunks

    assert prompt_chunks(12_000, 8_192) == [(1, 8_192), (1, 3_808)]
    assert sum(n * t for n, t in prompt_chunks(20_001, 8_192)) == 20_001
    for prompt in (12_000, 20_000, 8_192):
        lat = cli("latency", "llama3.1-8b", "--gpu", "h100", "--prompt", str(prompt), "--output", "256", "--json").json()
        serve = cli("serve", "llama3.1-8b", "--gpu", "h100", "--prompt", str(prompt), "--output", "256", "--num-gpus",
                    "1", "--json").json()
        first = serve["layouts"][0]["frontier"][0]
        assert first["batch"] == 1
        assert first["ttft_ms"] == pytest.approx(lat["ttft_s"] * 1e3, rel=1e-9), prompt
    query = ("llama3.1-8b", "--gpu", "h100", "--prompt", "12000", "--output", "256", "--ttft-ms", "450")
    assert cli("latency", *query).code == 0
    assert cli("serve", *query, "--num-gpus", "1", "--json").code == 0


def test_the_host_link_is_the_datasheet_rate() -> None:
    """GPUSpec.host_link_gb_s, per direction: H100 SXM's datasheet "PCIe Gen5: 128GB/s" (both directions), A100's
    "PCIe Gen4: 64GB/s", GB200's NVLink-C2C 900 GB/s bidirectional to its Grace CPU, T4's PCIe Gen3 x16 32 GB/s."""
    from calc.sources.catalog import load_gpu

    assert {g: load_gpu(g).host_link_gb_s for g in ("h100", "a100-80g", "gb200", "t4")} == {
        "h100": 64, "a100-80g": 32, "gb200": 450, "t4": 16}


def test_cpu_offloading_costs_the_host_copies_of_what_it_frees(cli) -> None:
    """QA43 A17: --cpu-offload-layers freed memory at no time. The bytes a micro-batch sends to the host are the
    activation memory offloading frees (PP 1, one micro-batch in flight: the activations part drops by exactly them),
    and they cross the link each way at 64 GB/s x 0.8 on an H100 (calc.training.offload), so by hand:
        offload total = m x 2 x freed / 51.2e9, m = 64 / 8 = 8 micro-batches;
    --host-copy-gb-s 25 replaces the rate. The exposed part lies between (1 - overlap) of the total and the total."""
    base = ("train-step", "llama2-7b", "--gpu", "h100", "--dp", "8", "--zero", "1", "--global-batch", "64", "--json")
    plain = cli(*base).json()
    off = cli(*base, "--cpu-offload-layers", "31").json()
    freed = plain["memory_per_gpu"]["activations"] - off["memory_per_gpu"]["activations"]
    assert freed > 10 * GIB
    total = next(t for t in off["terms"] if t["name"] == "offload_s")["time_s"]
    assert total == pytest.approx(8 * 2 * freed / 51.2e9, rel=1e-6)
    assert 0.1 * total < off["offload_s"] <= total
    assert off["step_time_s"] == pytest.approx(plain["step_time_s"] + off["offload_s"], rel=1e-9)
    assert plain["offload_s"] == 0
    slow = cli(*base, "--cpu-offload-layers", "31", "--host-copy-gb-s", "25").json()
    assert next(t for t in slow["terms"] if t["name"] == "offload_s")["time_s"] == pytest.approx(
        8 * 2 * freed / 25e9, rel=1e-6)
    explain = cli(*base[:-1], "--cpu-offload-layers", "31", "--explain").out
    assert "offload_s = m x (copy to host" in explain and "64 GB/s host link x 0.8" in explain


def test_host_copy_rate_is_refused_where_nothing_is_offloaded(cli) -> None:
    """--host-copy-gb-s changes only an offloading plan's time: refused without offloading and in train-plan (which
    searches no offloading layout), one line naming the flag; a GPU spec without a host link refuses the offload."""
    for args in (("train-step", "llama2-7b", "--gpu", "h100", "--dp", "8", "--host-copy-gb-s", "25"),
                 ("train-plan", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--host-copy-gb-s", "25")):
        r = cli(*args)
        assert r.code == 2 and r.err.startswith("llmcalc: error: --host-copy-gb-s: ") and r.err.count("\n") == 1
    from calc.errors import LLMCalcError
    from calc.sources.catalog import load_gpu
    from calc.training.offload import host_copy_rate

    bare = load_gpu("h100").model_copy(update={"host_link_gb_s": None})
    with pytest.raises(LLMCalcError, match="host_link_gb_s"):
        host_copy_rate(bare, None, "--cpu-offload-layers")
    assert host_copy_rate(bare, 20.0, "--cpu-offload-layers")[0] == 20e9


def test_speculative_ttft_is_never_shorter_than_the_step_it_rides_in(cli) -> None:
    """QA43b B7: under load a new request's first token comes out of a whole engine step, which with speculation is
    the verify step and its drafts: TPOT x E, E = (1 - a^(k+1)) / (1 - a) tokens a step. ngram's defaults (acceptance
    0.7, k = 4, calc.serving.speculative): E = (1 - 0.7^5) / 0.3 = 2.7731. serve quoted TTFT 65.8 ms inside a 155 ms
    step (the non-speculative step's time)."""
    best = cli("serve", "llama3-8b", "--gpu", "h100", "--speculative", "ngram", "--json").json()["layouts"][0]
    e = (1 - 0.7**5) / 0.3
    assert best["ttft_ms"] >= best["tpot_ms"] * e * (1 - 1e-9)
