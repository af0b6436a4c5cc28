"""No module of lobbypay or lobbypay_hw imports a module that imports it back.

The import graph is read from the source with ``ast``, without importing anything:

* every ``import`` and ``from ... import`` counts, at module level or inside a function
  (a lazy import is still a dependency, only a later one); imports under
  ``if TYPE_CHECKING:`` do not (they never run);
* ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``;
* a string such as ``"lobbypay.cli.doctor:cmd_doctor"`` (the CLI's table of lazily loaded
  commands, in entry-point notation) is an edge to its module;
* the parent packages a submodule import runs on the way are not edges (otherwise every
  package whose ``__init__`` imports a submodule would be a cycle with it).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = (ROOT / "agent", ROOT / "drivers")
PACKAGES = ("lobbypay", "lobbypay_hw")
#: "module.path:attribute", as in entry points and the CLI's command table.
_REFERENCE = re.compile(r"\A((?:lobbypay|lobbypay_hw)(?:\.\w+)*):\w+\Z")

#: Cycles that exist today in modules being reworked elsewhere, each as the set of its
#: modules. The test reports them without failing; an entry that is no longer a cycle
#: fails the test, so the list only shrinks. Empty it as the rework lands.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in SOURCE_ROOTS:
        for package in PACKAGES:
            base = root / package
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*.py")):
                parts = list(path.relative_to(root).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    """Every module name ``tree`` imports (``pkg.name`` candidates included), outside
    ``if TYPE_CHECKING:`` blocks."""
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> Iterable[str]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the else branch runs
                yield from visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = _REFERENCE.match(node.value)
            if m:
                yield m.group(1)
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(tree)


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports (not itself, not its own parents)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        targets: set[str] = set()
        for imported in _imported_names(tree, name, path.name == "__init__.py"):
            if imported in modules:
                targets.add(imported)
        graph[name] = {t for t in targets
                       if t != name and not name.startswith(t + ".")}
    return graph


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def a_cycle(graph: Mapping[str, Iterable[str]], component: list[str]) -> list[str]:
    """One concrete loop through ``component``, as a path that ends where it began."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        node = path[-1]
        nexts = sorted(n for n in graph.get(node, ()) if n in members)
        if start in nexts and len(path) > 1:
            return [*path, start]
        unvisited = [n for n in nexts if n not in seen]
        if not unvisited:  # every way on leads back into the path: close the loop there
            back = nexts[0]
            return [*path[path.index(back):], back]
        path.append(unvisited[0])
        seen.add(unvisited[0])


def _describe(graph: Mapping[str, Iterable[str]], components: list[list[str]]) -> str:
    return "\n".join(" -> ".join(a_cycle(graph, c)) for c in components)


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph()
    components = strongly_connected(graph)
    unknown = [c for c in components if frozenset(c) not in KNOWN_CYCLES]
    assert not unknown, "import cycles:\n" + _describe(graph, unknown)
    if components:  # the known ones, visible with pytest -rA / -s
        print("known import cycles (KNOWN_CYCLES):\n" + _describe(graph, components))


def test_every_known_cycle_still_exists() -> None:
    components = {frozenset(c) for c in strongly_connected(import_graph())}
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in components]
    assert not gone, f"no longer a cycle, remove from KNOWN_CYCLES: {gone}"


def test_the_graph_sees_lazy_imports_and_command_references() -> None:
    graph = import_graph()
    assert "lobbypay.engine" in graph["lobbypay.app"]  # a module-level import
    assert "lobbypay.app" in graph["lobbypay.cli.agent"]  # inside cmd_run
    assert "lobbypay.cli.doctor" in graph["lobbypay.cli.parser"]  # "module:function"
    assert "lobbypay.demo.session" in graph["lobbypay.cli.simulated"]


def test_type_checking_imports_are_left_out() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    import lobbypay.a\nelse:\n    import lobbypay.b\n"
                     "def f():\n    from . import c\n")
    names = set(_imported_names(tree, "lobbypay.m", False))
    assert "lobbypay.a" not in names
    assert {"lobbypay.b", "lobbypay", "lobbypay.c"} <= names


def test_the_detector_finds_a_cycle() -> None:
    # Proof the check can fail: a -> b -> c -> a, with d outside the loop.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    components = strongly_connected(graph)
    assert components == [["a", "b", "c"]]
    assert a_cycle(graph, components[0]) == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_the_cli_and_the_demo_do_not_import_each_other() -> None:
    graph = import_graph()

    def reaches(start: str, package: str) -> bool:
        todo, seen = [start], {start}
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt == package or nxt.startswith(package + "."):
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    demo = [m for m in graph if m == "lobbypay.demo" or m.startswith("lobbypay.demo.")]
    assert demo
    assert not any(reaches(m, "lobbypay.cli") for m in demo)


def test_the_agent_does_not_import_the_tools_or_the_simulator() -> None:
    # `lobbypay run` is cli.parser + cli.agent + lobbypay.app: the parser reads the test
    # cards' names for `swipe --test-card`; the agent itself reaches none of these.
    graph = import_graph()
    todo, seen = ["lobbypay.app"], {"lobbypay.app"}
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    tools = ("lobbypay.sim", "lobbypay.cli", "lobbypay.demo", "lobbypay.ui",
             "lobbypay.devices", "lobbypay.client")
    assert not {m for m in seen if any(m == t or m.startswith(t + ".") for t in tools)}
