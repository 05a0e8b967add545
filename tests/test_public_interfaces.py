"""Our code uses the libraries' public interfaces: no `_`-prefixed names of theirs, no `_internal` modules,
no MLflow store modules, no SQL on MLflow's tables.

The scan reads linreg_lab/, hydra_plugins/ and scripts/ with `ast`. A private name counts as ours only when
our own code defines it (a function, class, variable, argument or attribute it assigns). The uses that are
still to be replaced (issue #16) are listed in REMAINING, each where it is: a new one fails the test, and so
does a listed one that is gone (the list only shrinks)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

SOURCES = [p for d in ("linreg_lab", "hydra_plugins", "scripts") for p in sorted((ROOT / d).rglob("*.py"))]
MLFLOW_TABLES = r"(runs|metrics|latest_metrics|params|tags|experiments|experiment_tags)"
SQL = re.compile(rf"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|FROM|JOIN)\s+{MLFLOW_TABLES}\b", re.I)

REMAINING = {  # (file, what): the direct store path, the cached sweeper's and the pool's Hydra internals
    ("linreg_lab/composing.py", "hydra._internal.config_loader_impl"),
    ("linreg_lab/composing.py", "._get_node"),
    ("linreg_lab/pool.py", "_flush_loggers"),
    ("linreg_lab/pool.py", "_save_config"),
    ("linreg_lab/pool.py", "._get_node"),
    ("linreg_lab/pool.py", "._set_parent"),
    ("linreg_lab/pool.py", "._return_value"),
    ("hydra_plugins/linreg_lab_sweeper/__init__.py", "hydra._internal.core_plugins.basic_sweeper"),
    ("linreg_lab/tracking.py", "_validate_batch_log_data"),
    ("linreg_lab/tracking.py", "mlflow.utils.validation"),
    ("linreg_lab/store_sql.py", "mlflow.store.tracking.dbmodels.models"),
    ("linreg_lab/store_sql.py", "mlflow.store.tracking.sqlalchemy_store"),
    ("linreg_lab/store_sql.py", "._engine_map"),
    ("linreg_lab/store_sql.py", "SQL on experiments"),
    ("linreg_lab/store_sql.py", "SQL on experiment_tags"),
}


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
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= {f"SQL on {m.group(2).lower()}" for m in SQL.finditer(node.value)
                      if re.search(r"\b(SELECT|INSERT|UPDATE|DELETE)\b", node.value, re.I)}
    return found


def scan() -> set[tuple[str, str]]:
    trees = {path: ast.parse(path.read_text(), str(path)) for path in SOURCES}
    ours = our_names(list(trees.values()))
    return {(str(path.relative_to(ROOT)), what) for path, tree in trees.items()
            for what in library_internals(path, tree, ours)}


def test_no_new_library_internals_and_the_list_of_remaining_ones_only_shrinks() -> None:
    found = scan()
    assert not found - REMAINING, f"library internals used: {sorted(found - REMAINING)}"
    assert not REMAINING - found, f"gone: drop them from REMAINING: {sorted(REMAINING - found)}"


def test_the_scan_sees_what_it_looks_for(tmp_path: Path) -> None:
    code = ("import torch\nfrom omegaconf._utils import get_omega_conf_dumper\nfrom hydra.core.utils import "
            "_save_config\ntorch._fused_adam_([], [])\nq = 'SELECT run_uuid FROM runs'\n")
    tree = ast.parse(code)
    assert library_internals(tmp_path / "x.py", tree, our_names([tree])) == {
        "omegaconf._utils", "_save_config", "._fused_adam_", "SQL on runs"}
