"""The layers a reader sees in the README hold in the code: every module of linreg_lab sits in one layer,
the science loads without Hydra, OmegaConf, MLflow or pandas and without the harness or the reading side,
the reading side never imports the harness, and no module imports itself back through another.

Imports are read with `ast` (top-level and inside functions alike: a lazy import is still a dependency),
then checked once more in a fresh interpreter that imports the science and looks at sys.modules."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

PACKAGE = ROOT / "linreg_lab"
LAYERS = {
    "vocabulary": {"schema", "contract", "store_uri", "limits"},  # names and types every layer shares
    "science": {"data", "models", "optimizers", "train", "theory", "analysis", "fitting", "devices"},
    # MLflow and what a run holds, for both sides
    "store": {"tracking", "curves", "lifecycle", "describe", "store_check"},
    "harness": {"run", "__main__", "preflight", "config", "composing", "sweep", "job", "pool", "console"},
    "reading": {"results", "tables", "findings", "plots", "report", "double_descent", "conditioning",
                "batch_scaling"},
}
FORBIDDEN_IN_SCIENCE = {"hydra", "omegaconf", "mlflow", "pandas"}


def imports() -> dict[str, tuple[set[str], set[str]]]:
    """module -> (linreg_lab modules it imports, top-level third-party packages it imports)."""
    out = {}
    for path in sorted(PACKAGE.glob("*.py")):
        ours, theirs = set(), set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    (ours.add(parts[1]) if parts[0] == "linreg_lab" and len(parts) > 1 else theirs.add(parts[0]))
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                parts = node.module.split(".")
                if parts[0] != "linreg_lab":
                    theirs.add(parts[0])
                elif len(parts) > 1:
                    ours.add(parts[1])
                else:
                    ours.update(alias.name for alias in node.names)  # from linreg_lab import contract
        out[path.stem] = (ours - {"__init__"}, theirs)
    return out


def closure(graph: dict[str, tuple[set[str], set[str]]], start: str) -> tuple[set[str], set[str]]:
    """Every linreg_lab module `start` loads, directly or not, and every third-party package they import."""
    seen, todo, packages = set(), [start], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        ours, theirs = graph[module]
        packages |= theirs
        todo += ours
    return seen - {start}, packages


def layer_of(module: str) -> str:
    return next(name for name, members in LAYERS.items() if module in members)


def test_every_module_is_in_one_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    placed = [m for members in LAYERS.values() for m in members]
    assert sorted(placed) == sorted(set(placed)), "a module listed in two layers"
    assert modules == set(placed), f"new: {sorted(modules - set(placed))}, gone: {sorted(set(placed) - modules)}"


def test_the_science_needs_neither_the_harness_nor_hydra_mlflow_or_pandas() -> None:
    graph = imports()
    for module in LAYERS["science"] | LAYERS["vocabulary"]:
        ours, packages = closure(graph, module)
        assert not packages & FORBIDDEN_IN_SCIENCE, (module, packages & FORBIDDEN_IN_SCIENCE)
        outside = {m for m in ours if layer_of(m) not in ("science", "vocabulary")}
        assert not outside, (module, outside)
    for module in LAYERS["vocabulary"]:
        assert {layer_of(m) for m in closure(graph, module)[0]} <= {"vocabulary"}, module


def test_the_reading_side_and_the_store_never_import_the_harness() -> None:
    graph = imports()
    for module in LAYERS["reading"] | LAYERS["store"]:
        ours, _ = closure(graph, module)
        assert not {m for m in ours if layer_of(m) == "harness"}, module
    for module in LAYERS["store"]:
        assert not {m for m in closure(graph, module)[0] if layer_of(m) == "reading"}, module


def test_no_import_circle() -> None:
    graph = imports()
    for module in graph:
        ours, _ = closure(graph, module)
        circles = [other for other in ours if module in closure(graph, other)[0]]
        assert not circles, (module, circles)


def test_the_science_loads_without_hydra_omegaconf_mlflow_or_pandas() -> None:
    """A fresh interpreter imports every science module and the vocabulary; none of those packages loads."""
    modules = sorted(LAYERS["science"] | LAYERS["vocabulary"])
    code = (f"import sys\nfor m in {modules!r}: __import__('linreg_lab.' + m)\n"
            f"print(sorted(p for p in {sorted(FORBIDDEN_IN_SCIENCE)!r} if p in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
