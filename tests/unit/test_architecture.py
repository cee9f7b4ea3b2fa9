"""The layers hold: the step library never imports the Kubeflow layer or the CLI, and no module
imports itself through a cycle. Read from the source with ``ast``, nothing is executed."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"melanoma_mlops": REPO / "components", "melanoma_pipelines": REPO / "pipelines"}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in the file, deferred imports included)."""
    graph: dict[str, set[str]] = {}
    for root in ROOTS.values():
        for path in root.rglob("*.py"):
            name = _module_name(path, root)
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
                    found.add(base)
                    found.update(f"{base}.{a.name}" for a in node.names)
            graph[name] = {m for m in found if m.split(".")[0] in ROOTS}
    return graph


def test_the_step_library_never_imports_the_kubeflow_layer_or_the_cli() -> None:
    offenders = {
        name: sorted(m for m in deps if m.startswith("melanoma_pipelines"))
        for name, deps in _imports().items()
        if name.startswith("melanoma_mlops")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_nothing_imports_the_cli() -> None:
    importers = [
        name
        for name, deps in _imports().items()
        if not name.startswith("melanoma_pipelines.cli")
        and any(m.startswith("melanoma_pipelines.cli") for m in deps)
    ]
    assert importers == []


def test_there_is_no_import_cycle_between_modules() -> None:
    graph = _imports()
    modules = set(graph)
    edges = {
        m: {d for d in deps if d in modules and d != m and not m.startswith(d + ".")}
        for m, deps in graph.items()
    }
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle.extend([*stack[stack.index(nxt) :], nxt] if nxt in stack else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*stack, nxt]):
                return True
        state[node] = 2
        return False

    for module in sorted(modules):
        if state.get(module) is None and visit(module, [module]):
            break
    assert not cycle, " -> ".join(cycle)


def test_steps_do_not_import_each_other() -> None:
    for name, deps in _imports().items():
        if name.startswith("melanoma_mlops.steps."):
            others = [d for d in deps if d.startswith("melanoma_mlops.steps.") and d != name]
            assert not others, f"{name} imports {others}: what flows between steps belongs in artifacts.py"
