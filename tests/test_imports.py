"""The public surface: declared once, imported cheaply."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import portkit


def test_import_portkit_stays_light() -> None:
    heavy = ("click", "rich", "yaml", "asyncio", "textual", "prometheus_client", "dataclasses")
    code = (
        "import sys, portkit; portkit.Endpoint; portkit.lookup; portkit.classify(22); "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert portkit.__all__ == sorted(portkit.__all__)
    assert set(portkit.__all__) == {*portkit._EXPORTS, "__version__"}
    for name in portkit.__all__:
        assert getattr(portkit, name) is not None, name
    assert dir(portkit) == portkit.__all__


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        portkit.no_such_thing  # noqa: B018


# --- the shape of the package -----------------------------------------------------------

SRC = Path(__file__).resolve().parent.parent / "src"


def _module_names() -> dict[str, Path]:
    out = {}
    for path in (SRC / "portkit").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every portkit module ``name`` imports: at the top, inside functions and under
    TYPE_CHECKING alike (an import that only type checkers follow is still a cycle to
    a reader). ``from pkg import mod`` counts as an import of ``pkg.mod``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def test_no_import_cycle_in_src() -> None:
    modules = _module_names()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
