"""Our code uses the libraries' public interfaces: no `_`-prefixed names of theirs, no `_internal` modules,
no MLflow store modules, no SQL on MLflow's tables.

The scan reads linreg_lab/, hydra_plugins/ and scripts/ with `ast`. A private name counts as ours only when
our own code defines it (a function, class, variable, argument or attribute it assigns); getattr/setattr
with a private name and private keyword arguments count too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

SOURCES = [p for d in ("linreg_lab", "hydra_plugins", "scripts") for p in sorted((ROOT / d).rglob("*.py"))]
MLFLOW_TABLES = r"(runs|metrics|latest_metrics|params|tags|experiments|experiment_tags)"
SQL = re.compile(rf"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|FROM|JOIN)\s+{MLFLOW_TABLES}\b", re.I)

def our_names(trees: list[ast.AST]) -> set[str]:
    """Every name our code defines: functions, classes, variables, arguments, assigned attributes."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return names


DOCUMENTED = {"_exit"}  # os._exit: underscored, yet in Python's documented os API


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name not in DOCUMENTED


def library_internals(path: Path, tree: ast.AST, ours: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and not node.module.startswith(
                ("linreg_lab", "hydra_plugins.linreg_lab", "tests")):
            if any(private(part) for part in node.module.split(".")) or node.module.startswith("mlflow.store") \
                    or node.module.startswith("mlflow.utils.validation"):
                found.add(node.module)
            found |= {a.name for a in node.names if private(a.name)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if any(private(p) for p in a.name.split("."))
                      or a.name.startswith("mlflow.store")}
        elif isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in ours:
            found.add(f".{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg and private(node.arg) and node.arg not in ours:
            found.add(f"{node.arg}=")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr")
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and private(node.args[1].value)
              and node.args[1].value not in ours):
            found.add(f"{node.func.id}(..., {node.args[1].value!r})")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= {f"SQL on {m.group(2).lower()}" for m in SQL.finditer(node.value)
                      if re.search(r"\b(SELECT|INSERT|UPDATE|DELETE)\b", node.value, re.I)}
    return found


def scan() -> set[tuple[str, str]]:
    trees = {path: ast.parse(path.read_text(), str(path)) for path in SOURCES}
    ours = our_names(list(trees.values()))
    return {(str(path.relative_to(ROOT)), what) for path, tree in trees.items()
            for what in library_internals(path, tree, ours)}


def test_no_library_internals() -> None:
    found = scan()
    assert not found, f"library internals used: {sorted(found)}"


def test_the_scan_sees_what_it_looks_for(tmp_path: Path) -> None:
    code = ("import torch\nfrom omegaconf._utils import get_omega_conf_dumper\nfrom hydra.core.utils import "
            "_save_config, JobReturn\ntorch._fused_adam_([], [])\nq = 'SELECT run_uuid FROM runs'\n"
            "s = getattr(client, '_tracking_client', None)\nJobReturn(_return_value=1)\n"
            "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\n")
    tree = ast.parse(code)
    assert library_internals(tmp_path / "x.py", tree, our_names([tree])) == {
        "omegaconf._utils", "_save_config", "._fused_adam_", "SQL on runs", "getattr(..., '_tracking_client')",
        "_return_value=", "mlflow.store.tracking.sqlalchemy_store"}
