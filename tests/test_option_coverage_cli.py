"""One vocabulary across commands: `report` and `compare` take serve's engine and memory options, `train-time` and
`report --mode train` take --stack, each changing the answer as in the command that already had it or refused;
--json keys (assumptions in latency and train-time as in serve); MoE / CP assumption lines only where they apply;
serve ranks tokens/s per GPU by one definition at every batch; count bands in whole units, rounded outward."""

from __future__ import annotations

import pytest

# llama3-8b KV cache per token, bf16: 32 layers x 8 KV heads x 128 dims x (K + V) x 2 bytes = 131,072 B = 128 KiB
LLAMA3_8B_KV_BYTES_PER_TOKEN = 32 * 8 * 128 * 2 * 2
REPORT = ["report", "llama3-8b", "--gpu", "h100"]  # --prompt 1024 + --output 256 = 1,280 tokens per request
CONCURRENCY = ["concurrency", "llama3-8b", "--gpu", "h100", "--max-model-len", "1280"]


@pytest.mark.parametrize("option", [["--engine", "sglang"], ["--engine", "vllm", "--engine-version", "0.6"],
                                    ["--reserve-gib", "3"]])
def test_report_engine_options_mean_what_concurrency_means(cli, option: list[str]) -> None:
    """report's KV cache is concurrency's at the same option (one accounting), and the option moves it."""
    report = cli(*REPORT, *option, "--json").json()["concurrency"]["kv_cache_tokens"]
    alone = cli(*CONCURRENCY, *option, "--json").json()["kv_cache_tokens"]
    default = cli(*REPORT, "--json").json()["concurrency"]["kv_cache_tokens"]
    assert report == alone and report != default


def test_reserve_gib_takes_its_memory_from_the_kv_cache(cli) -> None:
    """--reserve-gib 3 in place of the engine's 0.1 GiB above its snapshot (vLLM V1, non_torch_bytes): 2.9 GiB less
    KV cache = 2.9 x 2^30 / 131,072 B = 23,756.8 tokens, whole 16-token blocks (one block either way)."""
    default = cli(*REPORT, "--json").json()["concurrency"]["kv_cache_tokens"]
    reserved = cli(*REPORT, "--reserve-gib", "3", "--json").json()["concurrency"]["kv_cache_tokens"]
    assert default - reserved == pytest.approx(2.9 * 2**30 / LLAMA3_8B_KV_BYTES_PER_TOKEN, abs=16)


def test_compare_takes_the_engine_as_serve_does(cli) -> None:
    row = cli("compare", "llama3-8b", "h100", "--engine", "sglang", "--json").json()[0]
    plan = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--output", "256", "--engine", "sglang",
               "--json").json()
    assert (row["gpus"], row["batch"]) == (plan["best"]["gpus_needed"], plan["best"]["batch"])
    assert row["max_concurrency"] == plan["layouts"][0]["max_concurrency"]
    assert row["max_concurrency"] != cli("compare", "llama3-8b", "h100", "--json").json()[0]["max_concurrency"]


def test_compare_step_overhead_adds_to_every_step(cli) -> None:
    """--step-overhead-ms 10 in place of vLLM's default (the fitted value, the assumption line serve prints): the same
    batch (no targets: the KV cap), each decode step 10 ms - the default longer."""
    from calc.serving.assumptions import DEFAULT_ASSUMPTIONS

    default = cli("compare", "llama3-8b", "h100", "--json").json()[0]
    slower = cli("compare", "llama3-8b", "h100", "--step-overhead-ms", "10", "--json").json()[0]
    assert slower["batch"] == default["batch"]
    assert (slower["tpot_s"] - default["tpot_s"]) * 1e3 == pytest.approx(10 - DEFAULT_ASSUMPTIONS.step_overhead_s * 1e3, abs=1e-9)


@pytest.mark.parametrize("args, flag", [
    (["compare", "llama3-8b", "h100", "--expert-imbalance", "1.5"], "--expert-imbalance"),  # dense
    (["compare", "mixtral-8x7b", "h100", "--num-gpus", "1", "--expert-imbalance", "1.5"], "--expert-imbalance"),
    (["report", "llama3-8b", "--gpu", "h100", "--fp8-moe-scales", "tensor"], "--fp8-moe-scales"),  # dense: no experts
    (["compare", "llama3-8b", "h100", "--fp8-moe-scales", "block"], "--fp8-moe-scales"),
    (["report", "llama3-8b", "--gpu", "h100", "--num-gpus", "1", "--comm-buffer-gib", "1"], "--comm-buffer-gib"),
    (["compare", "llama3-8b", "h100", "--num-gpus", "1", "--comm-buffer-gib", "1"], "--comm-buffer-gib"),
    (["report", "llama3-8b", "--gpu", "mi300x", "--engine", "trtllm"], "--engine"),  # NVIDIA only
    (["compare", "llama3-8b", "h100", "mi300x", "--engine", "trtllm"], "--engine"),
    (["report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--engine", "sglang"], "--engine"),
    (["report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--reserve-gib", "2"], "--reserve-gib"),
    (["report", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--engine-version", "0.8"], "--engine-version"),
    (["report", "llama3-8b", "--gpu", "h100", "--stack", "fsdp"], "--stack"),  # infer: no training stack
    (["report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--mfu", "0.4", "--stack", "fsdp"], "--stack"),
    (["train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T", "--mfu", "0.4", "--stack", "fsdp"],
     "--stack"),
])
def test_options_refused_where_they_change_nothing(cli, args: list[str], flag: str) -> None:
    r = cli(*args)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}:"), r.err


def test_stack_in_train_time_and_report_is_train_steps(cli) -> None:
    """--stack fsdp times the plan on FSDP in train-time and report alike: days = D x FLOPs per token / (GPUs x peak x
    MFU), so at the same tokens (report's default 1T) the days scale as 1 / MFU between the stacks."""
    args = ["llama3-8b", "--gpu", "h100", "--num-gpus", "8"]
    fsdp = cli("train-time", *args, "--tokens", "1T", "--stack", "fsdp", "--json").json()
    megatron = cli("train-time", *args, "--tokens", "1T", "--json").json()
    report = cli("report", *args, "--mode", "train", "--stack", "fsdp", "--json").json()["train_time"]
    assert fsdp["stack"] == report["stack"] == "fsdp" and megatron["stack"] == "megatron"
    assert report["days"] == pytest.approx(fsdp["days"], rel=1e-12)
    assert fsdp["days"] / megatron["days"] == pytest.approx(megatron["mfu"] / fsdp["mfu"], rel=1e-9)
    assert fsdp["mfu"] != megatron["mfu"]


def test_latency_json_lists_assumptions_as_serve_does(cli) -> None:
    data = cli("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--json").json()
    explained = [line.removeprefix("assumption: ") for line in data["explain"] if line.startswith("assumption: ")]
    assert data["assumptions"] == explained and data["assumptions"]
    assert {"ttft_s", "tpot_s", "e2e_s"} <= set(data["bands"]) and data["fit"] in ("fits", "tight", "does not fit")


def test_train_time_json_lists_assumptions(cli) -> None:
    args = ["train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T"]
    assumed = cli(*args, "--mfu", "0.35", "--json").json()
    assert assumed["assumptions"] == ["MFU 0.35 assumed (--mfu), not predicted"]
    assert {"days", "gpu_hours"} <= set(assumed["bands"])
    planned = cli(*args, "--json").json()
    assert any(line.startswith("collective efficiency") for line in planned["assumptions"])


def _moe_or_cp(lines: list[str]) -> list[str]:
    return [x for x in lines if "MoE" in x or "expert" in x or "context parallel" in x]


def test_explain_lists_moe_and_cp_assumptions_only_where_they_apply(cli) -> None:
    dense = ["llama3-8b", "--gpu", "h100"]
    assert _moe_or_cp(cli("latency", *dense, "--prompt", "1000", "--json").json()["assumptions"]) == []
    assert _moe_or_cp(cli("serve", *dense, "--prompt", "1000", "--json").json()["assumptions"]) == []
    moe = cli("latency", "mixtral-8x7b", "--gpu", "h100", "--num-gpus", "2", "--prompt", "1000", "--json").json()
    assert any(x.startswith("MoE: grouped GEMM") for x in moe["assumptions"])
    step = ["train-step", *dense, "--num-gpus", "8", "--global-batch", "64", "--zero", "3", "--recompute", "full"]
    assert _moe_or_cp(cli(*step, "--json").json()["assumptions"]) == []
    with_cp = cli(*step[:-4], "--tp", "4", "--cp", "2", "--json").json()["assumptions"]
    assert [x for x in _moe_or_cp(with_cp)] == [next(x for x in with_cp if x.startswith("context parallel K/V exchange"))]
    one_gpu = cli("latency", *dense, "--prompt", "1000", "--json").json()["assumptions"]
    assert not any("all-reduce buffers" in x for x in one_gpu)  # one GPU builds no communicator


def test_serve_ranks_tokens_per_gpu_by_one_definition_at_every_batch(cli) -> None:
    """Output tokens/s per GPU = B x O / (TTFT + (O - 1) x TPOT) / GPUs at every batch, each slot's own prefill
    included. A 200K-token prompt on one MI300X: batch 1's TPOT carries no prefill, batch 4's carries the other
    three prompts; with B / TPOT batch 1 read 1 / 39 ms = 25.6 tokens/s against batch 4's 7.97, by this definition
    about 256 / (43.0 s + 255 x 0.039 s) = 4.8 against 4 x 256 / (43.0 s + 255 x 0.50 s) = 6.0."""
    o = 256
    data = cli("serve", "mistral-nemo-12b", "--gpu", "mi300x", "--num-gpus", "1", "--prompt", "200000", "--output",
               str(o), "--json").json()
    best = data["best"]
    for point in best["frontier"]:
        by_hand = point["batch"] * o / (point["ttft_ms"] / 1e3 + (o - 1) * point["tpot_ms"] / 1e3)
        assert point["tokens_per_s_per_gpu"] == pytest.approx(by_hand, rel=1e-9)
    assert best["tokens_per_s_per_gpu"] == pytest.approx(
        best["batch"] * o / (best["ttft_ms"] / 1e3 + (o - 1) * best["tpot_ms"] / 1e3), rel=1e-9)
    one = next(p for p in best["frontier"] if p["batch"] == 1)
    assert best["batch"] > 1 and best["tokens_per_s_per_gpu"] > one["tokens_per_s_per_gpu"]


@pytest.mark.parametrize("low, high, minimum, whole_low, whole_high", [
    (6.15, 17.0, 1, 6, 17),  # the QA report's "8 GPUs (6.15-17)": 6-17 GPUs
    (0.79, 1.82, 1, 1, 2),  # at least one GPU
    (3.72, 4.06, 0, 3, 5),  # requests: 3-5
    (17.0000000001, 17.0000000002, 0, 17, 17),  # float noise is not a unit
])
def test_count_bands_are_whole_and_rounded_outward(low: float, high: float, minimum: int, whole_low: int,
                                                   whole_high: int) -> None:
    from calc.bands import Band
    from calc.report.confidence import whole

    b = whole(Band(low, high, 0.8, 10, "g"), minimum=minimum)
    assert (b.low, b.high, b.level, b.rows) == (whole_low, whole_high, 0.8, 10)


def test_serve_count_bands_are_whole_gpus_and_requests(cli) -> None:
    data = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--rate", "20", "--json").json()
    for band, value in ((data["bands"]["gpus_needed"], data["gpus_needed"]),
                        (data["best"]["bands"]["max_concurrency"], data["best"]["max_concurrency"])):
        assert band["low"] == int(band["low"]) and band["high"] == int(band["high"])
        assert band["low"] <= value <= band["high"]
