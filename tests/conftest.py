"""Shared fixtures: composed configs with tiny budgets, a temp SQLite store, the real CLI."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.singleton import Singleton
from mlflow import MlflowClient

from linreg_lab import job, tracking
from linreg_lab.config import check_config, register_configs
from linreg_lab.run import conf_dir, job_context
from linreg_lab.schema import RunConfig
from linreg_lab.store_uri import resolve_tracking_uri, sqlite_path

ROOT = Path(__file__).resolve().parent.parent
PRISTINE_HYDRA = Singleton.get_state()  # Hydra's global state before any test composed a config (version base...)


@pytest.fixture(scope="session", autouse=True)
def _schemas() -> None:
    register_configs()


def compose_config(*overrides: str) -> RunConfig:
    """Compose conf/config.yaml with `overrides` and check it, as the entry point does."""
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return check_config(compose("config", list(overrides)))


def compose_raw(*overrides: str):
    """The composed DictConfig, unchecked."""
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return compose("config", list(overrides))


def run_scored(*overrides: str) -> dict[str, float]:
    """Compose, fit and score one job in this process (no store): its final metrics."""
    import torch

    from linreg_lab import fitting

    cfg = compose_config(*overrides, "device=cpu")
    data = fitting.load_data(cfg)
    cfg = fitting.tuned(cfg, data)  # theory_tuned's rate, as the job sets it
    fit = fitting.fit_solver(cfg, data) if cfg.is_solver else fitting.fit_gradient(cfg, data, torch.device("cpu"))
    return {**fit.finals, **fitting.score(cfg, data, fit)[0]}


def run_in_process(*overrides: str) -> dict[str, float]:
    """Compose, check and run one job into the store set by MLFLOW_TRACKING_URI."""
    ctx = job_context(compose_raw(*overrides), resolve_tracking_uri(None, "."), list(overrides))
    return job.run_job(compose_config(*overrides), ctx)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store in a temp dir, set as MLFLOW_TRACKING_URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 600, preexec_fn=None) -> subprocess.CompletedProcess:
    """Run `python -m linreg_lab.run ARGS` in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("LINREG_LAB_PARENT_RUN_ID", None)
    return subprocess.run([sys.executable, "-m", "linreg_lab.run", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)


# A job that crashes for real after its training: 400000 steps of 8 replicates make a 25.6 MB replicates.npz, which a
# command allowed files of at most 20 MB (small_files) cannot write: OSError (EFBIG) once the job has begun.
CRASHING_STEPS = "400000"


def small_files() -> None:
    """A subprocess's preexec_fn: no file of the command or its workers may grow past 20 MB (a full disk, as a
    writer meets it: the write fails with EFBIG instead of the process being stopped by SIGXFSZ)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000_000, 20_000_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def run_report(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `python -m linreg_lab.report ARGS` in a subprocess in `cwd` (its ./mlflow.db), as a user would."""
    return subprocess.run([sys.executable, "-m", "linreg_lab.report", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def all_runs(uri: str, experiment: str = "linreg_lab") -> list:
    """Every run of `experiment` in the store at `uri` (all pages)."""
    client = MlflowClient(uri)
    exp_id = tracking.experiment_id(client, experiment)
    return [] if exp_id is None else tracking.search_all(client, exp_id)


def job_runs(uri: str, status: str | None = None) -> list:
    """The job runs (not sweep parents) of the store, optionally only those with `status`."""
    return [r for r in all_runs(uri) if r.data.tags.get("run_kind") == "job"
            and (status is None or r.info.status == status)]


LONG_JOB = ["model=manual", "batch_size=full", "steps=3000000"]  # ~60 s of training, no batch order to draw first


def start_cli(args: list[str], cwd: Path, uri: str) -> subprocess.Popen:
    """Start the CLI on the store at `uri`, made first when it is a new SQLite file: the test then polls the store
    while the command runs, and a poll must never meet (nor, through MLflow's migrations, join) the store's making."""
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        tracking.create_store(uri)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("LINREG_LAB_PARENT_RUN_ID", None)
    return subprocess.Popen([sys.executable, "-m", "linreg_lab.run", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def killed_sweep(sweep: list[str], cwd: Path, uri: str, finished: int) -> int:
    """Start `sweep`, SIGKILL its launching process once `finished` jobs are FINISHED; the number then FINISHED."""
    proc = start_cli(sweep, cwd, uri)
    wait_for(lambda: len(job_runs(uri, "FINISHED")) >= finished, proc, timeout=300)
    proc.kill()
    proc.wait(timeout=30)
    return len(job_runs(uri, "FINISHED"))


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll the store until `predicate()` holds (the subprocess must still be alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the command ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("timed out waiting on the store")
