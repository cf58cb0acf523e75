"""The code's shape, checked (issue: every service reads as its own): no function longer than
80 lines outside the sandboxes and tests; no import cycle; services never import each other,
libraries never import services, the sandboxes stand apart; every domain module is pure (no
I/O library). Read from the source with `ast`: nothing is imported or run."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 80
# What a pure domain module may not import: the network, the database, the broker, the web.
IO_LIBRARIES = {"httpx", "pymongo", "motor", "aiokafka", "faststream", "starlette", "fastapi"}


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. invoice_builder.api.approvals
    path: Path
    area: str  # services | libs | sandboxes
    owner: str  # the service, library or sandbox folder it belongs to


def _source_roots() -> Iterator[tuple[str, str, Path]]:
    for area in ("services", "libs", "sandboxes"):
        for src in sorted((ROOT / area).glob("*/src")):
            yield area, src.parent.name, src


def modules() -> dict[str, Module]:
    found = {}
    for area, owner, src in _source_roots():
        for path in sorted(src.rglob("*.py")):
            parts = list(path.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(parts)
            found[name] = Module(name, path, area, owner)
    return found


MODULES = modules()


def _tree(module: Module) -> ast.Module:
    return ast.parse(module.path.read_text(), filename=str(module.path))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(module: Module) -> Iterator[str]:
    """The modules `module` imports when it is imported: module-level statements only (an
    import inside a function, or under `if TYPE_CHECKING:`, runs later or never)."""
    package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]

    def walk(body: list[ast.stmt]) -> Iterator[str]:
        for node in body:
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    yield sub if sub in MODULES else base
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                yield from walk(node.body)

    yield from walk(_tree(module).body)


def _edges() -> dict[str, set[str]]:
    """Project-internal import edges. A module importing its own package (or a parent) goes
    through the package's `__init__`, which only gathers names: that is not a dependency."""
    edges: dict[str, set[str]] = {}
    for name, module in MODULES.items():
        wanted = set()
        for imported in _top_level_imports(module):
            target = imported
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if not target or target == name or name.startswith(target + "."):
                continue
            wanted.add(target)
        edges[name] = wanted
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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


def test_there_are_modules_to_check() -> None:
    areas = {m.area for m in MODULES.values()}
    assert areas == {"services", "libs", "sandboxes"}
    assert "invoice_builder.api.approvals" in MODULES and "dealbooks_kit.consumer" in MODULES


def test_no_function_is_longer_than_80_lines_outside_the_sandboxes() -> None:
    long = []
    for module in MODULES.values():
        if module.area == "sandboxes":
            continue
        for node in ast.walk(_tree(module)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_LINES:
                    where = module.path.relative_to(ROOT)
                    long.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    assert long == []


def test_no_import_cycle() -> None:
    edges = _edges()
    assert "invoice_builder.approval" in edges["invoice_builder.api.approvals"]  # edges are read
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _owner_of(imported: str) -> Module | None:
    target = imported
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return MODULES.get(target) if target else None


def _all_imports(module: Module) -> Iterator[str]:
    """Every import anywhere in the module (functions and TYPE_CHECKING blocks included)."""
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


@pytest.mark.parametrize("area", ["services", "libs", "sandboxes"])
def test_the_layers_hold(area: str) -> None:
    """A service imports libraries only; a library never a service; a sandbox nothing of the
    project but itself (it must not share dealbooks' reading of the APIs)."""
    wrong = []
    for module in (m for m in MODULES.values() if m.area == area):
        for imported in _all_imports(module):
            other = _owner_of(imported)
            if other is None or other.owner == module.owner:
                continue
            allowed = {"services": {"libs"}, "libs": {"libs"}, "sandboxes": set()}[area]
            if other.area not in allowed:
                wrong.append(f"{module.name} imports {imported} ({other.area}/{other.owner})")
    assert wrong == []


def test_every_domain_module_is_pure() -> None:
    impure = []
    for module in MODULES.values():
        if module.area != "services" or module.path.name != "domain.py":
            continue
        for imported in _all_imports(module):
            if imported.split(".")[0] in IO_LIBRARIES:
                impure.append(f"{module.name} imports {imported}")
    assert impure == []
