"""The README's "Using the engine from Python" block runs, and every figure its comments promise is what the line
returns (QA finding: the block said 9 concurrent requests where the engine, its CLI and the console example say 8)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_block_returns_what_its_comments_say() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Using the engine from Python")
    block = text[text.index("```python", start) + len("```python"):]
    block = block[:block.index("```")]
    scope: dict = {}
    checked = 0
    for line in block.strip().splitlines():
        code, _, comment = line.partition("  #")
        promised = re.match(r"\s*([0-9][0-9.]*)", comment) if comment else None
        if promised is None:
            exec(code, scope)  # noqa: S102  (an import or an assignment of the README's own example)
            continue
        value = eval(code, scope)  # noqa: S307
        assert float(value) == float(promised.group(1)), (code, value, promised.group(1))
        checked += 1
    assert checked >= 4
