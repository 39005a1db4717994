"""The CLI shell (issue 20): a bug exits 1 as an "internal error", a user error exits 2; a repeated
single-valued option is refused; a suffixed number is echoed as read; `--help` is grouped; `-h` and
`--debug` work anywhere."""

from __future__ import annotations

import pytest
from conftest import run_cli


def _broken_count(*args, **kwargs):
    raise ZeroDivisionError("a bug")


def test_internal_error_exits_1_with_one_report_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import calc.model.params

    monkeypatch.setattr(calc.model.params, "count_params", _broken_count)
    r = run_cli("params", "llama2-7b", internal_ok=True)
    assert r.code == 1
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("llmcalc: internal error: ZeroDivisionError: a bug — please report this at ")
    assert "(rerun with --debug for the traceback)" in lines[0] and "Traceback" not in r.err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    import calc.model.params

    monkeypatch.setattr(calc.model.params, "count_params", _broken_count)
    args = ["--debug", "params", "llama2-7b"] if where == "before" else ["params", "llama2-7b", "--debug"]
    with pytest.raises(ZeroDivisionError):
        run_cli(*args, internal_ok=True)


def test_a_value_error_from_the_engine_is_a_bug_not_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """ValueError / OverflowError used to print as `llmcalc: error:` with exit 2, hiding bugs."""
    import calc.model.params

    def overflow(*args, **kwargs):
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr(calc.model.params, "count_params", overflow)
    r = run_cli("params", "llama2-7b", internal_ok=True)
    assert r.code == 1 and "internal error: OverflowError" in r.err


def test_the_test_helper_fails_a_test_that_meets_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import calc.model.params

    monkeypatch.setattr(calc.model.params, "count_params", _broken_count)
    with pytest.raises(pytest.fail.Exception, match="internal error"):
        run_cli("params", "llama2-7b")


def test_user_errors_stay_exit_2() -> None:
    r = run_cli("params", "no-such-model")
    assert r.code == 2 and r.err.startswith("llmcalc: error: ")
    r = run_cli("memory", "llama2-7b", "--no-such-flag")  # a click usage error
    assert r.code == 2 and r.err.startswith("llmcalc: error: ") and len(r.err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, flag", [
    (["memory", "llama2-7b", "--batch", "2", "--batch", "3"], "--batch"),
    (["memory", "llama2-7b", "-b", "2", "--batch", "3"], "--batch"),
    (["latency", "llama2-7b", "--gpu", "h100", "--gpu", "a100", "--prompt", "100"], "--gpu"),
    (["train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T", "--mfu", "0.4",
      "--price-per-gpu-hour", "2", "--price-per-gpu-hour", "3"], "--price-per-gpu-hour"),
    (["params", "llama2-7b", "--json", "--json"], "--json"),
    (["memory", "llama2-7b", "--mode", "train", "--attention", "flash", "--attention", "unfused"], "--attention"),
])
def test_a_repeated_single_valued_option_is_refused(args: list[str], flag: str) -> None:
    r = run_cli(*args)
    assert r.code == 2, r.err
    assert r.err.startswith(f"llmcalc: error: {flag}") and "more than once" in r.err


def test_price_given_twice_for_the_same_gpu_is_refused() -> None:
    r = run_cli("compare", "llama2-7b", "h100", "a100", "--price", "2", "--price", "3")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --price") and "twice" in r.err
    ok = run_cli("compare", "llama2-7b", "h100", "a100", "--price", "h100=2", "--price", "a100=1.5")
    assert ok.code == 0, ok.err


def test_a_suffixed_number_is_echoed_once_as_read() -> None:
    r = run_cli("memory", "llama2-7b", "--mode", "train", "--num-gpus", "16K", "--seq", "2048")
    assert r.code == 0, r.err
    assert r.err.splitlines() == ["llmcalc: note: --num-gpus 16K read as 16,000"]
    r = run_cli("train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1.5T", "--mfu", "0.4")
    assert "llmcalc: note: --tokens 1.5T read as 1,500,000,000,000" in r.err.splitlines()


def test_a_plain_number_is_not_echoed() -> None:
    r = run_cli("memory", "llama2-7b", "--mode", "train", "--num-gpus", "16", "--seq", "2e3")
    assert r.code == 0 and "note" not in r.err


def test_help_groups_the_commands_with_whole_descriptions() -> None:
    r = run_cli("--help")
    assert r.code == 0
    for panel in ("Catalogs:", "Models:", "Memory:", "Training:", "Serving:", "Measurement & calibration:"):
        assert panel in r.out.splitlines(), panel
    listing = r.out.split("Catalogs:")[1]
    assert "..." not in listing and max(map(len, listing.splitlines())) <= 80
    commands = [line.split()[0] for line in listing.splitlines() if line.startswith("  ")]
    assert len(commands) == 20 and len(set(commands)) == 20


def test_root_help_before_a_command_still_lists_every_command() -> None:
    # a run builds only the command it names (calc.cli.app); a root option before the name is the root's
    assert run_cli("--help", "params").out == run_cli("-h", "serve").out == run_cli("--help").out


def test_short_h_is_help_everywhere() -> None:
    assert run_cli("-h").out == run_cli("--help").out
    r = run_cli("latency", "-h")
    assert r.code == 0 and r.out == run_cli("latency", "--help").out and "--ttft-ms" in r.out


def test_memory_help_groups_options_by_mode() -> None:
    out = run_cli("memory", "--help").out
    sections = [line for line in out.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert sections == ["Arguments:", "Workload:", "Placement:", "Inference (--mode infer):",
                        "Training and fine-tuning (--mode train, finetune):", "Training (--mode train):",
                        "Fine-tuning (--mode finetune):", "Output:"]
    finetune = out.split("Fine-tuning (--mode finetune):")[1].split("Output:")[0]
    assert "--lora-rank" in finetune and "--kv-dtype" not in finetune and "--zero" not in finetune


# --- output: widths, plain lines, numbers (issue 20 items 5-7) -----------------------------------

def test_human_number_formats() -> None:
    from calc.units import abbrev, count, human, percent, plural

    assert abbrev(1.5e13, "tokens") == "15T tokens" and abbrev(2.5e6) == "2.5M" and abbrev(812) == "812"
    assert abbrev(4.9e27) == "4.9 x 10^27" and percent(4.876e25) == "4.9 x 10^27%"
    assert count(16_000.0) == "16,000" and count(1234.5) == "1,234.5" and "e" not in count(1e30)
    assert percent(0.4321) == "43.2%" and percent(4.3e10) == "4.3T%" and "e" not in percent(1e-26)
    assert human(1.2e21, "FLOPs") == "1,200 EFLOPs" and human(2.9e13, "FLOPs") == "29 TFLOPs"
    assert plural(1, "request") == "1 request" and plural(2, "replica") == "2 replicas"


@pytest.mark.parametrize("args", [["models"], ["systems"], ["gpus"], ["show", "llama4-scout"], ["show", "h100"]])
def test_catalog_views_fit_100_columns_without_splitting_words(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    from calc.report import render

    monkeypatch.setattr(render.console, "_width", 100)
    r = run_cli(*args)
    assert r.code == 0, r.err
    table = [line for line in r.out.splitlines() if line[:1] in "┏┃┡│└┌├"]
    assert max(map(len, table)) <= 100, max(map(len, table))
    assert "…" not in r.out
    if args == ["models"]:
        for m in run_cli("models", "--json").json()["models"]:
            assert m["name"] in r.out and f"{m['total_params']:,}" in r.out


def test_explain_and_emit_lines_are_never_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    from calc.report import render

    monkeypatch.setattr(render.console, "_width", 40)
    args = ["serve", "llama2-7b", "--gpu", "h100", "--prompt", "1000", "--output", "200", "--rate", "3"]
    plan = run_cli(*args, "--json").json()
    r = run_cli(*args, "--emit", "vllm", "--explain")
    lines = r.out.splitlines()
    for line in plan["explain"]:
        assert f"  {line}" in lines, line
    launch = run_cli(*args, "--emit", "vllm", "--json").json()["launch"]
    assert launch in lines


def test_piped_output_is_not_folded_at_80_columns() -> None:
    r = run_cli("latency", "llama2-7b", "--gpu", "h100", "--prompt", "1000", "--explain")
    explain = run_cli("latency", "llama2-7b", "--gpu", "h100", "--prompt", "1000", "--json").json()["explain"]
    assert all(f"  {line}" in r.out.splitlines() for line in explain)
    assert any(len(line) > 80 for line in r.out.splitlines())


def test_plurals_in_the_serving_verdict() -> None:
    r = run_cli("serve", "llama2-7b", "--gpu", "h100", "--prompt", "1000", "--output", "200", "--rate", "3", "--json")
    verdict = r.json()["verdict"]
    assert "(s)" not in verdict and ("1 replica x" in verdict or "replicas x" in verdict)
    assert not any(" 1 replicas" in line or " 1 GPUs" in line for line in r.json()["explain"])


def test_report_html_memory_chart_has_a_legend() -> None:
    html = run_cli("report", "llama2-7b", "--gpu", "h100", "--format", "html").out
    chart = html[html.index('aria-label="Memory vs concurrent requests"'):]
    chart = chart[:chart.index("</svg>")]
    for label in ("weights", "KV cache", "activations + reserve", "capacity"):
        assert f">{label}</text>" in chart, label


def test_mfu_and_train_time_print_no_exponents() -> None:
    r = run_cli("train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "2T", "--mfu", "0.71")
    assert r.code == 0, r.err
    table = r.out.split("How it was computed")[0]
    assert "e+" not in table and "2T tokens" in table
    r = run_cli("mfu", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--tokens-per-s", "30000")
    assert "e+" not in r.out


def test_every_benchmark_the_readme_names_exists() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    named = set(re.findall(r"python -m benchmarks\.(\w+)", (root / "README.md").read_text()))
    assert "validate_checkpoints" in named
    assert all((root / "benchmarks" / f"{name}.py").is_file() for name in named), named
