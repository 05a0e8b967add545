"""Sweeps that survive divergence, crashes, signals, SIGKILL, resumes and parallel writers.

Every test drives the real CLI in a subprocess against a real SQLite store and, where
the issue says so, really kills it.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from linreg_lab import store_sql, tracking
from tests.conftest import LONG_JOB, all_runs, job_runs, run_cli, run_in_process, start_cli, wait_for


def training_started(uri: str) -> bool:
    """A RUNNING job whose params are logged: the job is past set-up and inside its loop soon."""
    return any(r.data.params for r in job_runs(uri, "RUNNING"))


def test_divergence_is_a_result_and_the_sweep_goes_on(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_cli(["-m", "lr=0.1,100", "steps=2000", "replicates=1"], tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr[-3000:]
    by_lr = {r.data.params["lr"]: r for r in job_runs(uri)}
    bad, good = by_lr["100.0"], by_lr["0.1"]
    client = MlflowClient(uri)
    X = np.load(client.download_artifacts(bad.info.run_id, "data.npz", str(tmp_path)))["X"]
    A = np.c_[X, np.ones(len(X))]
    max_stable_lr = 2 / np.linalg.eigvalsh(2 * A.T @ A / len(A))[-1]  # 2 / lambda_max of the MSE Hessian
    assert 100 > 10 * max_stable_lr
    assert bad.info.status == "FINISHED" and bad.data.tags["outcome"] == "diverged"
    assert bad.data.metrics["diverged"] == 1 and 1 <= bad.data.metrics["diverged_step"] < 2000
    for key in ("train/loss", "test/loss", "train/full_loss"):
        values = [m.value for m in client.get_metric_history(bad.info.run_id, key)]
        assert np.isfinite(values).all() and (not values or max(np.abs(values)) < 1e300), key
    assert len(client.get_metric_history(bad.info.run_id, "train/loss")) == bad.data.metrics["diverged_step"] - 1
    assert good.data.metrics["diverged"] == 0 and good.data.tags["outcome"] == "completed"


def test_a_crashing_job_fails_alone_and_the_sweep_exits_nonzero(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # 1e11 steps of a stream of 1000 samples a step cannot be allocated: a real RuntimeError mid-job
    out = run_cli(["-m", "steps=100,100000000000,50", "data=streaming_1d", "batch_size=1000", "lr=1e-4"],
                  tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert out.returncode != 0
    runs = {r.data.params["steps"]: r for r in job_runs(uri)}
    assert runs["100"].info.status == runs["50"].info.status == "FINISHED"  # the others still ran
    crashed = runs["100000000000"]
    assert crashed.info.status == "FAILED" and "RuntimeError" in crashed.data.tags["error"]
    assert "not finished:" in out.stdout and "steps=100000000000" in out.stdout  # the summary names it
    (parent,) = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "sweep"]
    assert parent.info.status == "FAILED"
    assert not [r for r in all_runs(uri) if r.info.status == "RUNNING"]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_ends_the_run_killed_with_what_was_logged(tmp_path: Path, sig: int, code: int) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start_cli(["-m", "seed=0,1,2", *LONG_JOB], tmp_path, uri)
    wait_for(lambda: training_started(uri), proc)
    time.sleep(3.0)  # inside the training loop
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == code
    (run,) = job_runs(uri)  # the sweep stopped: jobs 2 and 3 never started
    assert run.info.status == "KILLED" and "interrupted" in run.data.tags["error"]
    history = MlflowClient(uri).get_metric_history(run.info.run_id, "train/loss")
    assert len(history) > 100  # the steps done before the signal were flushed
    (parent,) = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "sweep"]
    assert parent.info.status == "KILLED"


def test_sigkill_orphan_is_marked_failed_by_the_next_command(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start_cli(LONG_JOB, tmp_path, uri)
    wait_for(lambda: training_started(uri), proc)
    proc.kill()
    proc.wait(timeout=30)
    (orphan,) = job_runs(uri)
    assert orphan.info.status == "RUNNING"  # nothing could run at SIGKILL
    out = run_cli(["steps=5"], tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr[-2000:]
    orphan = MlflowClient(uri).get_run(orphan.info.run_id)
    assert orphan.info.status == "FAILED" and "orphaned" in orphan.data.tags["error"]


def test_resume_after_sigkill_runs_each_job_exactly_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = ["-m", "seed=range(12)", "model=manual", "steps=30000"]
    proc = start_cli(sweep, tmp_path, uri)
    wait_for(lambda: len(job_runs(uri, "FINISHED")) >= 3, proc, timeout=300)
    proc.kill()
    proc.wait(timeout=30)
    done_before = len(job_runs(uri, "FINISHED"))
    assert 3 <= done_before < 12
    out = run_cli([*sweep, "resume=true"], tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("skipped (resume=true)") == done_before
    finished = job_runs(uri, "FINISHED")
    assert len(finished) == 12
    assert sorted(int(r.data.params["seed"]) for r in finished) == list(range(12))  # none duplicated
    assert len({r.data.tags["config_hash"] for r in finished}) == 12
    (parent,) = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "sweep"]
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in finished} == {parent.info.run_id}
    assert not [r for r in all_runs(uri) if r.info.status == "RUNNING"]


def test_parallel_writers_on_a_fresh_store_lose_nothing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    (tmp_path / "fresh").mkdir()
    out = run_cli(["-m", "seed=range(32)", "steps=300", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4"],
                  tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "database is locked" not in out.stderr
    finished = job_runs(uri, "FINISHED")
    assert len(finished) == 32 and len({r.data.params["seed"] for r in finished}) == 32
    client = MlflowClient(uri)
    for run in finished:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert sorted(steps) == list(range(1, 301)), run.info.run_name  # complete, no duplicates
        assert len(client.get_metric_history(run.info.run_id, "test/loss")) == 101


def test_no_active_run_leaks_between_jobs(store: str) -> None:
    import mlflow


    run_in_process("steps=10", "seed=1")
    assert mlflow.active_run() is None
    run_in_process("steps=10", "seed=2")
    assert mlflow.active_run() is None
    runs = all_runs(store)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert "mlflow.parentRunId" not in runs[0].data.tags and "mlflow.parentRunId" not in runs[1].data.tags


def test_direct_store_write_equals_mlflow_api(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-transaction path into the SQL store writes what MLflow's own API writes for the same job."""
    run_in_process("steps=300", "noise=0.5")
    with monkeypatch.context() as patched:
        patched.setattr(store_sql, "database_store", lambda client: None)  # MLflow's API all the way
        run_in_process("steps=300", "noise=0.5")
    client = MlflowClient(store)
    fast, api = sorted(job_runs(store), key=lambda r: r.info.start_time)
    assert fast.info.status == api.info.status == "FINISHED" and fast.info.end_time and api.info.end_time
    assert fast.info.run_name == api.info.run_name and fast.info.artifact_uri.endswith(fast.info.run_id + "/artifacts")
    assert fast.data.params == api.data.params and len(fast.data.params) > 20
    assert fast.data.tags == api.data.tags
    assert set(fast.data.metrics) == set(api.data.metrics)
    untimed = [k for k in fast.data.metrics if not k.startswith(("time/", "ttt/seconds"))]
    assert {k: fast.data.metrics[k] for k in untimed} == {k: api.data.metrics[k] for k in untimed}
    for key in ("train/loss", "test/loss", "w_error/l2"):
        ours, theirs = ([(m.step, m.value) for m in client.get_metric_history(r.info.run_id, key)]
                        for r in (fast, api))
        assert sorted(ours) == sorted(theirs) and ours, key
    ids, keys = [fast.info.run_id, api.info.run_id], ["train/loss", "test/loss", "nothing/such"]
    bulk = tracking.metric_histories(client, ids, keys)  # the report's one query per 500 runs
    assert sorted(bulk) == sorted((i, k, m.step, m.value) for i in ids for k in keys
                                  for m in client.get_metric_history(i, k)) and len(bulk) == 2 * (300 + 101)
    listed = [sorted(a.path for a in client.list_artifacts(r.info.run_id)) for r in (fast, api)]
    assert listed[0] == listed[1] == ["config.yaml", "curve.csv", "data.npz", "replicates.npz"]


def test_history_complete_when_the_direct_write_fails(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MLflow whose tables the direct write cannot fill: it rolls back and every point arrives via log_batch."""
    from sqlalchemy.exc import OperationalError

    def broken(*args, **kwargs):
        raise OperationalError("INSERT INTO metrics", {}, Exception("no such table: metrics"))

    monkeypatch.setattr(store_sql, "insert_rows", broken)
    run_in_process("steps=300")
    (run,) = job_runs(store)
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "completed"
    steps = [m.step for m in MlflowClient(store).get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(steps) == list(range(1, 301))  # complete and nothing twice: the failed transaction left nothing


def test_curve_csv_writes_what_np_savetxt_writes(tmp_path: Path) -> None:
    from linreg_lab.job import write_curve

    gen = np.random.default_rng(0)
    mean = (gen.standard_normal(500) * 10.0 ** gen.integers(-8, 8, 500)).astype(np.float32)
    mean[[3, 5, 7, 9]] = [np.nan, np.inf, -np.inf, -0.0]
    write_curve(tmp_path / "ours.csv", mean)
    np.savetxt(tmp_path / "numpy.csv", np.c_[np.arange(1, 501), mean], delimiter=",", header="step,train_loss",
               comments="", fmt=["%d", "%.9g"])
    assert (tmp_path / "ours.csv").read_text() == (tmp_path / "numpy.csv").read_text()


def test_bulk_history_reads_nan_as_nan(store: str) -> None:
    """MLflow stores a NaN point as 0 with is_nan set; the report's bulk read gives NaN back, as MLflow does."""
    import math

    client = MlflowClient(store)
    run_id = client.create_run(client.create_experiment("nan")).info.run_id
    for step, value in enumerate([0.5, float("nan"), 0.25], 1):
        client.log_metric(run_id, "train/loss_p90", value, step=step)
    bulk = tracking.metric_histories(client, [run_id], ["train/loss_p90"])
    api = [m.value for m in client.get_metric_history(run_id, "train/loss_p90")]
    assert [s for _, _, s, _ in bulk] == [1, 2, 3] and math.isnan(bulk[1][3]) and math.isnan(api[1])
    assert [v for _, _, _, v in bulk][::2] == api[::2] == [0.5, 0.25]


def test_new_sqlite_store_from_the_template_equals_mlflows_own(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The first new store is MLflow's (and becomes the template); the next is a copy of the template, with
    the same schema and migration version, its own Default experiment, and room for runs."""
    import sqlite3

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    made = {}
    for name in ("mlflows", "copied"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)  # MLflow's default artifact root is ./mlruns
        uri = f"sqlite:///{tmp_path / name / 'mlflow.db'}"
        assert store_sql.template_file().is_file() == (name == "copied")
        made[name] = (uri, tracking.connect(uri).get_experiment("0"))
    uri, default = made["copied"]
    assert default.name == "Default" and default.artifact_location == str(tmp_path / "copied" / "mlruns" / "0")
    query = {"schema": "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name",
             "version": "SELECT version_num FROM alembic_version",
             "experiments": "SELECT experiment_id, name FROM experiments"}
    tables = [{k: sqlite3.connect(tmp_path / n / "mlflow.db").execute(q).fetchall() for k, q in query.items()}
              for n in made]
    assert tables[0] == tables[1] and len(tables[0]["schema"]) > 50 and tables[0]["experiments"] == [(0, "Default")]
    client, exp_id = tracking.open_experiment(uri, "template")
    run_id = tracking.start_run(client, exp_id, "r", {"run_kind": "job"}, params={"lr": 0.1})
    tracking.log_metrics(client, run_id, {"train/loss": (np.arange(1, 4), np.array([3.0, 2.0, 1.0]))}, {},
                         status="FINISHED")
    assert [m.value for m in client.get_metric_history(run_id, "train/loss")] == [3.0, 2.0, 1.0]
    kept = (tmp_path / "copied" / "mlflow.db").read_bytes()
    assert store_sql.seed_sqlite(uri) is None and (tmp_path / "copied" / "mlflow.db").read_bytes() == kept


def test_new_sqlite_store_without_a_writable_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cache").write_text("a file, not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    client = tracking.connect(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_experiment("0").name == "Default" and not store_sql.template_file().exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_direct_run_listing_equals_search_runs(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """child_runs read straight from the tables lists what MLflow's search_runs lists, in the same order."""
    for seed in range(3):
        run_in_process("steps=50", f"seed={seed}")
    client, exp_id = tracking.open_experiment(store, "linreg_lab")
    first = job_runs(store)[0].info.run_id
    client.log_metric(first, "odd/nan", float("nan"))
    client.delete_run(job_runs(store)[1].info.run_id)  # deleted runs are not listed
    client.set_tag(first, "mlflow.parentRunId", "p1")
    direct = tracking.child_runs(client, exp_id, None)
    with monkeypatch.context() as patched:
        patched.setattr(store_sql, "database_store", lambda client: None)
        api = tracking.child_runs(client, exp_id, None)
        api_nested = tracking.child_runs(client, exp_id, "p1")
    assert len(direct) == 2 and [r["run_id"] for r in direct] == [r["run_id"] for r in api]
    for ours, theirs in zip(direct, api):
        assert set(ours) == set(theirs) and len(ours) > 60
        nan = [k for k, v in theirs.items() if v != v]
        assert nan == [k for k, v in ours.items() if v != v]
        assert {k: v for k, v in ours.items() if k not in nan} == {k: v for k, v in theirs.items() if k not in nan}
    assert [r["metrics.odd/nan"] != r["metrics.odd/nan"] for r in direct if r["run_id"] == first] == [True]
    nested = tracking.child_runs(client, exp_id, "p1")
    assert [r["run_id"] for r in nested] == [r["run_id"] for r in api_nested] == [first]


@pytest.mark.parametrize("driver", [False, True], ids=["sqlalchemy-error", "driver-error"])
def test_listing_and_histories_fall_back_to_mlflow_when_the_direct_read_fails(
        store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, driver: bool) -> None:
    """A database error, as SQLAlchemy raises it or as the driver does (store_sql.histories fetches
    through the driver), sends the read to MLflow's API."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    run_in_process("steps=40")
    client, exp_id = tracking.open_experiment(store, "linreg_lab")
    expected = tracking.child_runs(client, exp_id, None), tracking.metric_histories(
        client, [job_runs(store)[0].info.run_id], ["train/loss"])

    def broken(*args, **kwargs):
        if driver:
            raise sqlite3.OperationalError("no such column: runs.name")
        raise OperationalError("SELECT", {}, Exception("no such column: runs.name"))

    monkeypatch.setattr(store_sql, "runs_tagged", broken)
    monkeypatch.setattr(store_sql, "histories", broken)
    got = tracking.child_runs(client, exp_id, None), tracking.metric_histories(
        client, [job_runs(store)[0].info.run_id], ["train/loss"])
    assert [r["run_id"] for r in got[0]] == [r["run_id"] for r in expected[0]] and len(got[1]) == 40
    assert sorted(got[1]) == sorted(expected[1])
    assert capsys.readouterr().err.count("direct store read failed (OperationalError: ") == 1  # once a process
