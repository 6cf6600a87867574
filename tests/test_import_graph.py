"""The package's imports run one way: no module imports, even inside a function, a module
that imports it back (directly or through others), no folder of tuner/ imports one that imports it
back, and no layer imports one above it (leaves and services import neither the training, the
study loop, the checks nor the command line; the services not each other)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tuner"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, current: str, is_package: bool) -> str | None:
    if node.level == 0:
        return node.module
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, top-level and function-level alike."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, is_package)
                if base:
                    targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for target in targets:
                # the longest known module the name points into (a name imported from a package
                # may be a submodule or an attribute of the package)
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


#: Where each kind of code may not reach: imports run one way, command line -> study loop ->
#: one trial's training -> leaves, with tracking and storage as services that call nothing above
#: them (docs/architecture.md). A part is a folder of tuner/ or a top-level module.
_ABOVE_TRAINING = {"cli", "validate", "study", "search", "finder", "launch", "report"}
_SERVICES = {"tracking", "storage"}
_LEAVES = {"config", "schedule", "optimizer", "models", "data"}
MAY_NOT_IMPORT: dict[str, set[str]] = {
    **{leaf: _ABOVE_TRAINING | _SERVICES | {"training", "preflight"} for leaf in _LEAVES},
    # the services are called by the checks too (preflight probes the tracking server), and
    # neither reaches into the other (what both need lives below them: tuner/processes.py)
    **{service: _ABOVE_TRAINING | _SERVICES - {service} | {"training", "preflight"} for service in _SERVICES},
    "training": _ABOVE_TRAINING,
    # the study loop is called by the command line and the launchers, and hands the report its
    # results (the report writer is passed in); it may call the range test (search.from_finder)
    "study": {"cli", "validate", "launch", "report"},
    # the range test is called by the study loop, the command line and a DDP rank's entry point
    "finder": {"cli", "validate", "study", "launch", "report"},
    # the search space is read by the study, the range test and the report
    "search": {"cli", "validate", "study", "finder", "launch", "report"},
    # the report reads results; the validation hub calls its checks
    "report": {"cli", "validate", "launch"},
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_run_one_way_between_the_layers():
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        for target in targets
        if _part(target) in MAY_NOT_IMPORT.get(_part(name), set())
    )
    assert not wrong, "imports against the layers: " + "; ".join(wrong)


def _node(module: str) -> str:
    """A folder of tuner/ is one node, a top-level module its own, the package itself ``tuner``."""
    return _part(module) or module


def folder_graph() -> dict[str, set[str]]:
    """Part -> the other parts it imports (a folder's modules taken together)."""
    graph: dict[str, set[str]] = {}
    for name, targets in import_graph().items():
        graph.setdefault(_node(name), set()).update(_node(t) for t in targets)
    return {node: targets - {node} for node, targets in graph.items()}


def test_no_import_cycle_between_the_folders():
    """Modules without a cycle may still make folders that import each other (study/ -> finder/
    -> study/ through different modules): one concern per folder means one direction between
    any two."""
    cycle = find_cycle(folder_graph())
    assert cycle is None, "folder import cycle: " + " -> ".join(cycle or [])


def test_only_the_entry_point_imports_the_command_line():
    importers = sorted(n for n, targets in import_graph().items() if "tuner.cli" in targets)
    assert importers == ["tuner.__main__"], importers


def test_the_layer_rules_name_parts_that_exist():
    parts = {_part(name) for name in import_graph()} - {""}
    named = set(MAY_NOT_IMPORT) | {p for ps in MAY_NOT_IMPORT.values() for p in ps}
    assert named <= parts, f"no such folder or module in tuner/: {sorted(named - parts)}"
