"""Batch size: the expected-loss recursion of SGD and heavy ball on streaming Gaussian rows against measurement,
the noise scale against a Monte Carlo estimate, the samples budget, the S(B) fit, and the batch_size_scaling
preset's report and parent metrics at a reduced grid."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from linreg_lab import contract as C
from linreg_lab import fitting, theory
from linreg_lab.data import basis, eigenvalues
from linreg_lab.describe import critical_batch_fit
from linreg_lab.findings import num
from tests.conftest import compose_config, run_cli, run_report

STREAM = ["data.streaming=true", "data.true_w=[]", "data.n_features=6", "data.true_b=0", "model=manual",
          "model.fit_intercept=false", "data.spectrum=condition", "data.condition_number=30", "noise=0.3",
          "steps=null", "target_rel=0.2", "device=cpu", "dtype=float64", "eval_spacing=log"]


@pytest.mark.parametrize("run", [["optimizer=sgd", "lr=0.05", "batch_size=4", "samples=6000"],
                                 ["optimizer=momentum", "lr=0.01", "batch_size=4", "samples=6000"],
                                 ["optimizer=sgd", "lr=0.15", "batch_size=32", "samples=20000", "data.basis=rotated"]])
def test_the_recursion_predicts_the_mean_loss_and_the_time_to_target(run: list[str]) -> None:
    """250 replicates: the measured mean training loss (each stream's whole) within 10% of the recursion's expected
    loss at every evaluation, and theory/steps_to_target within 15% of ttt/steps."""
    cfg = compose_config(*STREAM, *run, "replicates=250")
    data = fitting.load_data(cfg)
    fit = fitting.fit_gradient(cfg, data, torch.device("cpu"))
    scored, tags = fitting.score(cfg, data, fit)
    assert tags["theory"] == "exact"
    steps, measured = fit.histories[C.FULL_LOSS]
    lam = torch.from_numpy(eigenvalues(cfg.data))
    start = torch.from_numpy((fit.w_init - np.asarray(cfg.data.true_w)) @ basis(cfg.data))
    expected = np.array([loss for _, loss in theory.streaming_losses(
        lam, start.square().mean(0), cfg.lr, cfg.optimizer.momentum, cfg.batch_size, 0.09, 1.0, steps.tolist())])
    assert np.abs(measured / expected - 1).max() < 0.10
    assert scored[C.TTT_CENSORED] == 0
    assert scored[C.THEORY_STEPS_TO_TARGET] == pytest.approx(scored[C.TTT_STEPS], rel=0.15)


def test_the_noise_scale_is_the_per_sample_gradients_own() -> None:
    """B_simple = tr Cov(g) / |E g|^2 of per-sample gradients at the start, against 400000 sampled rows."""
    cfg = compose_config(*STREAM, "optimizer=sgd", "lr=0.05", "batch_size=4", "samples=400000", "replicates=1")
    data = fitting.load_data(cfg)
    fit = fitting.fit_gradient(cfg, data, torch.device("cpu"))
    X, y = data.X[0].numpy(), data.y[0].numpy()
    g = 2 * X * (X @ np.ravel(fit.w_init) - y)[:, None]  # per-sample gradients of (x.w - y)^2 at the start
    sampled = np.trace(np.cov(g.T)) / np.square(g.mean(0)).sum()
    assert fitting.score(cfg, data, fit)[0][C.THEORY_NOISE_SCALE] == pytest.approx(sampled, rel=0.05)


def test_a_samples_budget_gives_every_batch_size_the_same_rows() -> None:
    for batch in (1, 7, 64):
        cfg = compose_config(*STREAM, "optimizer=sgd", f"batch_size={batch}", "samples=1000", "replicates=2")
        assert cfg.steps == -(-1000 // batch) and fitting.load_data(cfg).X.shape[1] == cfg.steps * batch


def test_the_fit_recovers_a_scaling_law() -> None:
    """Steps exactly S_min (1 + B_noise / B) give back S_min and B_noise; a flat line gives B_noise = 0."""
    batch = np.array([1, 2, 4, 8, 16, 32, 64])
    assert critical_batch_fit(batch, 50 * (1 + 20 / batch)) == pytest.approx((50, 20))
    assert critical_batch_fit(batch, np.full(7, 30.0)) == pytest.approx((30, 0), abs=1e-9)
    assert all(np.isnan(critical_batch_fit(batch[:2], np.array([10.0, 5.0]))))


def test_the_preset_report_and_the_parents_scaling_metrics(tmp_path: Path) -> None:
    """A reduced grid of the preset: the parent's scaling/<optimizer>/* equal a weighted least-squares fit of the
    runs' own fewest steps (numpy, from runs.csv), the figures, the table and the findings."""
    sweep = run_cli(["-m", "experiment=batch_size_scaling", "batch_size=1,4,16,64", "optimizer=sgd,momentum",
                     "lr=0.016,0.062,0.25", "samples=16384", "replicates=8", "hydra/launcher=pool"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    report = run_report(tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    page = (tmp_path / "report" / "report.html").read_text()
    for png in ("batch-size_scaling.png", "best_rate_against_batch_size.png"):
        assert (tmp_path / "report" / png).stat().st_size > 10_000, png
    assert "<h2 id='batch-size-scaling'>Batch-size scaling</h2>" in page
    assert "Batch-size scaling: each optimizer at each batch size&#x27;s best rate (fewest steps to target)" in page
    runs = pd.read_csv(tmp_path / "report" / "runs.csv")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(runs["sweep_id"].iloc[0]).data.metrics
    ok = runs[(runs["status"] == "FINISHED") & (runs["outcome"] == "completed") & (runs[C.TTT_CENSORED] == 0)]
    for opt, g in ok.groupby("optimizer.name"):
        best = g.sort_values([C.TTT_STEPS, "lr"]).groupby("batch_size").first()
        B, S = best.index.to_numpy(float), best[C.TTT_STEPS].to_numpy(float)
        (a, b), *_ = np.linalg.lstsq(np.stack([1 / S, 1 / (B * S)], 1), np.ones_like(S), rcond=None)
        assert parent[C.SCALING_MIN_STEPS.format(optimizer=opt)] == pytest.approx(a, rel=1e-9)
        assert parent[C.SCALING_CRITICAL_BATCH.format(optimizer=opt)] == pytest.approx(b / a, rel=1e-9)
        assert html.escape(f"{opt}: critical batch size {num(b / a)} (fitted B_noise)") in page
    assert "The gradient noise scale at the start, B_simple =" in page
    assert "Theory&#x27;s fewest steps over the same rates" in page
    assert "Each optimizer at its best learning rate" not in page
