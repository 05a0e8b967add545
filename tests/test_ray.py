"""The ray launcher on a local Ray cluster that the test starts (`ray start --head`): jobs nested under the
sweep's parent, and `resume=true` completing a sweep whose launching process was killed.

Needs the ray extra (hydra-ray-launcher pins cloudpickle<3), which CI installs in its own venv
(.ci/run: .venv-ray); in a venv without it these tests are not collected, and
tests/test_server.py::test_missing_launcher_plugin_is_a_one_line_error runs instead."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import all_runs, job_runs, killed_sweep, run_cli

pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the ray extra is not installed (its own CI venv)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A one-node Ray cluster on 127.0.0.1 with 2 CPUs; its address, for hydra.launcher.ray.init.address."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    port, temp = free_port(), tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                            "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                           env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stdout[-2000:] + start.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_ray_sweep_nests_every_job_under_its_parent(tmp_path: Path, ray_cluster: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_cli(["-m", "seed=0,1,2", "steps=100", "hydra/launcher=ray",
                   f"hydra.launcher.ray.init.address={ray_cluster}"], tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr[-3000:]
    (parent,) = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "sweep"]
    jobs = job_runs(uri)
    assert len(jobs) == 3 and all(r.info.status == "FINISHED" for r in jobs)
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    assert sorted(int(r.data.params["seed"]) for r in jobs) == [0, 1, 2] and parent.info.status == "FINISHED"
    launcher_pid = parent.data.tags["owner"].split(":")[1]
    assert launcher_pid not in {r.data.tags["owner"].split(":")[1] for r in jobs}  # run by Ray's workers


def test_resume_completes_a_killed_ray_sweep(tmp_path: Path, ray_cluster: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = ["-m", "seed=range(8)", "model=manual", "steps=20000", "hydra/launcher=ray",
             f"hydra.launcher.ray.init.address={ray_cluster}"]
    done_before = killed_sweep(sweep, tmp_path, uri, finished=2)
    assert 2 <= done_before < 8
    out = run_cli([*sweep, "resume=true"], tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr[-3000:]
    finished = job_runs(uri, "FINISHED")
    assert sorted(int(r.data.params["seed"]) for r in finished) == list(range(8))  # each exactly once
    (parent,) = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "sweep"]
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in finished} == {parent.info.run_id}
    assert not [r for r in all_runs(uri) if r.info.status == "RUNNING"]
