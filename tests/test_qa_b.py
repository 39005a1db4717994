"""Regression tests for defects found in the QA pass (latency, concurrency, serve, report, compare, catalog, bench)."""

from __future__ import annotations

import pytest
from conftest import run_cli


def test_latency_table_is_not_cropped_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich laid the 7-column latency table out 1 cell wider than an 80-column terminal and cropped
    # its right border; every table line must close with its border
    from calc.report import render

    monkeypatch.setattr(render.console, "_width", 80)
    r = run_cli("latency", "deepseek-v3", "--gpu", "h200", "--num-gpus", "8", "--prompt", "4K", "--output", "256", "--batch", "8")
    assert r.code == 0, r.err
    rows = [line.rstrip() for line in r.out.splitlines() if line.startswith(("┃", "│ prefill", "│ decode"))]
    assert rows and all(line.endswith(("┃", "│")) for line in rows), rows


@pytest.mark.parametrize("args", [
    ["latency", "llama3-8b", "--gpu", "h100", "--prompt", "4K", "--output", "0"],
    ["report", "llama3-8b", "--gpu", "h100", "--output", "0"],
    ["compare", "llama3-8b", "h100", "a100-80g", "--output", "0"],
])
def test_zero_output_tokens_is_refused_not_an_end_to_end_below_ttft(args: list[str]) -> None:
    # e2e = TTFT + (T - 1) x TPOT gave e2e < TTFT at T = 0 (0.105 s vs TTFT 0.113 s)
    r = run_cli(*args)
    assert r.code == 2 and r.err.startswith("llmcalc: error: --output:") and r.err.count("\n") == 1, r.err


def test_one_output_token_is_ttft_alone() -> None:
    # T = 1: e2e = TTFT + (1 - 1) x TPOT = TTFT exactly
    r = run_cli("latency", "llama3-8b", "--gpu", "h100", "--prompt", "4K", "--output", "1", "--json")
    assert r.code == 0, r.err
    assert r.json()["e2e_s"] == pytest.approx(r.json()["ttft_s"], rel=1e-12)


@pytest.mark.parametrize("cmd", [["serve", "--prompt", "100", "--output", "100"], ["concurrency"], ["latency", "--prompt", "100"]])
def test_dtype_int4_keeps_a_16_bit_kv_cache(cmd: list[str]) -> None:
    # --dtype int4 was refused ("no serving engine stores its KV cache in int4"); the engines' KV default is
    # auto = the 16-bit activation dtype (issue 24), so int4 weights run with a bf16 KV cache; --kv-dtype int4 is refused
    r = run_cli(cmd[0], "llama3-8b", "--gpu", "h100", *cmd[1:], "--dtype", "int4")
    assert r.code == 0, r.err
    r = run_cli(cmd[0], "llama3-8b", "--gpu", "h100", *cmd[1:], "--dtype", "int4", "--kv-dtype", "int4")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --kv-dtype:"), r.err


@pytest.mark.parametrize("name", ["", "   "])
def test_import_refuses_an_empty_name_instead_of_ignoring_it(name: str) -> None:
    # --name "" was silently replaced by the file's own name
    from pathlib import Path

    config = Path(__file__).parent / "fixtures" / "hf" / "qwen3-8b.json"
    r = run_cli("import", str(config), "--name", name)
    assert r.code == 2 and r.err.startswith("llmcalc: error: --name:"), r.err


def test_report_train_memory_is_the_layout_it_times() -> None:
    # the page said "does not fit: short by 323 GiB per GPU" (ZeRO-1, no recompute, DP 16) and then gave
    # 758 days at the MFU of another layout; memory must be that timed layout's. The report used to refuse first with
    # a plain ZeRO-3 DP16 check (eager kernels, 5% fragmentation: 84.74 GiB) although train-plan finds layouts that
    # fit (TP8 PP2 ZeRO-0 is the fastest); the searched plan is the fit check now.
    r = run_cli("report", "llama3-70b", "--gpu", "h100", "--num-gpus", "16", "--mode", "train", "--json")
    assert r.code == 0, r.err
    d = r.json()
    plan = d["train_time"]["plan"].split()
    tp, pp = int(plan[0][2:]), int(plan[1][2:].split("x")[0])
    dp, zero = int(plan[2][2:]), int(next(p for p in plan if p.startswith("ZeRO"))[4:])
    assert tp * pp * dp == 16
    mem = d["memory"]
    assert mem["fits"] is True and (mem["tp"], mem["pp"], mem["dp"]) == (tp, pp, dp)
    n = 70_553_706_496
    # the rank priced holds 80/p layers of 855,654,400 (q, o 8192^2, k, v 8192 x 1024, MLP 3 x 8192 x 28672, norms
    # 16,384) + the embedding 128,256 x 8,192 (the first rank: the in-flight micro-batches make it the fullest)
    stage = 80 // pp * 855_654_400 + 128_256 * 8_192 if pp > 1 else n
    # bf16 weights 2 B x its parameters over TP (and DP under ZeRO-3); fp32 master + Adam 12 B over TP (and DP from ZeRO-1)
    assert mem["per_gpu"]["weights"] == -(-2 * stage // (tp * (dp if zero == 3 else 1)))
    assert mem["per_gpu"]["optimizer"] == -(-12 * stage // (tp * (dp if zero >= 1 else 1)))
    # on 16 GPUs the 16 B/param states of the rank leave room only split 16 ways (TP x PP x DP-sharding)
    assert tp * pp * (dp if zero >= 1 else 1) >= 16


def test_report_train_with_zero_given_keeps_it() -> None:
    # an explicit --zero pins the stage of the plan the report times, and the memory page is that plan's (issue 20:
    # it priced plain DP beside a timed plan of another shape): ZeRO-1 keeps the bf16 weights whole per TP x PP
    # shard, 2 B x the first rank's 80/p layers of 855,654,400 + its embedding 128,256 x 8,192, over t, per GPU
    r = run_cli("report", "llama3-70b", "--gpu", "h100", "--num-gpus", "16", "--mode", "train", "--zero", "1", "--json")
    assert r.code == 0, r.err
    plan = r.json()["train_time"]["plan"].split()
    assert "ZeRO1" in plan
    tp, pp = int(plan[0][2:]), int(plan[1][2:].split("x")[0])
    assert pp > 1 and r.json()["memory"]["per_gpu"]["weights"] == -(-2 * (80 // pp * 855_654_400 + 128_256 * 8_192) // tp)


def test_finetune_and_training_views_never_elide(monkeypatch: pytest.MonkeyPatch) -> None:
    # the fine-tuning report cut its 30-cell share bars with "…" at 80 columns (it used rich's own Table)
    from calc.report import render

    monkeypatch.setattr(render.console, "_width", 80)
    for args in (["report", "llama3-70b", "--gpu", "h100", "--num-gpus", "8", "--mode", "finetune"],
                 ["train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "16", "--global-batch", "64"],
                 ["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "64", "--zero", "1"]):
        r = run_cli(*args)
        # a page that does not fit is still printed in full, then refused (exit 2, one line naming what fits)
        assert (r.code == 0 or "does not fit" in r.err) and r.out and "…" not in r.out, (args, r.err)


def test_compare_refuses_a_price_for_a_gpu_not_compared() -> None:
    # `compare llama3-70b h100 h200 --price a100=2` printed the table and dropped the a100 price silently
    r = run_cli("compare", "llama3-8b", "h100", "h200", "--price", "a100=2")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --price:") and "a100" in r.err, r.err
    r = run_cli("compare", "llama3-8b", "h100", "h200", "--price", "h100=2", "--json")
    assert r.code == 0, r.err
    rows = {row["gpu"]: row for row in r.json()}
    # $/M tokens = price x GPUs / (tokens/s x 3600) x 1e6
    h100 = rows["h100-sxm"]
    assert h100["cost_per_million_tokens"] == pytest.approx(2 * h100["gpus"] / (h100["tokens_per_s"] * 3600) * 1e6, rel=1e-9)
    assert rows["h200"]["cost_per_million_tokens"] is None


def test_serve_sizes_a_huge_rate_and_warns() -> None:
    # --rate 1e30 printed "None x h100-sxm cannot carry 1e+30 requests/s ... drop --num-gpus" (no --num-gpus was
    # given): the replica search stopped at 100,000 replicas before its first try
    r = run_cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "200", "--rate", "1e30", "--json")
    assert r.code == 0, r.err
    d = r.json()
    # one TP1 replica holds at most 256 sequences; each finishes 200 tokens after >= 200 x 2 ms of step overhead,
    # so it serves < 256 / 0.4 = 640 requests/s: 1e30 req/s needs > 1e30 / 640 = 1.6e27 GPUs
    assert d["gpus_needed"] > 1.5e27
    assert "None" not in d["verdict"]
    assert "llmcalc: warning: --rate: needs" in r.err
    r = run_cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "200", "--rate", "20", "--json")
    # no warning about the rate; a tight fit verdict (issue 23: the KV cache inside its band) may say one line
    assert r.code == 0 and all(line.startswith("llmcalc: warning: fit: tight") for line in r.err.splitlines()), r.err


def test_disaggregated_on_one_gpu_is_refused_not_ignored() -> None:
    # serve --disaggregated --num-gpus 1 printed colocated layouts only: the flag changed nothing
    r = run_cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "200", "--disaggregated", "--num-gpus", "1")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --disaggregated:"), r.err
    r = run_cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "200", "--disaggregated", "--num-gpus", "2",
                "--json")
    assert r.code == 0 and any(x["prefill_gpus"] for x in r.json()["layouts"]), r.err


def test_emit_follows_or_matches_the_engine() -> None:
    # `serve --engine sglang --emit vllm` printed a vLLM command for a plan sized as SGLang sizes memory
    base = ("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "200")
    r = run_cli(*base, "--engine", "sglang", "--emit", "vllm")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --emit:"), r.err
    alone, both = run_cli(*base, "--emit", "sglang", "--json"), run_cli(*base, "--engine", "sglang", "--emit", "sglang", "--json")
    assert alone.code == 0 and alone.json()["engine"] == "sglang"
    assert alone.json()["layouts"][0]["kv_cache_tokens"] == both.json()["layouts"][0]["kv_cache_tokens"]


def test_bench_bytes_counts_each_weight_once_plus_the_largest_operands() -> None:
    # bench deepseek-v3 / validate llama3.1-405b on a 24 GB CPU host were killed by the OOM killer (no error line)
    from calc.hardware.bench_model import bench_bytes
    from calc.hardware.model_ops import Op

    ops = [Op(kind="gemm", label="q", phase="prefill", tokens=64, flops=0, elements_moved=0, m=64, k=100, n=200),
           Op(kind="gemm", label="q", phase="decode", tokens=1, flops=0, elements_moved=0, m=1, k=100, n=200),
           Op(kind="gemm", label="experts", phase="prefill", tokens=64, flops=0, elements_moved=0, m=8, k=100, n=50, count=4)]
    # weights: 100*200 (q, shared by both sizes) + 4*100*50 (experts) = 40,000; largest operands: 64*(100+200) = 19,200
    assert bench_bytes(ops, 4) == (40_000 + 19_200) * 4


def test_require_free_refuses_what_the_host_cannot_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from calc.errors import LLMCalcError
    from calc.hardware.bench import require_free

    pages = {"SC_PAGE_SIZE": 4096, "SC_AVPHYS_PAGES": 1_000_000}  # 4.096 GB free
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    require_free(None, False, 3_600_000_000, "--tp", "x", "y")  # 3.6 GB < 90% of 4.096 GB = 3.69 GB
    with pytest.raises(LLMCalcError) as err:
        require_free(None, False, 3_700_000_000, "--tp", "timing x", "give a larger --tp")
    assert err.value.field == "--tp" and "4.1 GB free" in str(err.value)


def test_markdown_reports_never_print_none() -> None:
    # "smallest GPU count that fits: None" (train) and "smallest GPU count None" (finetune) in --format markdown
    for args in (["report", "llama3.1-405b", "--gpu", "h200", "--mode", "train", "--num-gpus", "64", "--format", "markdown"],
                 ["report", "llama3.1-405b", "--gpu", "h200", "--mode", "finetune", "--num-gpus", "8", "--format", "markdown"]):
        r = run_cli(*args)
        assert (r.code == 0 or "does not fit" in r.err) and r.out and "None" not in r.out, (args, r.err)


def test_pipeline_prefill_of_one_request_is_not_split_across_stages() -> None:
    # latency llama3-70b --tp 2 --pp 4 --batch 1 gave TTFT 68 ms, below the 71 ms the prompt's FLOPs take on a
    # TP-2 group at 100% of peak: one 1000-token prompt was cut into 4 micro-batches of 250 tokens.
    # One request crosses the 4 stages in turn, so its TTFT is that of TP 2 alone (plus 3 stage sends).
    # (llama3-8b: both layouts hold it, so both JSON answers carry a TTFT; a deployment that does not fit has none)
    base = ("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "100", "--batch", "1", "--json")
    pp = run_cli(*base, "--tp", "2", "--pp", "4").json()
    tp = run_cli(*base, "--tp", "2").json()
    assert pp["ttft_s"] >= tp["ttft_s"]
    assert pp["ttft_s"] == pytest.approx(tp["ttft_s"], rel=0.01)
    assert pp["ttft_s"] >= pp["ttft_at_full_peak_s"]
    # B = 8 on 4 stages: 4 micro-batches of 2; at 100% of peak (p + n - 1)/p = 7/4 micro-batch traversals,
    # never above the modelled TTFT
    b8 = run_cli(*base[:-3], "--batch", "8", "--json", "--tp", "2", "--pp", "4").json()
    assert b8["ttft_at_full_peak_s"] < b8["ttft_s"]


def test_concurrency_table_groups_thousands() -> None:
    # "1939" beside "1,024" in the same table was the finding (llama4-scout under vLLM V0 0.6.5, a release that cannot
    # load Llama 4, refused since pass 42: calc.serving.support). The rule checked here: every count of four digits
    # or more in the concurrency-vs-context table is grouped in thousands (Llama 3 8B on 8 H100s holds thousands of
    # 1,024-token requests), whatever the figures.
    import re

    r = run_cli("concurrency", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--max-model-len", "65536",
                "--engine", "vllm-v0", "--engine-version", "0.6.5")
    assert r.code == 0, r.err
    table = r.out[r.out.index("Concurrency vs context length"):r.out.index("Assumptions")]
    rows = [line for line in table.splitlines() if line.startswith("│")]
    assert rows and any(re.search(r"\b\d,\d{3}\b", line.split("│")[3]) for line in rows)  # a grouped count
    assert not re.search(r"(?<![\d,.])\d{4,}(?![\d,.])", table), table  # no ungrouped one

def test_negative_numbers_are_called_negative_not_not_a_number() -> None:
    # `compare ... --price h100=-1` said "'-1' is not a number"
    r = run_cli("compare", "llama3-8b", "h100", "h200", "--price", "h100=-1")
    assert r.code == 2 and r.err.strip() == "llmcalc: error: --price: must be >= 0 per GPU-hour, got -1", r.err  # 0 = free is allowed
    r = run_cli("compare", "llama3-8b", "h100", "--price", "h100=abc")
    assert r.code == 2 and "is not a number" in r.err, r.err


def test_report_memory_chart_stops_at_the_context_window() -> None:
    # llama3-8b (8,192-token window) was charted at 16,384 and 32,768 tokens per request
    r = run_cli("report", "llama3-8b", "--gpu", "h100", "--json")
    assert r.code == 0, r.err
    assert [p["tokens_per_request"] for p in r.json()["chart"]["vs_context"]] == [1024, 2048, 4096, 8192]


def test_report_chart_caps_sliding_window_layers_at_their_window() -> None:
    # gemma-3-27b: the chart grew KV linearly (32K tokens: 2,995,739,688,960 B at 180 requests) while `concurrency`
    # caps its 52 local layers at the 1,024-token window. By hand, TP 2 (8 of 16 KV heads per rank, d 128, bf16):
    # 2 x 8 x 128 x 2 B = 4,096 B per token-layer per rank; 10 global layers x 32,768 + 52 local x 1,024 =
    # 380,928 token-layers. vLLM V1's hybrid KV-cache groups (>= 0.9.1, kv_cache_utils.py
    # _get_kv_cache_groups_uniform_page_size) pad the 52 local layers to 6 groups of 10: 10 x 32,768 + 60 x 1,024 =
    # 389,120 token-layers -> 1,593,835,520 B per rank, x 2 ranks = 3,187,671,040 B per request
    r = run_cli("report", "gemma-3-27b", "--gpu", "h100", "--num-gpus", "2", "--json")
    assert r.code == 0, r.err
    point = next(p for p in r.json()["chart"]["vs_context"] if p["tokens_per_request"] == 32768)
    assert point["kv_cache_bytes"] == point["requests"] * 3_187_671_040
