"""Reading untrusted YAML and JSON: regular files only, size-capped, depth-capped, no tags or aliases.

Users paste configs from the internet, so a file may be empty, huge, malformed, carry
``!!python/object`` tags, be a billion-laughs alias bomb, be nested thousands of levels deep,
or not be a file at all (``/dev/zero``, a FIFO, a directory). Each becomes an LLMCalcError,
fast: the file is stat-ed before it is opened (a FIFO is opened non-blocking and refused), at
most ``MAX_FILE_BYTES + 1`` bytes are read whatever ``st_size`` says, and YAML is checked on
libyaml's event stream (linear in the input) before anything is constructed.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from calc.errors import LLMCalcError

MAX_FILE_BYTES = 1_000_000  # a real spec or config.json is a few KB
MAX_DEPTH = 32  # a real spec nests 2-3 levels (moe:, mla:, rope_scaling:)
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_VALUES = 20_000  # a spec holds a few dozen values, a config.json a few hundred
MAX_NUMBER_CHARS = 100  # 1e300 is 6 characters; no real field needs 100 digits
_NUMBER = re.compile(r"^[-+]?[0-9_.,eE+-]+$")


def read_text(path: Path, field: str) -> str:
    """The file's text, or a one-line error for a missing path, a non-regular file, an empty or huge file.

    Only regular files are read: ``/dev/zero``, ``/dev/urandom``, FIFOs, sockets and folders are
    refused by ``stat`` before any read, and the open is non-blocking so a FIFO can never hang.
    """
    if len(str(path)) > MAX_PATH_CHARS:
        raise LLMCalcError(field, f"path is {len(str(path))} characters long; the limit is {MAX_PATH_CHARS}")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise LLMCalcError(field, f"no such file: {path}") from None
    except (OSError, ValueError) as exc:
        raise LLMCalcError(field, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    _require_regular(info.st_mode, path, field)
    data = _read_capped(path, field)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LLMCalcError(field, f"{path} is not UTF-8 text; give a .yaml spec or a config.json file") from None
    if not text.strip():
        raise LLMCalcError(field, f"{path} is empty")
    return text


def _require_regular(mode: int, path: Path, field: str) -> None:
    if stat.S_ISDIR(mode):
        raise LLMCalcError(field, f"{path} is a directory; give a .yaml spec or a config.json file")
    if not stat.S_ISREG(mode):
        raise LLMCalcError(field, f"{path} is not a regular file (a device, FIFO or socket); give a .yaml or .json file")


def _read_capped(path: Path, field: str) -> bytes:
    """At most MAX_FILE_BYTES + 1 bytes, so a file that grows (or lies in st_size) is still refused."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise LLMCalcError(field, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        _require_regular(os.fstat(fd).st_mode, path, field)  # swapped between stat and open
        chunks: list[bytes] = []
        left = MAX_FILE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise LLMCalcError(field, f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_FILE_BYTES:
        raise LLMCalcError(field, f"{path} is over {MAX_FILE_BYTES} bytes; a spec file is a few KB")
    return data


def _loader() -> type:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str, where: str, field: str) -> dict[str, Any]:
    """Parse YAML safely: libyaml's C safe loader where present, and on its event stream refuse
    anchors, aliases, explicit tags and nesting deeper than MAX_DEPTH before constructing anything."""
    import yaml

    loader_cls = _loader()
    if _flow_depth(text) > MAX_DEPTH:  # ours, before libyaml (whose own limit and wording vary by version)
        raise LLMCalcError(field, f"{where}: nested more than {MAX_DEPTH} levels deep; a spec is a flat mapping")
    try:
        _check_events(yaml.parse(text, Loader=loader_cls), where, field)
        data = yaml.load(text, Loader=loader_cls)  # noqa: S506 - a SafeLoader (C or Python)
    except yaml.YAMLError as exc:
        first_line = (str(exc).strip().splitlines() or ["syntax error"])[0]
        raise LLMCalcError(field, f"{where} is not valid safe YAML ({first_line})") from None
    except LLMCalcError:
        raise
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. an integer of 5000 digits
        raise LLMCalcError(field, f"{where}: unreadable value ({_short(exc)})") from None
    return _require_mapping(data, where, field)


def _flow_depth(text: str) -> int:
    """Deepest nesting of YAML flow collections (``[`` / ``{``) outside quoted scalars and comments.

    A linear pre-scan, so the depth limit is enforced by this module whatever PyYAML/libyaml version
    resolved (libyaml 0.2.5+ stops deep flow nesting itself, with its own message). A quote opens a
    quoted scalar only where YAML allows one to start (after a space, ``[``, ``{``, ``,`` or ``:``),
    so an apostrophe inside a plain scalar (``Meta's``) does not hide the brackets after it."""
    depth = deepest = 0
    quote = ""
    prev = "\n"
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == quote:
                if quote == "'" and i + 1 < n and text[i + 1] == "'":
                    i += 1  # '' is an escaped quote inside a single-quoted scalar
                else:
                    quote = ""
            elif ch == "\\" and quote == '"':
                i += 1
        elif ch in "'\"" and prev in " \t\n[{,:":
            quote = ch
        elif ch == "#" and prev in " \t\n":
            end = text.find("\n", i)
            i = n if end < 0 else end
            prev = "\n"
            continue
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
        prev = ch
        i += 1
    return deepest


def _check_events(events: Any, where: str, field: str) -> None:
    """One pass over the parser's events: no anchors, aliases or tags; depth <= MAX_DEPTH; no number
    too long to be a real value (named by its key, before Python's int() refuses it obscurely)."""
    import yaml

    # One frame per open collection: [is_mapping, next scalar is a key, the current key, keys seen].
    frames: list[list[Any]] = []
    for count, event in enumerate(events):
        if count > MAX_VALUES:
            raise LLMCalcError(field, f"{where}: more than {MAX_VALUES} values; a spec holds a few dozen")
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise LLMCalcError(field, f"{where}: YAML anchors/aliases are not allowed in spec files")
        if getattr(event, "tag", None):
            raise LLMCalcError(field, f"{where} is not valid safe YAML (tag {event.tag} is not allowed in spec files)")
        if isinstance(event, yaml.CollectionStartEvent):
            key = frames[-1][2] if frames else None
            frames.append([isinstance(event, yaml.MappingStartEvent), True, key, set()])
            if len(frames) > MAX_DEPTH:
                raise LLMCalcError(field, f"{where}: nested more than {MAX_DEPTH} levels deep; a spec is a flat mapping")
        elif isinstance(event, yaml.CollectionEndEvent):
            frames.pop()
            if frames and frames[-1][0]:
                frames[-1][1] = True
        elif isinstance(event, yaml.ScalarEvent) and frames:
            top = frames[-1]
            if top[0] and top[1]:
                if event.value in top[3]:
                    raise LLMCalcError(field, f"{where}: field '{event.value[:80]}' appears twice; keep one")
                top[3].add(event.value)
                top[2], top[1] = event.value[:80], False
                continue
            top[1] = True
            if len(event.value) > MAX_NUMBER_CHARS and _NUMBER.match(event.value):
                raise LLMCalcError(field, f"{where}: field '{top[2]}': a number of {len(event.value)} digits is "
                                          "beyond any real model or device")


def parse_json(text: str, where: str, field: str) -> dict[str, Any]:
    """Parse JSON into a mapping, with a one-line error on any failure.

    NaN / Infinity literals are read as floats, as Python's json and transformers write them (Mamba-2's
    ``time_step_limit: [0.0, Infinity]``): a value no reader uses must not refuse the file, and every field
    that is read refuses a non-finite number itself (HFConfig.int, the spec bounds), naming the field."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise LLMCalcError(field, f"{where}: nested more than {MAX_DEPTH} levels deep; a config.json is a flat mapping") from None
    except json.JSONDecodeError as exc:
        raise LLMCalcError(field, f"{where} is not valid JSON ({_short(exc)})") from None
    except ValueError as exc:  # a key twice, or an integer over Python's digit limit
        raise LLMCalcError(field, f"{where}: unreadable value ({_short(exc)})") from None
    depth, count = _depth(data)
    if count > MAX_VALUES:
        raise LLMCalcError(field, f"{where}: more than {MAX_VALUES} values; a config.json holds a few hundred")
    if depth > MAX_DEPTH:
        raise LLMCalcError(field, f"{where}: nested more than {MAX_DEPTH} levels deep; a config.json is a flat mapping")
    return _require_mapping(data, where, field)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"field '{twice[:80]}' appears twice; keep one")
    return data


def _depth(data: Any) -> tuple[int, int]:
    """Deepest nesting of lists/dicts and the number of values, walked iteratively (no recursion on
    hostile input), stopping once either limit is passed."""
    deepest, count, stack = 0, 0, [(data, 1)]
    while stack and count <= MAX_VALUES:
        node, level = stack.pop()
        count += 1
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            count += len(children)
            if level <= MAX_DEPTH and count <= MAX_VALUES:
                stack.extend((child, level + 1) for child in children)
    return deepest, count


def load_mapping(path: Path, field: str) -> dict[str, Any]:
    """Read a .json or .yaml/.yml file into a dict."""
    text = read_text(path, field)
    if path.suffix.lower() == ".json":
        return parse_json(text, str(path), field)
    return parse_yaml(text, str(path), field)


def _short(exc: BaseException, limit: int = 160) -> str:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line if len(line) <= limit else line[:limit] + "..."


def _require_mapping(data: Any, where: str, field: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise LLMCalcError(field, f"{where} must hold a mapping of fields, got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise LLMCalcError(field, f"{where}: field names must be text, got {bad[0]!r}")
    return data


# Output files each flag writes, by suffix; checked before any work is done.
OUTPUT_SUFFIXES = {"--plot": (".png", ".svg"), "--save": (".yaml", ".yml")}


def check_output_path(path: str, flag: str, suffixes: tuple[str, ...] | None = None) -> Path:
    """Refuse an output path that cannot be written, before the command does its work: empty, a
    directory, a device/FIFO, a missing or unwritable parent folder, an unwritable file, a wrong suffix."""
    if not path or not path.strip():
        raise LLMCalcError(flag, "give a file name to write")
    if len(path) > MAX_PATH_CHARS or "\0" in path:
        raise LLMCalcError(flag, "not a usable file name (too long or contains a NUL byte)")
    target = Path(path)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise LLMCalcError(flag, f"cannot write {path}: {exc.strerror or exc}") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise LLMCalcError(flag, f"{path} is a directory; give a file name inside it")
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise LLMCalcError(flag, f"{path} is not a regular file (a device, FIFO or socket)")
    suffixes = suffixes or OUTPUT_SUFFIXES.get(flag)
    if suffixes and target.suffix.lower() not in suffixes:
        raise LLMCalcError(flag, f"write a {' or '.join(suffixes)} file, got {path!r}")
    if info is None and not target.parent.is_dir():
        raise LLMCalcError(flag, f"folder {target.parent} does not exist; create it first")
    _try_open_for_writing(target, created=info is None, flag=flag)
    return target


def _try_open_for_writing(target: Path, created: bool, flag: str) -> None:
    """Open for append (never truncating) and close; remove the file again if this created it.
    Permission bits alone do not tell (root, read-only mounts, /proc)."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0), 0o644)
        os.close(fd)
        if created:
            os.unlink(target)
    except OSError as exc:
        raise LLMCalcError(flag, f"cannot write {target}: {exc.strerror or exc}") from None
