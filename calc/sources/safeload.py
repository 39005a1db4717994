"""Reading untrusted YAML and JSON: size-capped, yaml.safe_load only, no anchors/aliases.

Users paste configs from the internet, so a file may be empty, huge, malformed, carry
``!!python/object`` tags, or be a billion-laughs alias bomb. Each becomes an LLMCalcError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from calc.errors import LLMCalcError

MAX_FILE_BYTES = 1_000_000  # a real spec or config.json is a few KB


def read_text(path: Path, field: str) -> str:
    """The file's text, or a clear error for a missing path, a folder, an empty or huge file."""
    if not path.exists():
        raise LLMCalcError(field, f"no such file: {path}")
    if path.is_dir():
        raise LLMCalcError(field, f"{path} is a directory; give a .yaml spec or a config.json file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LLMCalcError(field, f"{path} is {size} bytes; a spec file must be under {MAX_FILE_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LLMCalcError(field, f"cannot read {path}: {exc}") from None
    if not text.strip():
        raise LLMCalcError(field, f"{path} is empty")
    return text


def parse_yaml(text: str, where: str, field: str) -> dict[str, Any]:
    """Parse YAML with ``yaml.safe_load`` after refusing anchors/aliases (alias bombs)."""
    import yaml

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise LLMCalcError(field, f"{where}: YAML anchors/aliases are not allowed in spec files")
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise LLMCalcError(field, f"{where} is not valid safe YAML ({first_line})") from None
    return _require_mapping(data, where, field)


def parse_json(text: str, where: str, field: str) -> dict[str, Any]:
    """Parse JSON into a mapping, with a one-line error on any failure."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise LLMCalcError(field, f"{where} is not valid JSON ({exc})") from None
    return _require_mapping(data, where, field)


def load_mapping(path: Path, field: str) -> dict[str, Any]:
    """Read a .json or .yaml/.yml file into a dict."""
    text = read_text(path, field)
    if path.suffix.lower() == ".json":
        return parse_json(text, str(path), field)
    return parse_yaml(text, str(path), field)


def _require_mapping(data: Any, where: str, field: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise LLMCalcError(field, f"{where} must hold a mapping of fields, got {type(data).__name__}")
    return data
