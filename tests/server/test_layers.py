"""The server's layers import only downward, and ``wschat/server`` has no import cycle.

Every module is parsed with ``ast`` (nothing is imported); imports inside functions and
under ``if TYPE_CHECKING:`` count like any other, since a cycle through type hints is still a
cycle in the design. Layers, bottom to top: transport → conn → chat → guard, handlers,
routing → app (see ``wschat/server/__init__.py``; issue 13).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import wschat.server

SERVER = Path(wschat.server.__file__).parent
PREFIX = "wschat.server"


def module_name(path: Path) -> str:
    parts = path.relative_to(SERVER.parent.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported(path: Path, known: set[str]) -> set[str]:
    """Return every module ``path`` imports (resolved to a known module where one matches)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(SERVER.rglob("*.py"))
    known = {module_name(p) for p in paths}
    return {module_name(p): imported(p, known) for p in paths}


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in edges:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_type_checking_imports() -> None:
    reader = graph()["wschat.server.conn.reader"]
    assert "wschat.server.conn.hub" in reader
    assert "wschat.server.transport.asgi" in reader


def test_no_import_cycle_inside_wschat_server() -> None:
    assert cycles(graph()) == []


def _layer(module: str) -> str:
    rest = module.removeprefix(PREFIX + ".")
    return rest.split(".")[0]


def _from_server(imports: Iterable[str]) -> set[str]:
    return {m for m in imports if m == PREFIX or m.startswith(PREFIX + ".")}


FRAMEWORKS = ("starlette", "fastapi", "uvicorn", "websockets")
UPPER = ("handlers", "app", "page", "routing", "guard", "runner", "workers", "metrics")


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("conn", ("chat", *UPPER)),
        ("chat", UPPER),
        ("guard", ("conn", "chat", "handlers", "app", "routing")),
    ],
)
def test_layers_import_only_downward(layer: str, forbidden: tuple[str, ...]) -> None:
    bad = {
        (module, target)
        for module, imports in graph().items()
        if _layer(module) == layer
        for target in _from_server(imports)
        if _layer(target) in forbidden
    }
    assert bad == set()


TRANSPORT = ("transport",)


def test_the_transport_imports_nothing_of_the_server_outside_it() -> None:
    bad = {
        (module, target)
        for module, imports in graph().items()
        if _layer(module) in TRANSPORT
        for target in _from_server(imports)
        if _layer(target) not in TRANSPORT
    }
    assert bad == set()


def test_the_chat_layer_knows_no_socket_type() -> None:
    bad = {
        (module, target)
        for module, imports in graph().items()
        if _layer(module) == "chat"
        for target in imports
        if target.split(".")[0] in FRAMEWORKS
    }
    assert bad == set()
