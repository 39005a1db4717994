"""Serving timing asked two ways gives one answer (issue 20): `serve`'s batch-1 row is `latency`'s batch-1
static batch, `latency`'s default is the causal prefill the validation rows run, and the layout search is
monotone (a looser target never needs more GPUs, a higher rate never fewer)."""

from __future__ import annotations

import itertools
import math

import pytest

from calc.serving.step import experts_touched
from calc.sources.catalog import load_gpu, load_model


def _serve_rows(cli, model: str, gpus: int, *extra: str) -> dict[str, dict]:
    plan = cli("serve", model, "--gpu", "h100", "--prompt", "1000", "--output", "200", "--num-gpus", str(gpus),
               "--json", *extra).json()
    return {x["name"]: x["frontier"][0] for x in plan["layouts"]}


@pytest.mark.parametrize(("model", "tp", "pp"), [
    ("llama3-8b", 1, 1), ("llama3-8b", 2, 1), ("llama3-8b", 1, 2), ("gemma3-27b", 2, 1),
    ("mixtral-8x7b", 2, 1), ("mixtral-8x7b", 1, 2), ("gpt-oss-20b", 1, 1),
])
def test_serve_batch_one_row_is_latency(cli, model: str, tp: int, pp: int) -> None:
    # One request on the replica: its prefill is its own step(s) and no other prompt shares its decode steps,
    # so serve's batch-1 frontier row is latency's static batch of 1 on the same layout, to the last bit
    # (the 1000-token prompt fits one prefill chunk).
    row = _serve_rows(cli, model, tp * pp)[f"TP{tp} x PP{pp}"]
    lat = cli("latency", model, "--gpu", "h100", "--tp", str(tp), "--pp", str(pp), "--prompt", "1000",
              "--output", "200", "--json").json()
    assert row["batch"] == 1
    assert row["ttft_ms"] == lat["ttft_s"] * 1e3
    assert row["tpot_ms"] == lat["tpot_s"] * 1e3
    # serve's tokens/s per GPU counts each request's whole life, its prefill included (calc.serving.plan, "ranking"):
    # at batch 1 that is latency's O / e2e = 200 / (TTFT + 199 x TPOT), over the layout's GPUs
    assert row["tokens_per_s_per_gpu"] == pytest.approx(200 / lat["e2e_s"] / (tp * pp), rel=1e-12)


def test_moe_decode_at_batch_one_reads_the_top_k_experts_only() -> None:
    # Mixtral-8x7B, one decode token on one GPU reads every non-expert matmul weight and 2 of the 8 experts:
    #   attention 32 x (2 x 4096^2 + 2 x 4096 x 1024) = 1,342,177,280; router 32 x 4096 x 8 = 1,048,576;
    #   head 32000 x 4096 = 131,072,000 (the embedding is gathered, not read);
    #   experts 32 x 8 x 3 x 4096 x 14336 = 45,097,156,608, x 2/8 = 11,274,289,152
    #   -> 12,748,587,008 params x 2 B = 25,497,174,016 B,
    # plus the KV of the mean decode context 1000 + 100 tokens x 32 x 2 x 8 x 128 x 2 B = 144,179,200 B.
    from calc.serving.latency import latency

    r = latency(load_model("mixtral-8x7b"), load_gpu("h100"), prompt=1000, output=200)
    assert r.decode_bytes_per_step == 25_497_174_016 + 144_179_200


def test_experts_touched_is_the_occupancy_expectation() -> None:
    # Brute force over every routing of B tokens, each choosing k of E experts uniformly: the mean number of
    # distinct experts the step reads.
    for experts, k, tokens in ((4, 2, 1), (4, 2, 2), (4, 1, 3), (5, 2, 2), (6, 3, 2)):
        choices = list(itertools.combinations(range(experts), k))
        union = [len(set().union(*pick)) for pick in itertools.product(choices, repeat=tokens)]
        assert experts_touched(experts, k, tokens) == pytest.approx(sum(union) / len(union), rel=1e-12)
    assert experts_touched(8, 8, 3) == 8  # every expert active: dense


def test_latency_default_is_the_causal_prefill_validate_runs(cli) -> None:
    from benchmarks.validate_serving import latency_rows

    rows = {r["id"]: r for r in latency_rows()}
    # L2 is a TensorRT-LLM row, predicted as the corpus predicts it (its engine's step overhead): latency --engine trtllm
    args = ("latency", "llama2-7b", "--gpu", "a100-80g", "--dtype", "fp16", "--prompt", "2048", "--output", "1",
            "--engine", "trtllm", "--json")
    default, causal, full = cli(*args).json(), cli(*args, "--causal").json(), cli(*args, "--non-causal").json()
    assert default["ttft_s"] * 1e3 == pytest.approx(rows["L2"]["predicted"], rel=1e-12) == causal["ttft_s"] * 1e3
    assert full["ttft_s"] > default["ttft_s"]  # every token seeing all 2048 keys costs more than the causal half


MONOTONE_MODELS = ("gemma3-27b", "mixtral-8x7b", "gpt-oss-20b", "llama3-8b")


def _gpus(model: str, **kw: float | None) -> float:
    from calc.serving.plan import serve_plan

    plan = serve_plan(load_model(model), load_gpu("h100"), prompt=1000, output=200, **kw)
    return math.inf if plan.gpus_needed is None else plan.gpus_needed


@pytest.mark.parametrize("model", MONOTONE_MODELS)
def test_looser_targets_never_need_more_gpus_and_more_traffic_never_fewer(model: str) -> None:
    # The cases: gemma3-27b at 8 requests/s needed 4 GPUs at --tpot-ms 200 and 2 at the stricter 60.
    tpot = [_gpus(model, rate=8, tpot_ms=t) for t in (30, 60, 200, None)]
    ttft = [_gpus(model, rate=8, tpot_ms=100, ttft_ms=t) for t in (150, 400, 2000, None)]
    rate = [_gpus(model, rate=r, tpot_ms=100, ttft_ms=1000) for r in (0.5, 4, 8, 32)]
    users = [_gpus(model, users=u, tpot_ms=100) for u in (10, 100, 1000)]
    assert tpot == sorted(tpot, reverse=True), tpot
    assert ttft == sorted(ttft, reverse=True), ttft
    assert rate == sorted(rate) and users == sorted(users), (rate, users)


def test_gpus_ridge_point_is_latencys_for_its_dtype(cli) -> None:
    # T4: fp16 tensor peak 65 TFLOPS over 0.32 TB/s = 203.125 FLOPs/byte (its int8 peak, 130, would give 406.25);
    # H100 SXM bf16 989.4 / 3.35 = 295.34.
    rows = {r["name"]: r for r in cli("gpus", "--json").json()}
    assert (rows["t4"]["ridge_point_flops_per_byte"], rows["t4"]["ridge_point_dtype"]) == (65 / 0.32, "fp16")
    assert rows["h100-sxm"]["ridge_point_flops_per_byte"] == pytest.approx(989.4 / 3.35, rel=1e-12)
    for gpu, dtype in (("t4", "fp16"), ("h100-sxm", "bf16")):
        lat = cli("latency", "llama3.2-1b", "--gpu", gpu, "--dtype", dtype, "--prompt", "512", "--json").json()
        assert lat["ridge_point_flops_per_byte"] == rows[gpu]["ridge_point_flops_per_byte"]
