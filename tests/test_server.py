"""Beyond one machine: a real `mlflow server` (SQLite and PostgreSQL backends), an outage in the
middle of a sweep, the submitit launcher, and what must never reach the store."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from linreg_lab import curves
from tests.conftest import ROOT, all_runs, job_runs, run_cli
from tests.servers import mlflow_server, postgres_database


def listening_addresses(port: int) -> set[str]:
    """IPv4 and IPv6 addresses with a socket listening on `port`, read from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    found.add(".".join(str(b) for b in raw[::-1]))
                else:
                    found.add("::" if raw == bytes(16) else "::1" if raw[-4:] == bytes.fromhex("01000000") else
                              raw.hex())
    return found


def test_sweep_over_http_reads_back_through_the_rest_api(tmp_path: Path) -> None:
    with mlflow_server(tmp_path, f"sqlite:///{tmp_path / 'server.db'}") as server:
        addresses = listening_addresses(server.port)
        assert addresses and addresses <= {"127.0.0.1"}, addresses  # loopback only
        out = run_cli(["-m", "optimizer=sgd,adam", "lr=0.1,0.01", "steps=300"], tmp_path,
                      {"MLFLOW_TRACKING_URI": server.url})
        assert out.returncode == 0, out.stderr[-3000:]
        assert not (tmp_path / "mlflow.db").exists()  # everything went over HTTP
        exp = server.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name="linreg_lab")["experiment"]
        runs = server.post("/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]],
                                                            "max_results": 100})["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        (parent,) = [r for r, t in zip(runs, tags) if t["run_kind"] == "sweep"]
        jobs = [(r, t) for r, t in zip(runs, tags) if t["run_kind"] == "job"]
        assert len(jobs) == 4
        for run, t in jobs:
            run_id = run["info"]["run_id"]
            assert run["info"]["status"] == "FINISHED" and t["mlflow.parentRunId"] == parent["info"]["run_id"]
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            assert params["steps"] == "300" and params["optimizer.name"] in ("sgd", "adam")
            # max_results: without it, an MLflow 3.10 server answers with an empty first page and a page token
            history = server.get("/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key="train/loss",
                                 max_results=1000)
            logged = curves.logged(list(range(1, 301)), [1.0] * 300)[0].tolist()
            assert sorted(m["step"] for m in history["metrics"]) == logged
            files = {f["path"] for f in server.get("/api/2.0/mlflow/artifacts/list", run_id=run_id)["files"]}
            assert {"config.yaml", "data.npz", "curve.csv"} <= files
            with urllib.request.urlopen(
                    f"{server.url}/get-artifact?path=curve.csv&run_uuid={run_id}", timeout=30) as r:
                assert len(r.read().decode().splitlines()) == 301  # header + every step
        report = subprocess.run([sys.executable, "-m", "linreg_lab.report", "--tracking-uri", server.url,
                                 "--out", str(tmp_path / "report")], capture_output=True, text=True, cwd=tmp_path)
        assert report.returncode == 0, report.stderr[-3000:]
        logged = {f["path"] for f in server.get("/api/2.0/mlflow/artifacts/list", run_id=parent["info"]["run_id"],
                                                path="report")["files"]}
        assert "report/report.html" in logged


def test_postgres_backed_server_takes_a_parallel_sweep(tmp_path: Path) -> None:
    with postgres_database() as db, mlflow_server(tmp_path, db) as server:
        out = run_cli(["-m", "seed=0,1,2,3", "steps=200", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                      tmp_path, {"MLFLOW_TRACKING_URI": server.url})
        assert out.returncode == 0, out.stderr[-3000:]
        jobs = job_runs(server.url)
        assert len(jobs) == 4 and all(r.info.status == "FINISHED" for r in jobs)
        client = MlflowClient(server.url)
        for run in jobs:
            assert len(client.get_metric_history(run.info.run_id, "train/loss")) == len(curves.thinned(200))
            evaluations = client.get_metric_history(run.info.run_id, "test/loss")
            assert len(evaluations) == len(curves.thinned(101, curves.SIDE_POINTS))


def test_server_outage_mid_sweep_loses_nothing(tmp_path: Path) -> None:
    with mlflow_server(tmp_path, f"sqlite:///{tmp_path / 'server.db'}") as server:
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
        env.pop("LINREG_LAB_PARENT_RUN_ID", None)
        proc = subprocess.Popen([sys.executable, "-m", "linreg_lab.run", "-m", "seed=range(6)", "model=manual",
                                 "steps=30000"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        client = MlflowClient(server.url)
        deadline = time.monotonic() + 300
        while not [r for r in job_runs(server.url) if r.info.status == "FINISHED"]:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.5)
        server.stop()  # ~20 s without a tracking server, jobs in flight
        time.sleep(20)
        server.start()
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        jobs = job_runs(server.url)
        assert len(jobs) == 6 and all(r.info.status == "FINISHED" for r in jobs)
        counts = {len(client.get_metric_history(r.info.run_id, "train/loss")) for r in jobs}
        assert counts == {len(curves.thinned(30000))}  # every job complete, nothing twice
        (parent,) = [r for r in all_runs(server.url) if r.data.tags["run_kind"] == "sweep"]
        assert parent.info.status == "FINISHED"


def test_submitit_local_runs_jobs_in_their_own_processes_and_resumes(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["-m", "seed=0,1,2", "steps=100", "hydra/launcher=submitit_local"]
    out = run_cli(args, tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = job_runs(uri)
    (parent,) = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "sweep"]
    assert len(jobs) == 3 and all(r.info.status == "FINISHED" for r in jobs)
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    pids = {r.data.tags["owner"].split(":")[1] for r in jobs} | {parent.data.tags["owner"].split(":")[1]}
    assert len(pids) == 4  # three job processes besides the launcher
    again = run_cli([*args, "resume=true"], tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(job_runs(uri)) == 3  # every job already FINISHED: nothing ran twice


def test_no_secret_from_the_environment_reaches_the_store(tmp_path: Path) -> None:
    secret = "s3cr3t-linreg-lab-7f9c2b"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri, "AWS_SECRET_ACCESS_KEY": secret, "MLFLOW_TRACKING_PASSWORD": secret,
           "LINREG_LAB_API_TOKEN": secret}
    out = run_cli(["-m", "lr=0.1,0.01", "steps=20"], tmp_path, env)
    assert out.returncode == 0, out.stderr[-3000:]
    for run in all_runs(uri):
        assert secret not in str(run.data.params) + str(run.data.tags)
    stored = [*tmp_path.glob("mlflow.db*"), *(p for p in (tmp_path / "mlruns").rglob("*") if p.is_file())]
    assert len(stored) > 5 and not [p for p in stored if secret.encode() in p.read_bytes()]


def test_server_script_refuses_a_public_host_without_allowed_hosts(tmp_path: Path) -> None:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "mlflow_server.sh"), "--host", "0.0.0.0"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--allowed-hosts" in out.stderr


def test_missing_launcher_plugin_is_a_one_line_error(tmp_path: Path) -> None:
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None:
        pytest.skip("the ray plugin is installed here")
    out = run_cli(["-m", "seed=0,1", "hydra/launcher=ray"], tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == ("linreg_lab: error: hydra/launcher=ray needs its Hydra plugin, which is not "
                                  "installed: pip install 'linreg_lab[ray]'")
