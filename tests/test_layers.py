"""The house rules, checked from the source: imports flow one way (cli -> ingest / convert / bench
-> model -> formats, storage; ml -> model), with no import circles (function-level imports
included), and at most six loose modules directly in ``radiobject/``."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "radiobject"

#: a module may import from its own layer and from layers of lower rank only
RANK = {
    "cli": 5,
    "napari": 5,
    "ingest": 4,
    "convert": 4,
    "bench": 4,
    "ml": 4,
    "model": 3,
    "formats": 2,
    "storage": 1,
    "errors": 0,
    "geometry": 0,
    "_version": 0,
    "_os": 0,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (typing-only imports never run)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name if is_pkg else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("radiobject"):
                    resolved = resolve(target)
                    if resolved and resolved != name:
                        graph[name].add(resolved)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "radiobject"


def test_no_import_circles() -> None:
    mods = _modules()
    graph = _imports(mods)
    # a package's __init__ that re-exports its submodules is not a circle with them
    pruned = {
        m: {t for t in ts if not (m.startswith(t + ".") and mods[t].name == "__init__.py")} for m, ts in graph.items()
    }
    assert _cycles(pruned) == []


def test_imports_flow_one_way() -> None:
    graph = _imports(_modules())
    upward = []
    for module, targets in graph.items():
        src = _layer(module)
        for target in targets:
            dst = _layer(target)
            if src == dst or "radiobject" in (src, dst):
                continue
            rank_src, rank_dst = RANK.get(src, -1), RANK.get(dst, 99)
            if rank_dst > rank_src or (rank_dst == rank_src and rank_src != 0):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_few_loose_modules() -> None:
    loose = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(loose) <= 6, loose


#: the house limit on a module's length (split by purpose beyond it)
MAX_MODULE_LINES = 400


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert big == {}
