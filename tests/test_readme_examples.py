"""Every `$ llmcalc ...` example in the README runs, and prints what the README shows.

The README shows excerpts: each shown line must appear in the command's real output (compared with
table borders dropped and runs of spaces collapsed, so a column width does not matter); a line that is
only ``...`` marks rows left out. A shown ``llmcalc: error:`` line must be the command's stderr and the
command must exit 2. Files an example names (``deep.yaml``, ``runs.csv``...) are made in a scratch
folder by ``FIXTURES`` below, each written the way the README describes it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import run_cli

README = Path(__file__).resolve().parents[1] / "README.md"
_BORDERS = str.maketrans({c: " " for c in "│┃┏┓┗┛┡┩┝┥━─┳┻╇╈┼┬┴├┤└┘┌┐╭╮╰╯║═"})

# Files the README's examples read, written as the README's text describes them.
FIXTURES: dict[str, str] = {
    "deep.yaml": "[" * 200_000,
    "runs.csv": (
        "model,gpu,num_gpus,batch,prompt,output,ttft_s,tpot_s\n"
        "llama2-7b,h100,1,1,2048,,0.061,\n"
        "llama2-7b,h100,1,8,512,64,,0.0081\n"
        "llama2-13b,h100,2,4,1024,,0.105,\n"
        "llama3-8b,h100,1,32,1024,128,,0.0112\n"
    ),
}


def _norm(line: str) -> str:
    return " ".join(line.translate(_BORDERS).split())


def examples() -> list[tuple[int, str, list[str]]]:
    """(README line number, command, shown lines) for every `$ llmcalc` line inside a fenced block."""
    found: list[tuple[int, str, list[str]]] = []
    in_block = False
    current: tuple[int, str, list[str]] | None = None
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if line.startswith("```"):
            if current:
                found.append(current)
                current = None
            in_block = not in_block
            continue
        if not in_block:
            continue
        if line.startswith("$ "):
            if current:
                found.append(current)
            command = line[2:].split("  #")[0].strip()
            current = (number, command, []) if command.startswith("llmcalc ") else None
        elif current is not None:
            current[2].append(line)
    return found


EXAMPLES = examples()


def test_readme_has_examples():
    assert len(EXAMPLES) >= 15


def write_fixtures(folder: Path) -> Path:
    """The files the examples read, in ``folder``: FIXTURES, and bad-gpu.yaml = the shipped H100 spec with
    memory_gb: .nan (also used by benchmarks/update_readme_examples.py)."""
    for name, text in FIXTURES.items():
        (folder / name).write_text(text)
    from calc.sources.catalog import catalog_dir

    h100 = (catalog_dir("hardware_specs") / "h100-sxm.yaml").read_text()
    (folder / "bad-gpu.yaml").write_text(re.sub(r"(?m)^memory_gb:.*$", "memory_gb: .nan", h100))
    return folder


def command_args(command: str) -> tuple[list[str], bool]:
    """The CLI arguments of a shown command line, and whether it sends stdout to /dev/null (only stderr shown)."""
    args = shlex.split(command)[1:]
    return [a for a in args if a not in (">/dev/null", "2>/dev/null")], ">/dev/null" in args


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """One folder for all examples, in README order: a file one example saves, the next one reads."""
    return write_fixtures(tmp_path_factory.mktemp("readme"))


@pytest.mark.parametrize(("line", "command", "shown"), EXAMPLES, ids=[f"README:{e[0]}" for e in EXAMPLES])
def test_readme_example(line, command, shown, scratch, monkeypatch):
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("COLUMNS", "200")
    args, quiet_stdout = command_args(command)  # quiet: the README shows only stderr
    assert "..." not in args, f"README line {line}: write the command out in full"
    result = run_cli(*args)
    if quiet_stdout:
        result.out = ""
    assert "internal error" not in result.err, result.err
    errors = [s for s in shown if s.startswith("llmcalc: error:")]
    if errors:
        assert result.code == 2, (line, result)
    else:
        assert result.code == 0, (line, result.err)
    actual = [_norm(x) for x in (result.out + "\n" + result.err).splitlines()]
    actual_text = "\n".join(actual)
    for expected in shown:
        want = _norm(expected)
        if not want or re.fullmatch(r"\.\.\.", want):
            continue
        assert want in actual_text, f"README line {line}: shown line not printed:\n  {expected}\n--- actual ---\n{actual_text}"


def test_the_aiconfigurator_table_holds_what_serve_answers() -> None:
    """The README's side-by-side table (benchmarks/aiconfigurator_side_by_side.py) keeps a column of llmcalc's own
    answers, which a refit moves: each row's GPU count and layout must be what `serve` answers today (its
    aiconfigurator column is a dated run of another tool, kept as published), and its ratio that count over
    aiconfigurator's. The pass-23 refit had moved the MoE answers from 24 / 16 to 16 / 12 GPUs unseen."""
    import sys

    sys.path.insert(0, str(README.parent / "benchmarks"))
    import aiconfigurator_side_by_side as side

    text = README.read_text()
    for q in side.QUESTIONS:
        ours, layout = side.llmcalc_gpus(q)
        prefix = f"| {q.model} {q.dtype or ''} | {q.gpu} | "
        rows = [line for line in text.splitlines() if line.startswith(prefix)]
        assert len(rows) == 1, (prefix, rows)
        cells = [c.strip() for c in rows[0].split("|")[1:-1]]
        assert cells[2:4] == [str(ours), layout], (rows[0], ours, layout)
        theirs = int(cells[4])
        assert cells[6] == f"{ours / theirs:.2f}", rows[0]
