"""No import circle inside ``fieldpush`` (``TYPE_CHECKING`` imports included).

The layer order between packages is import-linter's contract (pyproject.toml,
``lint-imports`` in the test command); this test also catches a circle between
two modules of one package, which a layers contract does not see.

The graph is read from the source with :mod:`ast`: every ``import`` and
``from … import`` of a ``fieldpush`` module, wherever it stands. Edges into
a package's ``__init__`` count as edges to the package module. Two kinds of
edges are left out because they point down by design: the app imports
everything, and the HTTP routes import the node they read from the app state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fieldpush

ROOT = Path(fieldpush.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from pkg import mod`` imports the module pkg.mod when there is one.
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(target for target in targets if target in modules)
    found.discard(name)
    return found


def _ignored(source: str, target: str) -> bool:
    return source == "fieldpush.app" or (
        source.startswith("fieldpush.http.") and target == "fieldpush.node"
    )


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in ROOT.rglob("*.py")}
    modules = set(paths)
    return {
        name: {t for t in _imports(path, name, modules) if not _ignored(name, t)}
        for name, path in paths.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(module: str) -> list[str] | None:
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target in on_stack:
                return [*stack[stack.index(target) :], target]
            if target not in done:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        stack.pop()
        on_stack.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            cycle = visit(module)
            if cycle is not None:
                return cycle
    return None


def test_fieldpush_has_no_import_circle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_part_imports_the_node() -> None:
    """Only what sits above the node imports it: the command line (the app
    and the HTTP routes are left out of the graph already)."""
    graph = import_graph()
    importers = {source for source, targets in graph.items() if "fieldpush.node" in targets}
    assert all(source.startswith("fieldpush.cli.") for source in importers), importers


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_under_type_checking_and_in_functions_are_edges(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from fieldpush.node import Node\n"
        "def f():\n"
        "    from fieldpush.delivery import hub\n"
    )
    modules = {"fieldpush.node", "fieldpush.delivery", "fieldpush.delivery.hub"}
    found = _imports(source, "fieldpush.x.mod", modules)
    assert found == {"fieldpush.node", "fieldpush.delivery", "fieldpush.delivery.hub"}
