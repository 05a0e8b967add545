"""hydra/launcher=pool: the basic launcher's results from forked workers, and its failures and signals."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from linreg_lab import curves
from tests.conftest import (
    CRASHING_STEPS,
    LONG_JOB,
    all_runs,
    job_runs,
    run_cli,
    small_files,
    start_cli,
    wait_for,
)

POOL = ["hydra/launcher=pool", "hydra.launcher.n_jobs=2"]
SWEEP = ["-m", "optimizer=sgd,momentum,rmsprop,adam", "lr=0.1,0.01", "steps=200"]


def pid(run) -> str:
    return run.data.tags["owner"].rsplit(":", 2)[1]


def untimed(run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items() if not k.startswith(("time/", "ttt/seconds"))}


def test_pool_runs_the_jobs_of_the_basic_launcher_in_two_forked_workers(tmp_path: Path) -> None:
    results = {}
    for name, extra in (("basic", []), ("pool", POOL)):
        uri = f"sqlite:///{tmp_path / name}.db"
        out = run_cli([*SWEEP, *extra], tmp_path, {"MLFLOW_TRACKING_URI": uri})
        assert out.returncode == 0, out.stderr[-3000:]
        results[name] = uri
    basic = {r.info.run_name: r for r in job_runs(results["basic"])}
    pooled = {r.info.run_name: r for r in job_runs(results["pool"])}
    assert len(basic) == 8 and set(pooled) == set(basic)
    client = MlflowClient(results["pool"])
    for name, run in pooled.items():
        # workers run one torch thread, the basic launcher two: float64 sums may differ in the last digits
        assert run.info.status == "FINISHED", name
        assert untimed(run) == pytest.approx(untimed(basic[name]), rel=1e-9, abs=1e-15), name
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert sorted(steps) == curves.logged(np.arange(1, 201), np.ones(200))[0].tolist(), name
    (parent,) = [r for r in all_runs(results["pool"]) if r.data.tags["run_kind"] == "sweep"]
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in pooled.values()} == {parent.info.run_id}
    workers = {pid(r) for r in pooled.values()}
    assert len(workers) == 2 and pid(parent) not in workers  # two processes, neither the launching one


def test_pool_crashing_job_fails_alone(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_cli(["-m", f"steps=100,{CRASHING_STEPS},50,60", *POOL],
                  tmp_path, {"MLFLOW_TRACKING_URI": uri}, preexec_fn=small_files)
    assert out.returncode != 0
    runs = {r.data.params["steps"]: r for r in job_runs(uri)}
    assert {runs[s].info.status for s in ("100", "50", "60")} == {"FINISHED"}
    crashed = runs[CRASHING_STEPS]
    assert crashed.info.status == "FAILED" and "OSError" in crashed.data.tags["error"]
    assert "not finished:" in out.stdout and f"steps={CRASHING_STEPS}" in out.stdout
    (parent,) = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "sweep"]
    assert parent.info.status == "FAILED"
    assert not [r for r in all_runs(uri) if r.info.status == "RUNNING"]


def test_pool_sigterm_ends_every_workers_run_killed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start_cli(["-m", "seed=0,1,2,3", *LONG_JOB, *POOL], tmp_path, uri)
    wait_for(lambda: len(job_runs(uri, "RUNNING")) == 2, proc)
    time.sleep(3.0)  # both workers inside their training loops
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    runs = job_runs(uri)
    assert len(runs) == 2  # seeds 2 and 3 never started
    client = MlflowClient(uri)
    for run in runs:
        assert run.info.status == "KILLED" and "interrupted" in run.data.tags["error"]
        assert len(client.get_metric_history(run.info.run_id, "train/loss")) > 10
    (parent,) = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "sweep"]
    assert parent.info.status == "KILLED"


def test_pool_workers_must_be_positive_or_minus_one(tmp_path: Path) -> None:
    out = run_cli(["-m", "seed=0,1", "hydra/launcher=pool", "hydra.launcher.n_jobs=0"], tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == ("linreg_lab: error: hydra.launcher.n_jobs=0 is not allowed; allowed: a number of "
                                  "workers >= 1, or -1 for one per CPU")
    assert not (tmp_path / "mlflow.db").exists()


def test_pool_worker_killed_fails_its_job_and_the_others_finish(tmp_path: Path) -> None:
    """A free worker takes the next job: one worker runs the long job 0, the other jobs 1, 2 and 3
    (a static split would give job 2 to job 0's worker); SIGKILL job 0's worker inside it."""
    import os

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start_cli(["-m", "steps=3000000,100,200,300", "model=manual", "batch_size=full", *POOL], tmp_path, uri)
    steps = lambda run: re.search(r"\bsteps=(\d+)", run.data.tags["overrides"])[1]  # noqa: E731  (no params yet)
    long_job = lambda: [r for r in job_runs(uri, "RUNNING") if steps(r) == "3000000"]  # noqa: E731
    wait_for(lambda: bool(long_job()), proc)
    os.kill(int(pid(long_job()[0])), signal.SIGKILL)
    assert proc.wait(timeout=120) != 0
    stderr = proc.stderr.read()
    runs = {steps(r): r for r in job_runs(uri)}
    assert set(runs) == {"3000000", "100", "200", "300"}
    assert {runs[s].info.status for s in ("100", "200", "300")} == {"FINISHED"}
    killed = runs["3000000"]
    (other,) = {pid(runs[s]) for s in ("100", "200", "300")}  # one worker ran all three
    assert other != pid(killed)
    assert killed.info.status == "FAILED" and "orphaned" in killed.data.tags["error"], stderr[-3000:]
    (parent,) = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "sweep"]
    assert parent.info.status == "FAILED"
    assert not [r for r in all_runs(uri) if r.info.status == "RUNNING"]


def test_a_dead_process_owns_nothing_even_before_its_parent_collects_it() -> None:
    """owner_alive: a live process owns its runs; a process that exited is gone, also while it is still a zombie
    (its parent has not collected its exit status yet), and a pid reused by another process is not the owner."""
    import os

    from linreg_lab.lifecycle import owner_alive, owner_id

    assert owner_alive(owner_id())
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, owner_id().encode())
        os._exit(0)
    os.close(write)
    owner = os.read(read, 200).decode()
    os.close(read)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not collected
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not owner_alive(owner)
    os.waitpid(child, 0)
    assert not owner_alive(owner)
    host, pid, start = owner_id().rsplit(":", 2)
    assert not owner_alive(f"{host}:{pid}:{int(start) + 1}")  # same pid, another start: another process


def test_pool_job_folders_hold_the_basic_launchers_configs(tmp_path: Path) -> None:
    """The workers run Hydra's run_job steps without its copies (pool.run_job_here): each job's .hydra/
    files are the basic launcher's, but for the launcher's own keys; also with hydra.job.chdir=true
    (each job in its own folder, the launching process's folder back afterwards)."""
    launcher_keys = ("_target_: ", "n_jobs: ", "- hydra/launcher=", "- hydra.launcher.", "hydra/launcher: ")
    written = {}
    for name, extra in (("basic", []), ("pool", POOL)):
        folder = tmp_path / name
        folder.mkdir()
        out = run_cli(["-m", "optimizer=sgd,adam", "lr=0.1,0.01", "steps=20", "hydra.output_subdir=.hydra",
                       "hydra.sweep.dir=multirun", "hydra.job.chdir=true", *extra], folder, {"MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"})
        assert out.returncode == 0, out.stderr[-3000:]
        written[name] = {str(f.relative_to(folder / "multirun")): f.read_text().replace(str(folder), "")
                         for f in sorted((folder / "multirun").glob("*/.hydra/*.yaml"))}
    assert len(written["basic"]) == 12 and set(written["pool"]) == set(written["basic"])
    for path, text in written["basic"].items():
        ours, theirs = ([line for line in t.splitlines() if not line.strip().startswith(launcher_keys)]
                        for t in (written["pool"][path], text))
        assert ours == theirs, path
    assert "output_dir: /multirun/3" in written["pool"]["3/.hydra/hydra.yaml"]


def test_a_forked_worker_never_uses_a_connection_its_parent_opened(tmp_path: Path) -> None:
    """MLflow's engine pools SQLite connections; the pool launcher forks workers from a process that holds
    some. A forked process drops each inherited connection when its pool hands it one (SQLAlchemy's recipe
    for os.fork) and writes through its own; the parent's connection stays open and usable, the store whole."""
    import multiprocessing
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from linreg_lab import tracking

    opened: list[int] = []  # ids of the DBAPI connections this (the parent) process opens

    def record(dbapi_connection, _record) -> None:
        opened.append(id(dbapi_connection))

    event.listen(Engine, "connect", record)
    try:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        tracking.create_store(uri)
        client, exp_id = tracking.open_experiment(uri, "fork")
        first = tracking.start_run(client, exp_id, "parent-first", {})
        assert opened, "the parent opened no connection: nothing to test"
        ctx = multiprocessing.get_context("fork")
        found = ctx.Queue()

        def child() -> None:
            run_id = tracking.start_run(client, exp_id, "child", {})
            tracking.end_run(client, run_id, "FINISHED")
            found.put([id(c) for c in tracking.dropped_connections])

        proc = ctx.Process(target=child)
        proc.start()
        dropped = found.get(timeout=60)
        proc.join(60)
        assert proc.exitcode == 0
        assert dropped and set(dropped) <= set(opened), (dropped, opened)  # the child met the parent's, used none
        tracking.end_run(client, first, "FINISHED")  # the parent's own pooled connection still works
    finally:
        event.remove(Engine, "connect", record)
    statuses = {r.info.run_name: r.info.status for r in MlflowClient(uri).search_runs([exp_id])}
    assert statuses == {"parent-first": "FINISHED", "child": "FINISHED"}
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_new_store_keeps_a_write_ahead_log_and_leaves_none_behind(tmp_path: Path) -> None:
    """A store the harness makes is in SQLite's WAL mode (its parallel writers and readers do not wait for
    each other's commits); once the sweep's processes have ended, its log is folded back: no -wal or -shm
    file is left, every job is FINISHED and the file is whole."""
    import sqlite3

    out = run_cli([*SWEEP, *POOL], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("mlflow.db-")]
    assert sorted(r.info.status for r in job_runs(f"sqlite:///{db}")) == ["FINISHED"] * 8


def test_a_command_and_a_report_close_their_connections_before_skipping_the_final_collections(tmp_path: Path) -> None:
    """A command ends by closing its store connections, then freezing its heap (lifecycle.skip_final_collections):
    the interpreter's last collections, which would have closed connections caught in reference cycles, no longer
    run. A single run in this process (basic launcher) and a report over it each leave no -wal or -shm file; a
    connection still open at exit would have left both."""
    import sqlite3

    out = run_cli(["steps=50"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("mlflow.db-")]
    report = subprocess.run([sys.executable, "-m", "linreg_lab.report", "--all"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("mlflow.db-")]
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()


def test_closed_connections_leave_the_store_usable(tmp_path: Path) -> None:
    """tracking.close_connections closes this process's idle connections (the log is folded back: no -wal file),
    and the same client still reads and writes afterwards: its pool opens a new connection."""
    from linreg_lab import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.create_store(uri)
    client, exp_id = tracking.open_experiment(uri, "closing")
    first = tracking.start_run(client, exp_id, "first", {})
    assert (tmp_path / "mlflow.db-wal").exists()  # an open connection in WAL mode keeps its log
    tracking.close_connections()
    assert not (tmp_path / "mlflow.db-wal").exists()
    tracking.end_run(client, first, "FINISHED")
    second = tracking.start_run(client, exp_id, "second", {})
    tracking.end_run(client, second, "FINISHED")
    statuses = {r.info.run_name: r.info.status for r in client.search_runs([exp_id])}
    assert statuses == {"first": "FINISHED", "second": "FINISHED"}
    tracking.close_connections()
