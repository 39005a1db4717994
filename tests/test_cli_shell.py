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
    (["memory", "llama2-7b", "--mode", "train", "--flash", "--no-flash"], "--flash"),
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
