"""README "How sure is this?" shows benchmarks/validate_corpus.py's output as it is today."""

from __future__ import annotations

from pathlib import Path

import validate_corpus

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_holds_the_corpus_validation_tables() -> None:
    assert validate_corpus.markdown() in README.read_text(encoding="utf-8")
