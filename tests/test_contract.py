"""The contract has one home: linreg_lab/contract.py names every metric, tag, artifact and environment
variable; the README lists the same names, no more and no fewer; no other module spells one of them; and
what a real job writes is exactly what the contract names."""

from __future__ import annotations

import ast
import dataclasses
import re
import typing
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from linreg_lab import contract, schema
from tests.conftest import ROOT, job_runs, run_in_process

README = (ROOT / "README.md").read_text()
SECTION = re.search(r"^## What every run records \(the contract\)\n(.*?)^## ", README, flags=re.S | re.M).group(1)


def readme_form(name: str) -> str:
    """How the README writes a name: w_error/{i} -> w_error/<i>."""
    return re.sub(r"\{(\w+)\}", r"<\1>", name)


def contract_names() -> set[str]:
    """Every name contract.py defines: its string constants, the members of its name tuples, and the
    standard errors and theory values it derives."""
    names = set()
    for key, value in vars(contract).items():
        if key.isupper() and isinstance(value, str):
            names.add(readme_form(value))
        elif key.isupper() and isinstance(value, tuple):
            names.update(value)
    names.update(contract.se(m) for m in contract.WITH_SE)
    names.update(contract.theory_of(m) for m in contract.DECOMPOSED)
    return names


def config_keys(cls: type, prefix: str = "") -> set[str]:
    """The dotted keys of a schema dataclass (the params a run logs)."""
    keys = set()
    hints = typing.get_type_hints(cls, vars(schema))
    for f in dataclasses.fields(cls):
        keys.add(prefix + f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= config_keys(hints[f.name], f"{prefix}{f.name}.")
    return keys


def test_the_readme_lists_every_contract_name() -> None:
    quoted = set(re.findall(r"`([^`\n]+)`", README))
    missing = sorted(n for n in contract_names() if n not in quoted)
    assert not missing, f"in contract.py but not in the README: {missing}"


def test_every_name_of_the_readme_contract_is_in_the_module() -> None:
    """Each quoted word of the contract section is a contract name, a config key (the params), or one of
    the section's few examples."""
    groups = {f"{g}.{f.name}" for g, cls in (("data", schema.DataConfig), ("optimizer", schema.SGDConfig),
                                             ("model", schema.ClosedFormConfig)) for f in dataclasses.fields(cls)}
    allowed = contract_names() | config_keys(schema.Config) | groups
    examples = {"manual-adam-lr0.01-bs10-noise0.01-s0-R8", "key=value", "sha256:<hex>", "data.predict_at",
                "grid", "target_rel", "NullPool", "false", "linreg_lab/contract.py"}
    quoted = set(re.findall(r"`([^`\n]+)`", SECTION))
    unknown = sorted(q for q in quoted - allowed - examples)
    assert not unknown, f"in the README's contract but not in contract.py: {unknown}"
    assert len(quoted & contract_names()) > 100


NAMESPACES = tuple(sorted({v.split("/")[0] + "/" for k, v in vars(contract).items()
                           if k.isupper() and isinstance(v, str) and "/" in v}))
EXEMPT = {("scripts/bench.py", "reference_job")}  # the naive reference logs its own names, as a blog post would


def spelt_names(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string in `path`, docstrings aside, that spells a contract name: a metric
    (or the start of one, in an f-string), an artifact or an environment variable."""
    tree = ast.parse(path.read_text())
    exempt = {n for f, n in EXEMPT if path == ROOT / f}
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
            if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
                skip.add(id(node.body[0].value))  # a docstring says what a name means
            if getattr(node, "name", None) in exempt:
                skip.update(id(n) for n in ast.walk(node))
    distinct = {v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str)
                and ("/" in v or "." in v or v.isupper() or "_" in v)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
            if text in distinct or (text.startswith(NAMESPACES) and len(text) > 2):
                out.append((node.lineno, text))
    return out


def test_no_module_spells_a_contract_name() -> None:
    """A rename in contract.py leaves no old spelling behind: the code imports each name instead."""
    sources = [p for d in ("linreg_lab", "hydra_plugins", "scripts") for p in sorted((ROOT / d).rglob("*.py"))
               if p.name != "contract.py"]
    found = [f"{p.relative_to(ROOT)}:{line}: {text!r}" for p in sources for line, text in spelt_names(p)]
    assert not found, "\n".join(found)


def test_the_scan_finds_a_spelt_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('"""doc: train/loss"""\nx = {"w_error/l2": 1}\ny = f"est/w_{1}"\nz = "curves.npz"\n')
    assert sorted(t for _, t in spelt_names(bad)) == ["curves.npz", "est/w_", "w_error/l2"]


METRIC = re.compile("|".join(re.escape(n).replace(r"\{i\}", r"\d+").replace(r"\{x\}", r"[-\w.]+")
                             for n in (v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str))
                             ) + "|" + "|".join(map(re.escape, contract_names())))


@pytest.mark.parametrize("overrides", [["replicates=3", "data=uniform_1d", "data.predict_at=[0.5]"],
                                       ["model=closed_form"], ["model=grid", "data=linspace_1d", "replicates=1"]])
def test_a_job_writes_only_contract_names(store: str, overrides: list[str], tmp_path: Path) -> None:
    """Every metric and tag a real job logs, every artifact and array it writes, is named by the contract."""
    run_in_process("steps=200", "device=cpu", *overrides)
    (run,) = job_runs(store)
    unnamed = [k for k in [*run.data.metrics, *run.data.tags] if not k.startswith("mlflow.") and not
               re.fullmatch(METRIC, k)]
    assert not unnamed, unnamed
    assert run.data.tags[contract.RUN_KIND] in contract.RUN_KINDS
    assert run.data.tags[contract.OUTCOME] in contract.OUTCOMES
    assert run.data.tags[contract.THEORY] in contract.THEORY_KINDS
    assert run.data.tags[contract.STABILITY] in contract.STABILITY_VERDICTS
    (tmp_path / "artifacts").mkdir()
    folder = Path(MlflowClient(store).download_artifacts(run.info.run_id, "", str(tmp_path / "artifacts")))
    files = {p.name for p in folder.iterdir()}
    artifacts = {v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str) and "." in v
                 and "/" not in v and not v.startswith("mlflow.")}
    assert files <= artifacts, files - artifacts
    with np.load(folder / contract.DATA_NPZ) as npz:
        assert set(npz.files) == set(contract.DATA_ARRAYS)
    with np.load(folder / contract.CURVES_NPZ) as npz:
        assert npz.files and all(re.fullmatch(METRIC, k) for k in npz.files), npz.files
    if contract.REPLICATES_NPZ in files:
        with np.load(folder / contract.REPLICATES_NPZ) as npz:
            assert set(npz.files) == set(contract.REPLICATE_ARRAYS)
    if contract.CURVE_CSV in files:
        assert (folder / contract.CURVE_CSV).read_text().splitlines()[0] == contract.CURVE_CSV_HEADER
