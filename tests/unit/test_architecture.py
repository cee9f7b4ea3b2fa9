"""The layers hold: every import points down the layer table (the diagram in docs/architecture.md,
"What may import what"), no package and no module imports itself through a cycle, and no module
grows past a size a reviewer can hold in their head. Read from the source with ``ast``, nothing is
executed."""

from __future__ import annotations

import ast
import functools
import itertools
import re
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"melanoma_mlops": REPO / "components", "melanoma_pipelines": REPO / "pipelines"}

#: The layers, bottom up, as docs/architecture.md draws them. A module may import its own layer and
#: every layer on a lower floor; never a higher floor, nor the other layer of its own floor (those
#: two are independent: neither may learn the other's names). Deferred imports inside functions and
#: ``if TYPE_CHECKING:`` imports count like any other.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("ground",),  # melanoma_mlops itself and the modules of GROUND
    ("data",),
    ("model",),
    ("evaluation",),
    ("serving",),
    ("registry", "experiments"),
    ("steps", "app", "monitoring"),
    ("melanoma_pipelines",),  # the KFP layer: components, DAGs, runners
    ("melanoma_pipelines.cli",),
)
#: The ground floor: the package's own modules (configuration, names, storage, MLflow bookkeeping).
GROUND = (
    "config",
    "artifacts",
    "errors",
    "storage",
    "resume",
    "run_note",
    "limits",
    "envvars",
    "liveness",
    "disk_space",
    "preflight",
    "quiet_tensorflow",
    "tracking",
    "tracking_client",
    "heartbeat",
    "artifact_cleanup",
    "tracking_server",
    "ui_links",
)
#: Line budgets: any module; a step module (paths in, files out, MLflow records: the logic is below).
MAX_MODULE_LINES = 400
MAX_STEP_LINES = 150


class Import(NamedTuple):
    module: str  # the importing module
    target: str  # the project module it imports (the longest known prefix of the imported name)
    line: int
    path: Path

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}: {self.module} imports {self.target}"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    """module name -> its file, for every module of both packages."""
    return {_module_name(path, root): path for root in ROOTS.values() for path in sorted(root.rglob("*.py"))}


@functools.cache
def _import_sites() -> tuple[Import, ...]:
    """Every project import of every module, with its line (deferred imports included).

    ``from package import name`` imports ``package`` (its ``__init__`` runs) and, when ``name`` is a
    submodule, that submodule too; a name that is not a module resolves to the module defining it.
    """
    sources = _sources()
    sites: list[Import] = []
    for name, path in sources.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found = [base, *(f"{base}.{a.name}" for a in node.names)]
            for imported in found:
                target = _known_prefix(imported, sources)
                if target:
                    sites.append(Import(name, target, node.lineno, path))
    return tuple(dict.fromkeys(sites))  # `from a.b import c, d`: one site per module imported


def _known_prefix(imported: str, modules: dict[str, Path]) -> str:
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return ""


def _imports() -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in the file, deferred imports included)."""
    graph: dict[str, set[str]] = {name: set() for name in _sources()}
    for site in _import_sites():
        graph[site.module].add(site.target)
    return graph


def _layer(module: str) -> str | None:
    """The layer of a module (None: a module the table does not place yet)."""
    parts = module.split(".")
    if parts[0] == "melanoma_pipelines":
        return "melanoma_pipelines.cli" if parts[1:2] == ["cli"] else "melanoma_pipelines"
    if len(parts) == 1 or parts[1] in GROUND:
        return "ground"
    layers = {layer for floor in FLOORS for layer in floor}
    return parts[1] if parts[1] in layers else None


def _may_import() -> dict[str, set[str]]:
    """layer -> the layers it may import: its own and every layer on a lower floor."""
    allowed: dict[str, set[str]] = {}
    below: set[str] = set()
    for floor in FLOORS:
        for layer in floor:
            allowed[layer] = below | {layer}
        below = below | set(floor)
    return allowed


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in _sources() if _layer(m) is None)
    assert not unplaced, f"not in the layer table (add them to FLOORS or GROUND, and the doc): {unplaced}"


def test_imports_only_point_down_the_layer_table() -> None:
    allowed = _may_import()
    upward = [
        f"{site}  ({_layer(site.module)} may not import {_layer(site.target)})"
        for site in _import_sites()
        if _layer(site.module) and _layer(site.target) not in allowed[str(_layer(site.module))]
    ]
    assert not upward, "imports against the layer table:\n" + "\n".join(upward)


def test_the_layer_table_is_the_one_the_doc_draws() -> None:
    """docs/architecture.md draws FLOORS top down, one row per floor (before any parenthesis)."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    diagram = doc.split("## What may import what", 1)[1].split("```")[1]
    rows = [row.split("(")[0] for row in diagram.splitlines()]
    drawn_as = {
        "ground": r"\bconfig\b",
        "melanoma_pipelines": r"pipelines/melanoma_pipelines(?!/)",
        "melanoma_pipelines.cli": r"pipelines/melanoma_pipelines/cli\b",
    }

    def row_of(layer: str) -> int:
        pattern = drawn_as.get(layer, rf"\b{layer}\b")
        hits = [i for i, row in enumerate(rows) if re.search(pattern, row)]
        assert hits, f"the diagram in docs/architecture.md does not show layer {layer!r}"
        return hits[0]

    for floor, above in itertools.pairwise(FLOORS):
        assert len({row_of(layer) for layer in floor}) == 1, f"the doc draws {floor} on different floors"
        assert row_of(floor[0]) > row_of(above[0]), f"the doc draws {floor[0]} above {above[0]}"
    for module in GROUND:
        assert re.search(rf"\b{module}\b", diagram), f"the diagram does not list ground-floor {module}"


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


def _find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle of a directed graph (its nodes, the first repeated at the end), or []."""
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend([*stack[stack.index(nxt) :], nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*stack, nxt]):
                return True
        state[node] = 2
        return False

    for node in sorted(edges):
        if state.get(node) is None and visit(node, [node]):
            break
    return cycle


def test_there_is_no_import_cycle_between_modules() -> None:
    graph = _imports()
    modules = set(graph)
    edges = {
        m: {d for d in deps if d in modules and d != m and not m.startswith(d + ".")}
        for m, deps in graph.items()
    }
    cycle = _find_cycle(edges)
    assert not cycle, " -> ".join(cycle)


def test_there_is_no_import_cycle_between_packages() -> None:
    """At every depth of the package tree, a package (with all its submodules) and whatever it
    imports never import each other back. A package's ``__init__`` counts as the package itself,
    apart from its submodules: an ``__init__`` that imports a submodule may not be imported by it
    (``from package import sibling`` runs the package's ``__init__``)."""
    sites = _import_sites()
    depth = max(len(m.split(".")) for m in _sources())
    for level in range(1, depth + 1):

        def unit(module: str, level: int = level) -> str:
            return ".".join(module.split(".")[:level])

        edges: dict[str, set[str]] = {}
        why: dict[tuple[str, str], Import] = {}
        for site in sites:
            a, b = unit(site.module), unit(site.target)
            if a != b:
                edges.setdefault(a, set()).add(b)
                why.setdefault((a, b), site)
        cycle = _find_cycle(edges)
        assert not cycle, f"packages import each other: {' -> '.join(cycle)}\n" + "\n".join(
            str(why[(a, b)]) for a, b in itertools.pairwise(cycle)
        )


def test_steps_do_not_import_each_other() -> None:
    for name, deps in _imports().items():
        if name.startswith("melanoma_mlops.steps."):
            others = [d for d in deps if d.startswith("melanoma_mlops.steps.") and d != name]
            assert not others, f"{name} imports {others}: what flows between steps belongs in artifacts.py"


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(REPO)): _lines(path)
        for path in _sources().values()
        if _lines(path) > MAX_MODULE_LINES
    }
    assert not long, f"over {MAX_MODULE_LINES} lines (split by what the parts are about): {long}"


def test_step_modules_are_thin() -> None:
    """A step opens its MLflow run, reads its inputs, calls the library, writes its outputs."""
    steps = REPO / "components" / "melanoma_mlops" / "steps"
    long = {path.name: _lines(path) for path in sorted(steps.glob("*.py")) if _lines(path) > MAX_STEP_LINES}
    assert not long, f"step modules over {MAX_STEP_LINES} lines (move the logic into the library): {long}"
