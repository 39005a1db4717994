"""Refresh the `$ llmcalc ...` examples in README.md from what the commands print today.

    python benchmarks/update_readme_examples.py          # show what would change
    python benchmarks/update_readme_examples.py --write  # rewrite README.md

tests/test_readme_examples.py checks that every shown line is printed; this script is how a change of output
reaches the README: each shown line that is no longer printed is replaced by the printed line closest to it
(difflib ratio >= 0.5, on lines with table borders dropped), rendered at the test's 200 columns. A shown line with no
close match is reported, not guessed: the README text around it needs a human.
"""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ["COLUMNS"] = "200"  # the width tests/test_readme_examples.py compares at

from conftest import run_cli  # noqa: E402
from test_readme_examples import README, _norm, command_args, examples, write_fixtures  # noqa: E402


def refreshed() -> tuple[list[str], list[str]]:
    """(README lines with stale shown lines replaced, notes on lines that need a human)."""
    lines = README.read_text().splitlines()
    notes: list[str] = []
    os.chdir(write_fixtures(Path(tempfile.mkdtemp(prefix="readme-"))))
    for number, command, shown in examples():
        args, quiet = command_args(command)
        if "..." in args:
            notes.append(f"README:{number}: command elided with '...'")
            continue
        r = run_cli(*args)
        printed = ([] if quiet else r.out.splitlines()) + r.err.splitlines()
        text = "\n".join(_norm(p) for p in printed)
        used = {_norm(w) for w in shown if _norm(w) and _norm(w) in text}
        for offset, want in enumerate(shown, start=1):
            if not _norm(want) or _norm(want) == "..." or _norm(want) in text:
                continue
            free = [_norm(p) for p in printed if _norm(p) and _norm(p) not in used]
            best = difflib.get_close_matches(_norm(want), free, n=1, cutoff=0.5)
            if not best:
                notes.append(f"README:{number + offset}: no printed line like: {want.strip()[:100]}")
                continue
            used.add(best[0])
            lines[number - 1 + offset] = next(p for p in printed if _norm(p) == best[0]).rstrip()
    return lines, notes


if __name__ == "__main__":
    new, notes = refreshed()
    old = README.read_text().splitlines()
    sys.stdout.writelines(difflib.unified_diff([x + "\n" for x in old], [x + "\n" for x in new], "README.md", "README.md"))
    for note in notes:
        print(note, file=sys.stderr)
    if "--write" in sys.argv:
        README.write_text("\n".join(new) + "\n")
