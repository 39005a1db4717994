"""report and compare: the report is the union of the single commands' results."""

from __future__ import annotations

from pathlib import Path

import pytest

INFER = ["llama2-70b", "--gpu", "a800", "--num-gpus", "2"]


def test_report_json_is_union_of_single_commands(cli) -> None:
    report = cli("report", *INFER, "--prompt", "3000", "--output", "1000", "--batch", "4", "--json").json()
    assert report["params"] == cli("params", "llama2-70b", "--json").json()
    assert report["flops"] == cli("flops", "llama2-70b", "--batch", "4", "--seq", "3000", "--json").json()
    assert report["memory"] == cli("memory", "llama2-70b", "--gpu", "a800", "--num-gpus", "2", "--batch", "4",
                                   "--seq", "4000", "--json").json()
    assert report["concurrency"] == cli("concurrency", *INFER, "--max-tokens", "4000", "--json").json()
    assert report["latency"] == cli("latency", *INFER, "--batch", "4", "--prompt", "3000", "--output", "1000",
                                    "--json").json()
    assert report["serving"] == cli("serve", *INFER, "--prompt", "3000", "--output", "1000", "--json").json()


def test_train_report_json_is_union(cli) -> None:
    args = ["llama2-7b", "--gpu", "a100", "--num-gpus", "64"]
    report = cli("report", *args, "--mode", "train", "--seq", "4096", "--tokens", "2T", "--zero", "1", "--json").json()
    assert report["train_time"] == cli("train-time", *args, "--tokens", "2T", "--seq", "4096", "--zero", "1",
                                       "--json").json()
    # the memory page is the timed plan's (ZeRO pinned by --zero 1; micro-batch and recomputation as searched)
    plan = report["train_time"]["plan"].split()
    assert plan[:3] == ["TP1", "PP1", "DP64"], plan
    micro, recompute = next(p[2:] for p in plan if p.startswith("mb")), next(p[3:] for p in plan if p.startswith("rc:"))
    # the step train-time searched: 4M tokens / 4,096 = 1,024 sequences, a multiple of the 64 GPUs (default_global_batch)
    assert report["memory"] == cli("memory", "llama2-7b", "--mode", "train", "--gpu", "a100", "--num-gpus", "64",
                                   "--seq", "4096", "--zero", "1", "--batch", micro, "--recompute", recompute,
                                   "--global-batch", "1024", "--json").json()


def test_chart_agrees_with_concurrency(cli) -> None:
    report = cli("report", *INFER, "--prompt", "3000", "--output", "1000", "--json").json()
    chart, limit = report["chart"], report["concurrency"]["max_concurrency"]
    for point in chart["vs_concurrency"]:
        total = point["weights_bytes"] + point["kv_cache_bytes"] + point["other_bytes"]
        assert (total <= chart["capacity_bytes"]) == (point["requests"] <= limit), point


def test_markdown_has_every_section(cli) -> None:
    md = cli("report", *INFER, "--format", "markdown").out
    for heading in ("# Sizing report", "## Model", "## FLOPs", "## Memory per GPU", "## Fit", "## Concurrency",
                    "## Latency", "## Assumptions", "## Derivations", "### Parameters", "### Latency"):
        assert heading in md
    assert "68,976,648,192" in md and "KV/token = 2*L*g*d*bytes" in md


def test_terminal_report_shows_chart_and_verdict(cli) -> None:
    out = cli("report", *INFER).out
    assert "Memory vs concurrent requests" in out and "concurrent requests of" in out


def test_plot_png(cli, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install '.[plot]')")
    path = tmp_path / "chart.png"
    assert cli("report", *INFER, "--plot", str(path)).code == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_plot_rejects_other_suffix(cli, tmp_path: Path) -> None:
    r = cli("report", *INFER, "--plot", str(tmp_path / "chart.jpg"))
    assert r.code == 2 and "--plot" in r.err


def test_compare(cli) -> None:
    # Llama-2-13B fp16 weights: 2 x 13,015,864,320 = 26.03 GB: fits 80 GB parts, not a 24 GB L4.
    rows = cli("compare", "h100", "a800", "l4", "--model", "llama2-13b", "--num-gpus", "1", "--price", "h100=2.5",
               "--json").json()
    by_gpu = {r["gpu"]: r for r in rows}
    assert by_gpu["h100-sxm"]["fits"] and by_gpu["a800"]["fits"]
    assert not by_gpu["l4"]["fits"] and by_gpu["l4"]["max_concurrency"] == 0
    # Cost per million tokens = 2.5 $/h x GPUs / (tokens/s x 3600) x 1e6.
    h100 = by_gpu["h100-sxm"]
    assert h100["cost_per_million_tokens"] == pytest.approx(2.5 * h100["gpus"] / (h100["tokens_per_s"] * 3600) * 1e6)
    assert by_gpu["a800"]["cost_per_million_tokens"] is None
    # without --num-gpus serve sizes the layout: two L4s (TP2) hold the 26 GB
    l4 = cli("compare", "llama2-13b", "l4", "--json").json()[0]
    assert l4["fits"] and l4["gpus"] >= 2


def test_compare_figures_carry_their_bands(cli) -> None:
    """Each GPU's TTFT, TPOT and tokens/s carry the band of their corpus kind, read for that GPU's generation, the
    weights' dtype class and the engine, as latency / serve read them (issue 23: no figure without its band); a GPU
    with no layout has no figure and no band."""
    from calc.bands import NO_BAND, band

    rows = cli("compare", "llama3-70b", "h100", "a100-80g", "--prompt", "2K", "--output", "512", "--json").json()
    arch = {"h100-sxm": "Hopper", "a100-80g": "Ampere"}
    kinds = {"ttft_s": "serving_ttft", "tpot_s": "serving_tpot", "tokens_per_s": "serving_throughput"}
    for r in rows:
        assert r["model"] == "llama3-70b" and r["engine"] == "vllm" and r["weights_dtype"] == "bf16"
        assert set(r["bands"]) == {"ttft_s", "tpot_s", "tokens_per_s"}
        for key, b in r["bands"].items():
            # the band latency / serve print for this figure: its kind's residual quantiles about it (an 80% band
            # need not hold the point itself: the serving_prefill pool's q10 is above 1 since pass 21's refit, the
            # measured TTFTs of its rows all but never below the prediction)
            own = band(kinds[key], r[key], gpu=arch[r["gpu"]], dtype="bf16", stack="vllm")
            assert (b["low"], b["high"]) == pytest.approx((own.low, own.high)) and (b["rows"], b["group"]) == (own.rows, own.group)
            # a figure whose nearest rows scatter past the cap prints "no band" with their ends (calc.bands: rows 0);
            # TTFT since pass 30, whose prefill pool holds a client-side TTFT six times the engine's prefill
            assert b["low"] < b["high"] and b["level"] == 0.8 and (b["rows"] > 0 or b["group"].startswith(NO_BAND))
            assert key == "ttft_s" or b["rows"] > 0
        assert r["bands"]["tpot_s"]["low"] <= r["tpot_s"] <= r["bands"]["tpot_s"]["high"]
    for r in rows:
        assert arch[r["gpu"]] in r["bands"]["tpot_s"]["group"]
    table = cli("compare", "llama3-70b", "h100", "a100-80g", "--prompt", "2K", "--output", "512")
    assert table.code == 0 and "How sure" in table.out and "h100-sxm: TPOT" in table.out and "a100-80g: TTFT" in table.out


def test_html_report_is_self_contained(cli, tmp_path: Path) -> None:
    import re
    import shutil
    import subprocess

    page = cli("report", *INFER, "--prompt", "3000", "--output", "1000", "--format", "html").out
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    assert "Serving plan" in page and "GPU KV cache size" in page
    # no network: the only URL is the SVG namespace; no scripts, no external stylesheets or images
    assert set(re.findall(r"https?://[^\"' ]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "<script" not in page and "<link" not in page and "<img" not in page
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium installed: the page was checked as text only (apt-get install chromium)")
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-500:]
    assert dom.stdout.count("<svg") == 2 and "Serving plan" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,2400", path.as_uri()], capture_output=True, timeout=60)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_cost_per_million_tokens_by_hand() -> None:
    from calc.report.build import cost_per_million_tokens

    # 8 GPUs at $2/h = $16/h; 1,000 tokens/s = 3.6 M tokens/h -> 16 / 3.6 = $4.444 per million
    assert cost_per_million_tokens(8, 2.0, 1000.0) == pytest.approx(4.4444444, rel=1e-6)
    # 1 GPU at $2.5/h, 500 tokens/s = 1.8 M tokens/h -> $1.3889 per million
    assert cost_per_million_tokens(1, 2.5, 500.0) == pytest.approx(1.3888889, rel=1e-6)


SLO = ["--prompt", "2000", "--output", "500", "--ttft-ms", "1000", "--tpot-ms", "30", "--rate", "20"]


def test_report_takes_targets_and_rate_and_shows_serves_layout(cli) -> None:
    # `report` and `serve` given the same request, targets and rate make the same plan (issue 24 item 8)
    rep = cli("report", "llama3-8b", "--gpu", "h100", *SLO, "--json").json()
    plan = cli("serve", "llama3-8b", "--gpu", "h100", *SLO, "--json").json()
    assert rep["serving"] == plan
    best = rep["serving"]["best"]
    assert best["tpot_ms"] <= 30 and best["ttft_ms"] <= 1000  # the targets bind the report's plan too
    assert "best:" in cli("report", "llama3-8b", "--gpu", "h100", *SLO).out


def test_compare_prices_serves_layout_at_its_batch(cli) -> None:
    rows = cli("compare", "llama3-8b", "h100", "h200", *SLO, "--price", "h100=2", "--price", "h200=3", "--json").json()
    for row, gpu, price in ((rows[0], "h100", 2.0), (rows[1], "h200", 3.0)):
        best = cli("serve", "llama3-8b", "--gpu", gpu, *SLO, "--json").json()["best"]
        assert (row["gpus"], row["batch"]) == (best["gpus_needed"], best["batch"]) and best["batch"] > 1
        # by hand from serve's own figures: replicas x B x O / (TTFT + (O - 1) x TPOT) output tokens/s, each request's
        # prefill included (serve's steady state; a slot is busy from its prefill on: TTFT without the queueing wait)
        o = int(SLO[SLO.index("--output") + 1])
        busy_ms = best["ttft_ms"] - best["queue_ms"] + (o - 1) * best["tpot_ms"]
        tokens_per_s = best["replicas"] * best["batch"] * o / (busy_ms / 1e3)
        assert row["tokens_per_s"] == pytest.approx(tokens_per_s, rel=1e-9)
        # serve's own tokens_per_s is one replica's of that steady state (it was B / TPOT, prefill left out); B / TPOT
        # is decode_tokens_per_s
        assert best["replicas"] * best["tokens_per_s"] == pytest.approx(tokens_per_s, rel=1e-9)
        assert best["decode_tokens_per_s"] == pytest.approx(best["batch"] / (best["tpot_ms"] / 1e3), rel=1e-9)
        assert row["cost_per_million_tokens"] == pytest.approx(best["gpus_needed"] * price / (tokens_per_s * 3600) * 1e6,
                                                               rel=1e-9)


@pytest.mark.parametrize("args, flag", [
    (["compare", "llama3-8b", "h100", "--batch", "4"], "--batch"),
    (["report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--rate", "5"], "--rate"),
    (["report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--ttft-ms", "500"], "--ttft-ms"),
])
def test_targets_and_batch_refused_where_they_change_nothing(cli, args: list[str], flag: str) -> None:
    r = cli(*args)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}:"), r.err


def test_report_json_lists_its_assumptions_once(cli) -> None:
    """report --json has a top-level ``assumptions`` as every other command: serving, the concurrency answer's and
    the serving plan's; training, the memory page's and the training time's, each line once."""
    infer = cli("report", *INFER, "--prompt", "3000", "--output", "1000", "--json").json()
    parts = infer["concurrency"]["assumptions"] + infer["serving"]["assumptions"]
    assert infer["assumptions"] == list(dict.fromkeys(parts))
    assert len(infer["assumptions"]) < len(parts)  # the two share lines (weights, efficiency): printed once
    train = cli("report", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--mode", "train", "--json").json()
    assert train["assumptions"] == list(dict.fromkeys(train["memory"]["assumptions"]
                                                      + train["train_time"]["assumptions"]))
    assert "recipe bf16-adam: 2 B weights + 2 B gradients + 12 B optimizer per parameter; activations 2 B an element" \
        in train["assumptions"]


def test_train_plan_json_has_explain_as_train_step(cli) -> None:
    """train-plan --json carries ``explain`` (what --explain prints): the search's assumptions, then the best plan's
    derivation without its assumption lines (the search's own)."""
    args = ["llama2-7b", "--gpu", "a100", "--num-gpus", "8", "--global-batch", "64"]
    plan = cli("train-plan", *args, "--json").json()
    n = len(plan["assumptions"])
    assert plan["explain"][:n] == [f"assumption: {a}" for a in plan["assumptions"]]
    best = [line for line in plan["plans"][0]["explain"] if not line.startswith("assumption:")]
    assert plan["explain"][n:] == [f"best plan: {line}" for line in best] and best
    none = cli("train-plan", "llama2-70b", "--gpu", "a100", "--num-gpus", "1", "--global-batch", "64", "--json")
    assert none.code == 2 and none.json()["explain"] == [f"assumption: {a}" for a in none.json()["assumptions"]]


def test_train_report_json_says_does_not_fit(cli) -> None:
    """report --mode train --json where no layout fits answers in JSON as latency / serve / train-plan do (fits
    false, fit "does not fit", the search's verdict), then exits 2 with the one error line. By hand: llama3-70b
    has 70.55e9 parameters; bf16-adam keeps 2 + 2 + 12 = 16 B each = 1,051 GiB, which ZeRO cannot split on 1 GPU
    against an H100's 80 GB."""
    args = ["report", "llama3-70b", "--gpu", "h100", "--num-gpus", "1", "--mode", "train"]
    r = cli(*args, "--json")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus: does not fit"), r.err
    assert len(r.err.strip().splitlines()) == 1
    d = r.json()
    assert (d["fits"], d["fit"], d["memory"], d["train_time"]) == (False, "does not fit", None, None)
    assert d["verdict"].startswith("does not fit: no layout of llama3-70b fits on 1 x h100-sxm")
    assert d["params"]["total_params"] == 70_553_706_496
    plain = cli(*args)  # the table is refused before it is drawn, with the same line
    assert plain.code == 2 and plain.out == "" and plain.err == r.err


def test_report_train_batch_pins_the_micro_batch_even_at_one(cli) -> None:
    """QA finding: report --mode train pinned the plan's micro-batch only for --batch > 1, so --batch 1 (its old
    default's value) searched it: the answer for an explicit micro-batch 1 was a micro-batch 2 plan. Given, it pins
    the micro-batch whatever its value; left out, the search picks it."""
    job = ("report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--tokens", "1T", "--num-gpus", "64", "--json")
    for b in ("1", "4"):
        r = cli(*job, "--batch", b)
        assert r.code == 0, r.err
        assert f" mb{b} " in r.json()["train_time"]["plan"] + " "


def test_an_unmet_rate_exits_2_in_report_and_compare_as_in_serve(cli) -> None:
    """QA finding: serve exits 2 when no layout on --num-gpus carries the rate; report and compare printed the same
    verdict and exited 0. One exit code per outcome: each prints its page (JSON too), then one line naming the flag."""
    job = ("--num-gpus", "8", "--prompt", "2000", "--output", "300", "--rate", "20", "--json")
    serve = cli("serve", "llama3-70b", "--gpu", "h100", *job)
    report = cli("report", "llama3-70b", "--gpu", "h100", *job)
    compare = cli("compare", "llama3-70b", "h100", "a100", *job)
    for r in (serve, report, compare):
        assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus:"), r.err
        assert r.out.strip().startswith(("{", "["))  # the answer first, on stdout
    assert report.json()["serving"]["best"] is None and serve.json()["best"] is None


@pytest.mark.parametrize("recompute", ["full", "selective"])
def test_report_train_recompute_pins_the_plan_as_train_time(cli, recompute) -> None:
    """QA finding: report --mode train refused --recompute as "a fine-tuning option" though its help says the same in
    every mode and train-time takes it. It now pins the plan's recomputation: report's plan is train-time's."""
    job = ("llama3-8b", "--gpu", "h100", "--tokens", "1T", "--num-gpus", "64", "--recompute", recompute, "--json")
    report = cli("report", *job[:1], "--mode", "train", *job[1:])
    assert report.code == 0, report.err
    plan = report.json()["train_time"]["plan"]
    assert f"rc:{recompute}" in plan
    assert plan == cli("train-time", *job).json()["plan"]
