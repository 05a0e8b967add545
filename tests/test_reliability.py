"""Sweeps that survive divergence, crashes, signals, SIGKILL, resumes and parallel writers.

Every test drives the real CLI in a subprocess against a real SQLite store and, where
the issue says so, really kills it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from linreg_lab import contract, curves, tracking
from tests.conftest import (
    CRASHING_STEPS,
    LONG_JOB,
    all_runs,
    job_runs,
    killed_sweep,
    run_cli,
    run_in_process,
    small_files,
    start_cli,
    wait_for,
)


def training_started(uri: str) -> bool:
    """A RUNNING job run: the job is past set-up (its run is made right before its data) and inside its loop soon."""
    return bool(job_runs(uri, "RUNNING"))


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
    full = curves.load(Path(client.download_artifacts(bad.info.run_id, contract.CURVES_NPZ, str(tmp_path))))
    assert np.isfinite(full["train/loss"][1]).sum() == bad.data.metrics["diverged_step"] - 1  # every finite step
    logged = curves.logged(*full["train/loss"])[0].tolist()
    assert [m.step for m in client.get_metric_history(bad.info.run_id, "train/loss")] == logged
    assert good.data.metrics["diverged"] == 0 and good.data.tags["outcome"] == "completed"


def test_a_crashing_job_fails_alone_and_the_sweep_exits_nonzero(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # its replicates.npz cannot be written in a command whose files may not pass 20 MB: a real OSError mid-job
    out = run_cli(["-m", f"steps=100,{CRASHING_STEPS},50"],
                  tmp_path, {"MLFLOW_TRACKING_URI": uri}, preexec_fn=small_files)
    assert out.returncode != 0
    runs = {r.data.params["steps"]: r for r in job_runs(uri)}
    assert runs["100"].info.status == runs["50"].info.status == "FINISHED"  # the others still ran
    crashed = runs[CRASHING_STEPS]
    assert crashed.info.status == "FAILED" and "OSError" in crashed.data.tags["error"]
    assert "not finished:" in out.stdout and f"steps={CRASHING_STEPS}" in out.stdout  # the summary names it
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
    assert len(history) > curves.LOGGED_POINTS // 2 and history[-1].step > 1000  # the steps done before the signal
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
    done_before = killed_sweep(sweep, tmp_path, uri, finished=3)
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


def test_a_new_store_is_made_whole_beside_the_work_even_through_ctrl_c(tmp_path: Path) -> None:
    """start_creating_store makes a new SQLite store in a forked process that ignores SIGINT;
    open_experiment waits for it. Existing stores and servers are left alone."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    process = tracking.start_creating_store(uri)
    assert process is not None
    assert tracking.start_creating_store(uri) is None  # already on its way
    os.kill(process.pid, signal.SIGINT)
    client, exp_id = tracking.open_experiment(uri, "made-beside")
    assert process.exitcode == 0  # finished its work: the Ctrl-C did not stop it halfway
    assert client.get_experiment(exp_id).name == "made-beside"
    assert tracking.start_creating_store(uri) is None  # opened here now
    assert tracking.start_creating_store(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}") is None
    assert tracking.start_creating_store("http://127.0.0.1:5000") is None
    assert not (tmp_path / "no-such-dir").exists()


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
        logged = curves.logged(np.arange(1, 301), np.ones(300))[0].tolist()
        assert sorted(steps) == logged, run.info.run_name  # complete, no duplicates
        evaluations = client.get_metric_history(run.info.run_id, "test/loss")
        assert len(evaluations) == len(curves.thinned(101, curves.SIDE_POINTS))


def test_no_active_run_leaks_between_jobs(store: str) -> None:
    import mlflow


    run_in_process("steps=10", "seed=1")
    assert mlflow.active_run() is None
    run_in_process("steps=10", "seed=2")
    assert mlflow.active_run() is None
    runs = all_runs(store)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert "mlflow.parentRunId" not in runs[0].data.tags and "mlflow.parentRunId" not in runs[1].data.tags


def test_mlflow_holds_the_logged_points_and_curves_npz_every_point(store: str, tmp_path: Path) -> None:
    """MLflow holds each curve's first, last and at most LOGGED_POINTS points (curves.logged of the artifact);
    curves.npz holds every step; the report's reader gives either."""
    run_in_process("steps=3000", "noise=0.5")
    (run,) = job_runs(store)
    client, run_id = MlflowClient(store), run.info.run_id
    full = curves.load(Path(client.download_artifacts(run_id, contract.CURVES_NPZ, str(tmp_path))))
    steps, values = full["train/loss"]
    assert steps.tolist() == list(range(1, 3001)) and np.isfinite(values).all()
    for key in ("train/loss", "train/loss_p10", "test/loss", "train/full_loss"):
        logged = client.get_metric_history(run_id, key)
        expected = curves.logged(*full[key], curves.points_for(key))
        assert [m.step for m in logged] == expected[0].tolist() and [m.value for m in logged] == expected[1].tolist()
        assert len(logged) <= curves.points_for(key) and logged[0].step == full[key][0][0], key
        assert logged[-1].step == full[key][0][-1], key
    assert 0.6 * curves.LOGGED_POINTS < len(client.get_metric_history(run_id, "train/loss")) <= curves.LOGGED_POINTS
    assert 0.6 * curves.SIDE_POINTS < len(client.get_metric_history(run_id, "test/loss")) <= curves.SIDE_POINTS
    assert curves.SIDE_POINTS < curves.LOGGED_POINTS  # the training loss is the one MLflow holds finely
    row = (run_id, run.info.artifact_uri)
    held = {k: curves.logged(*v, curves.points_for(k)) for k, v in full.items()}
    for resolution, expected in (("full", full), ("logged", held)):
        got = tracking.metric_histories(client, [row], ["train/loss", "test/loss", "nothing/such"], resolution)
        assert sorted(got) == sorted((run_id, k, s, v) for k in ("train/loss", "test/loss")
                                     for s, v in zip(expected[k][0].tolist(), expected[k][1].tolist()))
    names = sorted(a.path for a in client.list_artifacts(run_id))
    assert names == ["config.yaml", "curve.csv", "curves.npz", "data.npz", "replicates.npz"]
    with pytest.raises(ValueError, match="allowed are 'logged' and 'full'"):
        tracking.metric_histories(client, [row], ["train/loss"], "all")


def test_thinned_keeps_first_and_last_and_is_dense_early() -> None:
    assert curves.thinned(5).tolist() == [0, 1, 2, 3, 4] and curves.thinned(0).tolist() == []
    for count in (201, 1000, 10**6):
        idx = curves.thinned(count)
        assert idx[0] == 0 and idx[-1] == count - 1 and len(idx) <= curves.LOGGED_POINTS
        assert (np.diff(idx) > 0).all() and len(idx) > curves.LOGGED_POINTS * 0.6
    early = curves.thinned(10**6)
    assert {1, 2, 3}.issubset(early.tolist()) and (early < 100).sum() >= 10  # log-spaced: the fast early fall is kept


def test_logged_drops_non_finite_points_before_thinning() -> None:
    steps, values = curves.logged([1, 2, 3, 4], [0.5, np.nan, np.inf, 0.25])
    assert steps.tolist() == [1, 4] and values.tolist() == [0.5, 0.25]


def test_curve_csv_writes_what_np_savetxt_writes(tmp_path: Path) -> None:
    from linreg_lab.job import write_curve

    gen = np.random.default_rng(0)
    mean = (gen.standard_normal(500) * 10.0 ** gen.integers(-8, 8, 500)).astype(np.float32)
    mean[[3, 5, 7, 9]] = [np.nan, np.inf, -np.inf, -0.0]
    write_curve(tmp_path / "ours.csv", mean)
    np.savetxt(tmp_path / "numpy.csv", np.c_[np.arange(1, 501), mean], delimiter=",", header="step,train_loss",
               comments="", fmt=["%d", "%.9g"])
    assert (tmp_path / "ours.csv").read_text() == (tmp_path / "numpy.csv").read_text()


def test_histories_of_a_run_without_curves_npz_come_from_mlflow(store: str) -> None:
    """A run logged by hand (no curves.npz) is read through get_metric_history; NaN comes back as NaN."""
    import math

    client = MlflowClient(store)
    run = client.create_run(client.create_experiment("nan"))
    for step, value in enumerate([0.5, float("nan"), 0.25], 1):
        client.log_metric(run.info.run_id, "train/loss_p90", value, step=step)
    got = tracking.metric_histories(client, [(run.info.run_id, run.info.artifact_uri)], ["train/loss_p90"])
    assert [s for _, _, s, _ in got] == [1, 2, 3] and math.isnan(got[1][3])
    assert [v for _, _, _, v in got][::2] == [0.5, 0.25]


def test_run_listing_equals_search_runs(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """child_runs lists what mlflow.search_runs lists for the same runs: every shared column, NaN where
    MLflow has NaN, deleted runs left out, nested runs by their parent."""
    import mlflow

    for seed in range(3):
        run_in_process("steps=50", f"seed={seed}")
    client, exp_id = tracking.open_experiment(store, "linreg_lab")
    first = job_runs(store)[0].info.run_id
    client.log_metric(first, "odd/nan", float("nan"))
    client.delete_run(job_runs(store)[1].info.run_id)
    client.set_tag(first, "mlflow.parentRunId", "p1")
    rows = tracking.child_runs(client, exp_id, None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    frame = mlflow.search_runs([exp_id], "tags.run_kind = 'job'")
    assert [r["run_id"] for r in rows] == frame["run_id"].tolist() and len(rows) == 2
    for row, (_, theirs) in zip(rows, frame.iterrows()):
        shared = [c for c in row if c in frame.columns]
        assert len(shared) > 60 and row["artifact_uri"] == theirs["artifact_uri"]
        for col in shared:
            if col.startswith(("params.", "metrics.", "tags.")):
                mine, want = row[col], theirs[col]
                assert (mine != mine and want != want) or mine == want, col
    assert [r["metrics.odd/nan"] != r["metrics.odd/nan"] for r in rows if r["run_id"] == first] == [True]
    assert [r["run_id"] for r in tracking.child_runs(client, exp_id, "p1")] == [first]
