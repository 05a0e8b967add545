"""Double descent: the measured errors of least squares, the minimum-norm interpolant and optimal ridge on
isotropic Gaussian designs against their published exact expectations (linreg_lab.theory's isotropic section), the
decomposition given the design against its closed form, gradient descent from zero against the
minimum-norm fit (numpy's pseudo-inverse), and the preset's report at a reduced grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from linreg_lab import contract as C
from linreg_lab import fitting
from linreg_lab.findings import num
from tests.conftest import compose_config, run_cli, run_report, run_scored

STUDY = ["experiment=double_descent", "replicates=400"]


@pytest.mark.parametrize("p", [20, 32, 48, 80])
def test_least_squares_and_min_norm_match_the_exact_expectation(p: int) -> None:
    """|p - n| >= 8, 400 replicates redrawing design and noise: E||w_hat - w||^2 and its parts given the design
    within 15% of Belkin-Hsu-Xu / Hastie et al.'s finite-sample formulas."""
    got = run_scored(*STUDY, "estimator=min_norm", f"data.n_features={p}")
    assert got[C.EST_W_MSE] == pytest.approx(got[C.THEORY_GAUSS_W_MSE], rel=0.15)
    assert got[C.EST_W_VAR_COND] == pytest.approx(got[C.THEORY_GAUSS_W_VAR_COND], rel=0.15)
    if p < 40:  # least squares is unbiased given the design
        assert got[C.THEORY_GAUSS_W_BIAS2_COND] == 0 and abs(got[C.EST_W_BIAS2_COND]) < 1e-12
    else:  # the part of w outside the row space, ||w||^2 (1 - n/p)
        assert got[C.EST_W_BIAS2_COND] == pytest.approx(got[C.THEORY_GAUSS_W_BIAS2_COND], rel=0.15)
        assert got[C.THEORY_GAUSS_W_BIAS2_COND] == pytest.approx(1 - 40 / p)
    assert got[C.EST_W_BIAS2_COND] + got[C.EST_W_VAR_COND] == pytest.approx(got[C.EST_W_MSE])


def test_the_expectation_is_not_claimed_where_it_is_infinite() -> None:
    got = run_scored(*STUDY[:1], "replicates=20", "estimator=min_norm", "data.n_features=41")
    assert C.THEORY_GAUSS_W_MSE not in got and C.EST_W_MSE in got


def test_optimal_ridge_uses_the_optimal_penalty_and_meets_its_limit() -> None:
    """At p/n = 2 the penalty is 2 c gamma sigma^2 / ||w||^2 (Dobriban & Wager), and the measured error is within
    15% of the Marchenko-Pastur limit; it is also below the minimum-norm fit's on the same draws."""
    ridge = run_scored(*STUDY, "estimator=ridge_optimal", "data.n_features=80")
    plain = run_scored(*STUDY, "estimator=min_norm", "data.n_features=80")
    assert ridge[C.THEORY_GAUSS_RIDGE_WEIGHT_DECAY] == pytest.approx(2 * 2 * 0.5**2 / 1.0)
    assert ridge[C.EST_W_MSE] == pytest.approx(ridge[C.THEORY_GAUSS_RIDGE_W_MSE], rel=0.15)
    assert ridge[C.EST_W_MSE] < plain[C.EST_W_MSE]


def test_drawn_weights_are_one_w_for_every_job_and_replicate() -> None:
    a = compose_config("data.true_w=[]", "data.n_features=7", "data.w_norm=2.5", "seed=1")
    b = compose_config("data.true_w=[]", "data.n_features=7", "data.w_norm=2.5", "seed=2", "replicates=3")
    c = compose_config("data.true_w=[]", "data.n_features=7", "data.w_norm=2.5", "data.w_seed=1")
    assert len(a.data.true_w) == 7 and np.linalg.norm(a.data.true_w) == pytest.approx(2.5)
    assert a.data.true_w == b.data.true_w != c.data.true_w
    data = fitting.load_data(b)
    assert data.y.shape == (3, 1000)  # the replicates share w: their labels come from the same true_w


def test_gradient_descent_from_zero_converges_to_the_minimum_norm_interpolant() -> None:
    """p = 60 > n = 20, float64: GD from w = 0 ends within 1e-6 of numpy's pseudo-inverse solution (the
    minimum-norm interpolant), which is the "implicit regularization" the report's study relies on."""
    cfg = compose_config("experiment=double_descent", "estimator=gd_1000", "data.n_features=60", "data.n_train=20",
                         "replicates=3", "steps=3000", "lr=0.1", "dtype=float64", "device=cpu")
    data = fitting.load_data(cfg)
    fit = fitting.fit_gradient(cfg, data, torch.device("cpu"))
    for r in range(3):
        X, y = data.X[r].numpy(), data.y[r].numpy()
        expected = np.linalg.pinv(X) @ y
        assert np.abs(fit.w[r].numpy() - expected).max() < 1e-6
        assert np.abs(X @ expected - y).max() < 1e-8  # it interpolates


def test_the_preset_report_draws_the_curve_and_says_what_it_found(tmp_path: Path) -> None:
    """A reduced grid of the preset in a subprocess, then the report: the figure, its section and the findings."""
    sweep = run_cli(["-m", "experiment=double_descent", "data.n_features=20,36,44,80",
                     "estimator=min_norm,ridge_optimal,gd_100", "replicates=50", "hydra/launcher=pool"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    report = run_report(tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    page = (tmp_path / "report" / "report.html").read_text()
    assert (tmp_path / "report" / "double_descent.png").stat().st_size > 10_000
    assert "<h2 id='double-descent'>Double descent</h2>" in page
    runs = pd.read_csv(tmp_path / "report" / "runs.csv")
    min_norm = runs[(runs["model.name"] == "closed_form") & (runs["model.optimal_ridge"] != True)]  # noqa: E712
    peak = min_norm.loc[min_norm[C.PRED_TEST_MSE].idxmax()]
    assert (f"Minimum-norm least squares: the test MSE peaks at p/n = {num(peak['data.n_features'] / 40)} "
            f"(p = {peak['data.n_features']}, n = 40) at {num(peak[C.PRED_TEST_MSE])}") in page
    assert "Ridge at the optimal penalty: its highest test MSE is" in page
    assert "Gradient descent from 0, 100 steps: its highest test MSE is" in page
    assert "is best at lr" not in page  # no optimizer is tuned in this study: no best-rate findings
    assert "Double descent: each series at each p" in page and "Each optimizer at its best learning rate" not in page
