"""The import graph of ko_hf: no cycle, counting every import (module level and inside functions)."""

import ast
from pathlib import Path

import ko_hf

ROOT = Path(ko_hf.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom, package: str) -> list[str]:
    if node.level:
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    # `from . import x` / `from .pkg import mod` may name modules, not attributes
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                edges |= {t for t in _resolve(name, node, package) if t in modules}
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
        # the package's own __init__ is not a dependency of its modules (Python runs it first anyway), and
        # ko_hf/__init__ only re-exports lazily
        graph[name] = {e for e in edges if e != name and not package.startswith(e) and e != "ko_hf"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_sees_relative_and_lazy_imports():
    graph = import_graph()
    assert "ko_hf.collision" in graph["ko_hf.optim"]  # module level, relative
    assert "ko_hf.settings" in graph["ko_hf.compare.settings"]  # from a subpackage


def test_ko_hf_has_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_every_subpackage_is_packaged():
    """pyproject lists its packages by hand: a subpackage missing there is absent from a wheel (editable installs
    hide that)."""
    import tomllib

    packages = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = {_module_name(init) for init in ROOT.rglob("__init__.py")}
    assert found <= set(packages), sorted(found - set(packages))
