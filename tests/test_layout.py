"""The package layout keeps its arrows pointing down (STYLE.md): a folder imports only folders below
it, and no module imports itself back through a cycle. Checked on the source text, so it also covers
imports made inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import calc

ROOT = Path(calc.__file__).parent
# Higher rank may import lower (or equal within its own folder), never higher.
RANK = {"cli": 8, "report": 7, "training": 6, "serving": 6, "memory": 5, "hardware": 4, "model": 3,
        "sources": 2, "specs": 1, "units": 0, "memo": 0, "fitted": 0, "bands": 0, "errors": 0, "sanity": 0, "": 9}


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("calc"):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("calc")}
        graph[name] = targets
    return graph


def test_every_folder_is_ranked() -> None:
    folders = {_folder(m) for m in _imports()}
    assert folders <= RANK.keys(), folders - RANK.keys()


def test_arrows_point_down() -> None:
    bad = []
    for module, targets in _imports().items():
        for target in targets:
            a, b = _folder(module), _folder(target)
            if target == "calc" or a == b or a == "":  # the package root only holds __version__ and lazy exports
                continue
            if RANK[b] > RANK[a] or (RANK[b] == RANK[a] and RANK[a] > 0):
                bad.append(f"{module} -> {target}")
    assert not bad, bad


def test_no_import_cycles() -> None:
    graph = _imports()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*stack, node, nxt]))
            if not state.get(nxt):
                visit(nxt, [*stack, node])
        state[node] = 2

    for node in graph:
        if not state.get(node):
            visit(node, [])


def test_every_public_name_resolves() -> None:
    # calc's lazy exports name a module per public name; a function moved to another module must move its
    # entry too (`from calc import concurrency` failed once its home moved to calc.serving.capacity).
    for name in calc.__all__:
        assert getattr(calc, name) is not None, name
