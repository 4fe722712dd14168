"""The package's import graph: no cycles, and a core that never imports Ray, MLflow or Optuna.

Every ``import`` statement is read with :mod:`ast`, including those inside functions (a lazy
import still ties two modules together). Importing ``a.b.c`` also runs the packages ``a`` and
``a.b``, so those count as imported too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ckd_tune

ROOT = Path(ckd_tune.__file__).resolve().parent
CORE = ("ckd_tune.config", "ckd_tune.losses", "ckd_tune.schedules", "ckd_tune.methods",
        "ckd_tune.train", "ckd_tune.data", "ckd_tune.errors")  # fmt: skip
OPTIONAL = ("ray", "mlflow", "optuna")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """Every module ``name`` imports (anywhere in its body), with the packages above each."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{name}: relative import of {node.module}"
            found.add(node.module)
            # ``from package import module`` imports the module too
            found.update(f"{node.module}.{a.name}" for a in node.names)
    closed = set()
    for target in found:
        parts = target.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return closed - {name}


GRAPH = {name: {t for t in _imports(name) if t in MODULES} for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_parser_sees_the_package() -> None:
    assert {"ckd_tune.config", "ckd_tune.train", "ckd_tune.methods.ckd"} <= set(MODULES)
    assert "ckd_tune.methods.base" in GRAPH["ckd_tune.methods.ckd"]
    assert "ckd_tune.methods" in GRAPH["ckd_tune.methods.ckd"]  # the package above, too


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize(
    "name", [m for m in MODULES if any(m == c or m.startswith(f"{c}.") for c in CORE)]
)
def test_core_never_imports_ray_mlflow_or_optuna(name: str) -> None:
    bad = {i for i in _imports(name) if i.split(".")[0] in OPTIONAL}
    assert not bad, f"{name} imports {sorted(bad)}"
