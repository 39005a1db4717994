"""Sliding windows as the engine runs them: TensorRT-LLM's engine flow (releases before 1.0) attends and caches the
whole context of a sliding-window layer (calc.serving.assumptions.engine_attention_windows, calc.serving.windows)."""

import json

from conftest import run_cli
from typer.testing import CliRunner

from calc.cli.app import app
from calc.memory.kv import kv_cache_bytes_for_tokens
from calc.serving.assumptions import engine_attention_windows
from calc.serving.windows import model_as_run
from calc.sources.catalog import load_model

runner = CliRunner()
# Mistral 7B v0.1 (config.json): 32 layers, 8 KV heads of 128, sliding_window 4096 on every layer.
PER_TOKEN_BF16 = 2 * 32 * 8 * 128 * 2  # K and V, every layer, 2 bytes = 131,072 bytes a token


def test_engine_flow_runs_windows_as_full_attention():
    assert engine_attention_windows("trtllm", (0, 17, 0)) == "full"
    assert engine_attention_windows("trtllm", (0, 11)) == "full"
    for engine, version in (("trtllm", (1, 0)), ("trtllm", (1, 2)), ("vllm", (0, 6, 3)), ("vllm", None), ("sglang", None)):
        assert engine_attention_windows(engine, version) == "applied"


def test_kv_of_a_long_request_is_the_window_or_the_whole_context():
    m = load_model("mistral-7b")
    assert kv_cache_bytes_for_tokens(m, 22_000) == PER_TOKEN_BF16 * 4096  # the window, when applied
    assert kv_cache_bytes_for_tokens(model_as_run(m, "full"), 22_000) == PER_TOKEN_BF16 * 22_000
    assert model_as_run(m, "full") is model_as_run(m, "full")  # one copy per spec (its caches are kept)
    llama = load_model("llama3-8b")  # no sliding layer: the spec itself
    assert model_as_run(llama, "full") is llama


def _run(*args: str) -> dict:
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_cli_prices_the_engine_flow_with_full_attention():
    common = ["mistral-7b", "--gpu", "l40s", "--engine", "trtllm", "--prompt", "20000", "--output", "2000", "--batch", "4"]
    old = _run("latency", *common, "--engine-version", "0.15")
    new = _run("latency", *common, "--engine-version", "1.0")
    # every decode step of the old flow reads 20,000+ keys a layer instead of at most 4,096: slower
    assert old["tpot_s"] > 1.3 * new["tpot_s"]
    conc = ["mistral-7b", "--gpu", "l40s", "--engine", "trtllm", "--max-model-len", "22000"]
    c_old = _run("concurrency", *conc, "--engine-version", "0.15")
    c_new = _run("concurrency", *conc, "--engine-version", "1.0")
    # a 22,000-token request caches 22,000 tokens instead of 4,096 (whole blocks): about 5x fewer fit
    assert 4.0 < c_new["max_concurrency"] / c_old["max_concurrency"] < 6.0
    r = runner.invoke(app, ["latency", *common, "--engine-version", "0.15", "--explain"], terminal_width=200)
    assert "attend and cache the whole context" in r.output


def test_attention_windows_flag_overrides_the_engine_and_is_refused_where_it_changes_nothing():
    conc = ["concurrency", "mistral-7b", "--gpu", "l40s", "--engine", "trtllm", "--engine-version", "0.15",
            "--max-model-len", "22000"]
    full = _run(*conc)["max_concurrency"]
    applied = _run(*conc, "--attention-windows", "applied")["max_concurrency"]
    # one engine, one release: only the cached tokens per request differ, 22,000 against 4,096 (32-token blocks)
    assert 4.5 < applied / full < 6.0
    r = runner.invoke(app, ["latency", "mistral-7b", "--gpu", "h100", "--attention-windows", "full", "--explain"],
                      terminal_width=200)
    assert r.exit_code == 0 and "attend and cache the whole context" in r.output
    for args in (["latency", "llama3-8b", "--gpu", "h100", "--attention-windows", "full"],
                 ["serve", "llama3-8b", "--gpu", "h100", "--attention-windows", "applied"],
                 ["report", "mistral-7b", "--gpu", "h100", "--mode", "train", "--attention-windows", "full"]):
        r = run_cli(*args)
        assert r.code == 2 and "--attention-windows" in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_engine_entry_points_apply_the_assumption_without_the_cli():
    """A Python caller who sets ServingAssumptions.attention_windows and calls the engine directly (no CLI, no
    model_as_run of its own) gets the windows the engine applies: worked out from the config alone."""
    from calc.serving.assumptions import ServingAssumptions
    from calc.serving.capacity import concurrency
    from calc.serving.latency import latency
    from calc.sources.catalog import load_gpu

    m, g = load_model("mistral-7b"), load_gpu("h100")
    full, applied = ServingAssumptions(attention_windows="full"), ServingAssumptions(attention_windows="applied")
    tokens = 22_016  # a whole number of 16-token blocks, so the request's KV is exact
    c_full = concurrency(m, g, max_tokens=tokens, assumptions=full)
    c_applied = concurrency(m, g, max_tokens=tokens, assumptions=applied)
    # the engine's slots are tokens - 1 (the last token's K/V is never written), in whole 16-token blocks: 22,016
    assert c_full.kv_cache_bytes_per_request == PER_TOKEN_BF16 * 22_016
    assert c_applied.kv_cache_bytes_per_request < PER_TOKEN_BF16 * (4096 + 2 * 16)  # the window, plus a block or two
    l_full = latency(m, g, batch=8, prompt=20_000, output=64, assumptions=full)
    l_applied = latency(m, g, batch=8, prompt=20_000, output=64, assumptions=applied)
    # decode at 20,032 keys a layer against 4,096: more than 4x the attention reads, the weights' read unchanged
    assert l_full.tpot_s > 1.3 * l_applied.tpot_s and l_full.ttft_s > l_applied.ttft_s
