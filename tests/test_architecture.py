"""The house rules, checked on the source: no import cycles, no upward imports.

Layers, lowest first: ``variants`` (attention, and the shared config checker), ``harness``
(models, data, training, CLI), ``reports`` (HTML from result files; may read only harness's
torch-free ``results`` and ``layout``). Function-level (lazy) imports count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("variants", "harness", "reports")
REPORTS_MAY_USE = {"harness", "harness.results", "harness.layout"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """Project modules imported anywhere in ``path`` (``from pkg import mod`` resolves to mod)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names}
            found |= (subs & known) or {node.module}
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    known = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, known) - {_module_name(p)} for p in files}


def test_no_upward_imports():
    bad = []
    for module, deps in _graph().items():
        layer = module.split(".")[0]
        for dep in deps:
            upward = PACKAGES.index(dep.split(".")[0]) > PACKAGES.index(layer)
            if upward or (
                layer == "reports" and dep.startswith("harness") and dep not in REPORTS_MAY_USE
            ):
                bad.append(f"{module} -> {dep}")
    assert not bad, bad


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(path[path.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles
