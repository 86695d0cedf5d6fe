"""Layers point one way: rxllm's import graph has no cycle, and no module imports another
package's private module. Every import counts, also those inside functions and under
``TYPE_CHECKING``: a cycle hidden in a function is still a cycle to whoever reads it."""

from __future__ import annotations

import ast
from pathlib import Path

import rxllm

PACKAGE = Path(rxllm.__file__).parent

LOWER = (
    "rxllm.errors",
    "rxllm.events",
    "rxllm.request",
    "rxllm.catalog",
    "rxllm.vendors",
    "rxllm.config",
)
"""The vocabulary and data: they import nothing above themselves."""
HIGHER = ("rxllm.registry", "rxllm.operators", "rxllm.compare", "rxllm.notebook", "rxllm.cli")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The rxllm modules ``module`` imports (a name imported from a package counts as the
    submodule when it is one)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in modules else target)
    return {name for name in found if name in modules and name != module}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_can_fail() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_a_private_module_of_another_package() -> None:
    modules = _modules()
    offending = []
    for module, targets in _graph().items():
        own_package = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
        for target in targets:
            package, _, last = target.rpartition(".")
            if last.startswith("_") and not last.startswith("__") and package != own_package:
                offending.append(f"{module} -> {target}")
    assert offending == []


def test_lower_layers_never_import_higher_ones() -> None:
    graph = _graph()
    offending = [
        f"{module} -> {target}"
        for module in LOWER
        for target in graph[module]
        if target.startswith(HIGHER)
    ]
    assert offending == []


def test_the_core_types_know_nothing_of_jupyter() -> None:
    graph = _graph()
    for module in ("rxllm.stream", "rxllm.compare", "rxllm.provider", "rxllm.events"):
        assert "rxllm.notebook" not in graph[module], module
        assert "IPython" not in PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(
            ".py"
        ).read_text(encoding="utf-8")
