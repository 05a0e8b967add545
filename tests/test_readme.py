"""The README's commands run as written: every ```sh line is either run here, in order, in one fresh
folder (as a user would, the default store ./mlflow.db), or named below with the test that covers it;
then every ```python block, on the store they made."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

COVERED_ELSEWHERE = {  # a command's start -> where it is exercised instead (too slow, or a server)
    "pip install -q torch": ".ci/run runs this test command verbatim (checked below)",
    "pip install torch": "the install step: the same commands as the test command's, without -q and [dev]",
    "python3 -m venv .venv": ".ci/run makes its virtual environments with these very lines (checked below)",
    "python -m pytest -q -p no:cacheprovider": ".ci/run, in the floor venv (checked below)",
    "mlflow ui ": "tests/test_browser.py starts it on the quickstart's store and drives it in Chromium",
    "scripts/mlflow_server.sh": "tests/test_server.py starts it (SQLite and PostgreSQL backends)",
    "MLFLOW_TRACKING_URI=http://": "tests/test_server.py runs sweeps against that server",
    "python scripts/bench.py --full": "about 9 minutes; tests/test_bench.py runs the benchmark's quick mode",
}


def readme_commands() -> list[str]:
    """Every line of every ```sh block, its trailing comment dropped."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    lines = [re.sub(r"\s{2,}#.*$", "", line).strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def test_readme_is_a_manual_of_at_most_280_lines() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 280  # the contract's names are listed one by one (tests/test_contract.py)
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(c for c in readme_commands() if c.endswith("python -m pytest -q"))
    ci_lines = [c for c in readme_commands() if c.startswith(("python3 -m venv", "pip install -q", "python -m pytest"))]
    assert test_command in ci and len(ci_lines) >= 4  # the suite and the floor run, in their venvs
    assert all(line in ci for line in ci_lines), [line for line in ci_lines if line not in ci]


def test_every_readme_command_runs_as_written(tmp_path: Path) -> None:
    commands = readme_commands()
    to_run = [c for c in commands if not c.startswith(tuple(COVERED_ELSEWHERE))]
    assert len(to_run) >= 10 and any(c.startswith("linreg-lab") for c in to_run)
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")  # `python scripts/report.py` from a clone
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LINREG_LAB_PARENT_RUN_ID")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this python, linreg-lab
    for command in to_run:
        out = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, f"{command}\n{out.stderr[-3000:]}"
        assert "error" not in out.stderr.lower(), f"{command}\n{out.stderr[-3000:]}"
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "report" / "report.html").is_file()
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "the README shows linreg_lab.results in a python block"
    for block in blocks:  # on the store the commands above made
        out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, f"{block}\n{out.stderr[-3000:]}"
        assert "w_error/l2" in out.stdout and "train/loss" in out.stdout, out.stdout[-2000:]
    for out_dir in ("report-latest", "report-all", "report-script"):
        assert (tmp_path / out_dir / "report.html").is_file(), out_dir
