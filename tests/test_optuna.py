"""Any Hydra sweeper: Hydra's own Optuna sweeper (hydra-optuna-sweeper, the `optuna` extra) tunes a rate and a
momentum over interval and log-interval spaces toward a named objective, on the pool launcher: labels from the
sweeper's own count, one parent, the winner on the parent and in the report, bad input before any work, a
diverged or failed trial as a failed trial."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from linreg_lab import contract as C
from tests.conftest import all_runs, run_cli, run_report

TUNE = ["-m", "hydra/sweeper=optuna", "optimizer=momentum", "lr=tag(log, interval(0.001, 1.0))",
        "optimizer.momentum=interval(0.5, 0.95)", "objective=pred/test_mse", "hydra.sweeper.n_trials=8",
        "hydra.sweeper.sampler.seed=1", "steps=200", "replicates=4", "hydra/launcher=pool"]


def test_an_optuna_search_nests_labels_and_names_its_winner(tmp_path: Path) -> None:
    out = run_cli(TUNE, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    labels = re.findall(r"\[(\d+)/(\d+)\]", text)
    assert {n for _, n in labels} == {"8"} and sorted({int(k) for k, _ in labels}) == list(range(1, 9))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = all_runs(uri)
    parents = [r for r in runs if r.data.tags[C.RUN_KIND] == "sweep"]
    jobs = [r for r in runs if r.data.tags[C.RUN_KIND] == "job"]
    assert len(parents) == 1 and len(jobs) == 8
    parent = parents[0]
    assert all(j.data.tags[C.PARENT_RUN] == parent.info.run_id for j in jobs)
    assert len({j.data.params["lr"] for j in jobs}) == 8  # continuous: every trial its own rate
    assert all(0.001 <= float(j.data.params["lr"]) <= 1.0 and 0.5 <= float(j.data.params["optimizer.momentum"])
               <= 0.95 for j in jobs)
    best = min(jobs, key=lambda j: j.data.metrics[C.PRED_TEST_MSE])
    assert parent.data.tags[C.BEST_RUN_ID] == best.info.run_id
    assert parent.data.metrics[C.BEST_OBJECTIVE.format(objective=C.PRED_TEST_MSE)] == \
        best.data.metrics[C.PRED_TEST_MSE]
    assert best.info.run_name in parent.data.tags[C.NOTE] and "best by objective pred/test_mse" in text
    client = MlflowClient(uri)
    results = Path(client.download_artifacts(parent.info.run_id, C.OPTIMIZATION_RESULTS, str(tmp_path)))
    optuna = yaml.safe_load(results.read_text())
    assert optuna["best_value"] == pytest.approx(best.data.metrics[C.PRED_TEST_MSE], rel=1e-12)
    assert optuna["best_params"]["lr"] == pytest.approx(float(best.data.params["lr"]))
    report = run_report(tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    page = (tmp_path / "report" / "report.html").read_text()
    assert f"<dt>best run</dt><dd>{best.info.run_name} (pred/test_mse = " in page
    assert "The rates come from the sweeper&#x27;s own search" in page
    assert len(pd.read_csv(tmp_path / "report" / "runs.csv")) == 8


def test_a_bad_search_fails_in_one_line_before_any_work(tmp_path: Path) -> None:
    for args, message in ((["objective=loss"], "objective='loss' is not a metric a job records; allowed: w_error/l2"),
                          (["lr=-1"], "lr must be a finite number > 0, got -1.0"),
                          (["optimizer=choice(sgd,adagrad)"], "optimizer=adagrad is not known")):
        out = run_cli([*TUNE, *args], tmp_path)
        assert out.returncode == 1 and out.stderr.strip().count("\n") == 0, out.stderr[-2000:]
        assert message in out.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_diverged_and_failed_trials_are_failed_trials_not_a_crash(tmp_path: Path) -> None:
    """Rates up to 1e4 diverge (no finite objective); a trial whose drawn x_std is negative fails its check as its
    job starts (no run): both are failed trials, and the search runs all its trials and names a winner."""
    out = run_cli(["-m", "hydra/sweeper=optuna", "lr=tag(log, interval(0.01, 10000))", "batch_size=full",
                   "data.n_train=50", "optimizer=sgd", "hydra.sweeper.n_trials=10", "hydra.sweeper.sampler.seed=3",
                   "steps=100", "replicates=2", "noise=choice(0.1, 0.2)", "data.x_std=interval(-1.0, 2.0)"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = [r for r in all_runs(f"sqlite:///{tmp_path / 'mlflow.db'}") if r.data.tags[C.RUN_KIND] == "job"]
    bad = re.findall(r"\[(\d+)/10\] linreg_lab: error: ConfigError: data.x_std must be > 0", out.stderr)
    assert bad and len(jobs) == 10 - len(bad) and any(j.data.tags[C.OUTCOME] == "diverged" for j in jobs)
    assert "Traceback" not in out.stderr and "best by objective w_error/l2" in out.stdout
