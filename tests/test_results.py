"""linreg_lab.results against MLflow's own reading of the same store, and against the runs' artifacts."""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from linreg_lab import contract, curves, results, tracking
from linreg_lab.tables import tidy_runs
from tests.conftest import run_cli

HUGE = 1e300


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two real sweeps in one store: 4 jobs of 8 replicates (SGD at lr=3 diverges), then 3 jobs of one
    replicate, one of which is deleted afterwards; one run gets a metric logged as +inf (MLflow keeps 1.8e308)."""
    folder = tmp_path_factory.mktemp("results")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri}
    for sweep in (["-m", "optimizer=sgd,adam", "lr=0.1,3.0", "steps=300"],
                  ["-m", "replicates=1", "seed=0,1,2", "steps=100"]):
        out = run_cli(sweep, folder, env)
        assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("linreg_lab").experiment_id
    parents = tracking.sweeps(client, exp_id)  # newest first
    second = tracking.child_runs(client, exp_id, parents[0][0])
    deleted = second[0]["run_id"]
    client.delete_run(deleted)
    first = tracking.child_runs(client, exp_id, parents[1][0])
    client.log_metric(first[0]["run_id"], "extra/inf", math.inf)
    return {"uri": uri, "folder": folder, "exp_id": exp_id, "first": parents[1][0], "second": parents[0][0],
            "deleted": deleted, "inf_run": first[0]["run_id"]}


def search_runs(uri: str, exp_id: str) -> pd.DataFrame:
    """MLflow's own reading: mlflow.search_runs (all pages) of the job runs."""
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs([exp_id], "tags.run_kind = 'job'", output_format="pandas")
    finally:
        mlflow.set_tracking_uri(None)


def text(v: object) -> str:
    """A param as text; one a run lacks is None in ours, None or NaN in mlflow.search_runs'."""
    return "None" if not isinstance(v, str | list | dict) and pd.isna(v) else str(v)


def test_runs_equal_mlflow_search_runs_column_by_column(swept: dict) -> None:
    ours = results.runs(None, tracking_uri=swept["uri"]).set_index("run_id")
    theirs = search_runs(swept["uri"], swept["exp_id"]).set_index("run_id")
    assert len(ours) == 6 and swept["deleted"] not in ours.index  # deleted runs excluded
    assert set(ours.index) == set(theirs.index)
    theirs = theirs.loc[ours.index]
    for col in ("status", "artifact_uri", "experiment_id"):
        assert ours[col].tolist() == theirs[col].tolist(), col
    for col in ("start_time", "end_time"):
        assert (ours[col] == theirs[col]).all(), col
    compared = {"params": 0, "metrics": 0, "tags": 0}
    for col in theirs.columns:
        kind, _, key = col.partition(".")
        if kind == "metrics":
            want = theirs[col].astype(float).where(lambda v: v.abs() < HUGE)  # MLflow's stand-in for inf
            np.testing.assert_array_equal(ours[key].to_numpy(float), want.to_numpy(), err_msg=col)  # NaN == NaN
        elif kind == "params":
            got, want = [text(v) for v in ours[key]], [text(v) for v in theirs[col]]
            assert got == want, col
        elif kind == "tags":
            mine = {"tags.outcome": "outcome", "tags.mlflow.parentRunId": "sweep_id"}.get(col, col)
            assert ours[mine].fillna("").tolist() == theirs[col].fillna("").tolist(), col
        else:
            continue
        compared[kind] += 1
    assert compared["params"] > 40 and compared["metrics"] > 40 and compared["tags"] > 10
    inf_run = swept["inf_run"]
    assert theirs.loc[inf_run, "metrics.extra/inf"] > HUGE and math.isnan(ours.loc[inf_run, "extra/inf"])
    assert ours["extra/inf"].isna().all()  # never logged elsewhere: NaN, never 0


def test_runs_have_typed_config_columns_and_pick_their_sweep(swept: dict) -> None:
    first = results.runs(swept["first"], tracking_uri=swept["uri"])
    latest = results.runs("latest", tracking_uri=swept["uri"])
    assert len(first) == 4 and set(first["sweep_id"]) == {swept["first"]}
    assert len(latest) == 2 and set(latest["sweep_id"]) == {swept["second"]}
    assert first["lr"].dtype == np.float64 and sorted(first["lr"]) == [0.1, 0.1, 3.0, 3.0]
    assert first["seed"].dtype == np.int64 and first["replicates"].tolist() == [8] * 4
    assert first["model.fit_intercept"].dtype == bool and first["model.fit_intercept"].all()
    assert all(v == [2.0, -3.4] for v in first["data.true_w"])  # lists are lists
    assert set(first["optimizer.name"]) == {"sgd", "adam"} and first["batch_size"].tolist() == [10] * 4
    assert first["data.n_features"].isna().all()  # null in the config
    assert set(first["outcome"]) == {"completed", "diverged"}
    diverged = first[first["outcome"] == "diverged"]
    assert (diverged["optimizer.name"] == "sgd").all() and (diverged["lr"] == 3.0).all()
    assert list(first.columns[:len(results.INFO)]) == results.INFO
    assert results.config_columns(first)[:2] == ["data.name", "data.true_w"] and "lr" in results.config_columns(first)
    assert first["start_time"].is_monotonic_increasing


def test_more_than_1000_runs_are_all_read(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, exp_id = tracking.open_experiment(uri, "linreg_lab")
    parent = tracking.start_run(client, exp_id, "sweep", {"run_kind": "sweep"})
    for i in range(1005):
        run_id = tracking.start_run(client, exp_id, f"job-{i}", {"run_kind": "job"}, parent, params={"seed": i})
        tracking.end_run(client, run_id, "FINISHED")
    runs = results.runs("latest", tracking_uri=uri)
    assert len(runs) == 1005 == len(search_runs(uri, exp_id))
    assert sorted(runs["seed"]) == list(range(1005)) and runs["seed"].dtype == np.int64
    assert len(tidy_runs(runs)) == 1005  # and the report's layer keeps them all


def test_full_curves_are_the_artifact_and_logged_ones_what_mlflow_holds(swept: dict) -> None:
    runs = results.runs(None, tracking_uri=swept["uri"])
    client = MlflowClient(swept["uri"])
    keys = ["train/loss", "test/loss"]
    full = results.curves(runs, keys, "full", columns=["optimizer.name", "lr"])
    logged = results.curves(runs, keys, "logged")
    assert list(full.columns) == ["run_id", "metric", "step", "value", "optimizer.name", "lr"]
    assert full["step"].dtype == np.int64 and full["value"].dtype == np.float64
    for run in runs.itertuples():
        saved = curves.load(Path(run.artifact_uri) / contract.CURVES_NPZ, keys)
        for key in keys:
            got = full[(full["run_id"] == run.run_id) & (full["metric"] == key)]
            np.testing.assert_array_equal(got["step"], saved[key][0])
            np.testing.assert_array_equal(got["value"], saved[key][1])
            held = sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, key))
            mine = logged[(logged["run_id"] == run.run_id) & (logged["metric"] == key)]
            assert list(zip(mine["step"], mine["value"])) == held, (run.run_name, key)
    per_run = full[full["metric"] == "train/loss"].groupby("run_id").size()
    completed = runs.set_index("run_id")["outcome"] == "completed"
    assert set(per_run[completed[completed].index]) == {300, 100}  # every step; MLflow holds fewer
    assert logged.groupby(["run_id", "metric"]).size().max() <= curves.LOGGED_POINTS


def test_replicates_are_replicates_npz_in_long_form(swept: dict) -> None:
    runs = results.runs(None, tracking_uri=swept["uri"])
    reps = results.replicates(runs, columns=["optimizer.name", "lr"])
    many = runs[runs["replicates"] > 1]
    assert len(reps) == 8 * len(many) == 32 and set(reps["run_id"]) == set(many["run_id"])  # R = 1 runs left out
    for run in many.itertuples():
        with np.load(Path(run.artifact_uri) / "replicates.npz") as npz:
            mine = reps[reps["run_id"] == run.run_id].sort_values("replicate")
            np.testing.assert_array_equal(mine[["w/0", "w/1"]].to_numpy(), npz["w"])
            np.testing.assert_array_equal(mine["b"], npz["b"])
            np.testing.assert_array_equal(mine["final_loss"], npz["train_loss"][-1])
            assert (mine["diverged_step"].notna() == (npz["diverged_at"] > 0)).all()
        finite = mine["final_loss_pct"].dropna()
        if len(finite) == 8:
            assert sorted(finite) == pytest.approx([100 * i / 7 for i in range(8)])
    assert reps.loc[reps["lr"] == 3.0].query("`optimizer.name` == 'sgd'")["diverged_step"].notna().all()


def test_a_missing_store_experiment_or_sweep_is_a_one_line_error(swept: dict, tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    with pytest.raises(ValueError, match=r"^no store at .*none\.db.*SQLite files in .*: none$"):
        results.runs(tracking_uri=f"sqlite:///{missing}")
    assert not missing.exists()  # reading never creates a store
    with pytest.raises(ValueError, match=r"experiment 'nope' is not in .*; it has: 'Default', 'linreg_lab'$"):
        results.runs(experiment="nope", tracking_uri=swept["uri"])
    with pytest.raises(ValueError, match=rf"'abc' is not a sweep .* newest first: {swept['second']} \(sweep .*\); "
                                         rf"{swept['first']} \("):
        results.runs("abc", tracking_uri=swept["uri"])
    MlflowClient(swept["uri"]).create_experiment("empty")
    with pytest.raises(ValueError, match="experiment 'empty' in .* has no sweep"):
        results.runs("latest", experiment="empty", tracking_uri=swept["uri"])
    assert results.runs(None, experiment="empty", tracking_uri=swept["uri"]).empty
    runs = results.runs(None, tracking_uri=swept["uri"])
    with pytest.raises(ValueError, match="resolution='all': allowed are 'logged' and 'full'"):
        results.curves(runs, resolution="all")
    with pytest.raises(ValueError, match=r"columns \['optimizer'\] are not in the runs frame; it has: run_id, "):
        results.curves(runs, columns=["optimizer"])
    for err in ("abc", "nope"):
        assert "\n" not in str(pytest.raises(ValueError, results.runs, err, tracking_uri=swept["uri"]).value)


def test_the_store_is_found_as_the_cli_finds_it(swept: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(swept["folder"])  # sqlite:///mlflow.db here
    assert len(results.runs()) == 6
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", swept["uri"])  # the environment's store
    runs = results.runs("latest")
    assert len(runs) == 2 and len(results.curves(runs)) > 0  # curves() reads the store runs() read
    with pytest.raises(ValueError, match="no store at"):
        results.runs(tracking_uri="sqlite:///elsewhere.db")  # an explicit URI wins over the environment
    assert not (tmp_path / "elsewhere.db").exists()
    assert isinstance(runs, pd.DataFrame)
