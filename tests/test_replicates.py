"""Replicates and the bias/variance maths, checked against separate runs and textbook formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from linreg_lab import fitting
from linreg_lab.data import Dataset, batch_indices
from linreg_lab.models import build_model, init_params
from linreg_lab.train import train
from tests.conftest import compose_config, run_scored

LR = {"sgd": 0.05, "momentum": 0.02, "rmsprop": 0.01, "adam": 0.05}


@pytest.mark.parametrize("optimizer", list(LR))
@pytest.mark.parametrize("model", ["linear", "scratch", "manual"])
def test_batched_replicates_equal_separate_runs(model: str, optimizer: str) -> None:
    R = 4
    cfg = compose_config(f"model={model}", f"optimizer={optimizer}", f"lr={LR[optimizer]}", "steps=200",
                         f"replicates={R}", "dtype=float64", "noise=0.5", "device=cpu")
    data = fitting.load_data(cfg)
    w0, b0 = init_params(cfg.model, 2, fitting.seeds(cfg, "init", cfg.init_seed), torch.float64)
    idx = batch_indices(data.X.shape[1], cfg.batch_size, cfg.steps, False, fitting.seeds(cfg, "order", cfg.order_seed))
    together = train(build_model(w0, b0, cfg.model, cfg.lr, cfg.optimizer), data, idx, cfg.steps, cfg.eval_every)
    assert len({tuple(data.X[r, 0].tolist()) for r in range(R)}) == R  # each replicate drew its own data
    for r in range(R):
        alone_data = Dataset(data.X[r:r + 1], data.y[r:r + 1], data.X_test, data.y_test)
        model_r = build_model(w0[r:r + 1], b0[r:r + 1], cfg.model, cfg.lr, cfg.optimizer)
        alone = train(model_r, alone_data, idx[:, r:r + 1], cfg.steps, cfg.eval_every)
        assert np.allclose(together.train_loss[:, r], alone.train_loss[:, 0], atol=1e-6, rtol=0)
        assert torch.allclose(together.w[r], alone.w[0], atol=1e-6) and abs(float(together.b[r] - alone.b[0])) < 1e-6


def test_replicate_over_redraws_only_the_named_stream() -> None:
    cfg = compose_config("replicates=3", "replicate_over=[order]", "steps=50", "device=cpu")
    data = fitting.load_data(cfg)
    assert torch.equal(data.X[0], data.X[1]) and torch.equal(data.X[1], data.X[2])  # same data draw
    assert fitting.seeds(cfg, "init", cfg.init_seed) == [cfg.init_seed] * 3
    orders = fitting.seeds(cfg, "order", cfg.order_seed)
    assert len(set(orders)) == 3 and orders[0] == cfg.order_seed  # replicate 0 is the plain run


def test_decomposition_identities_hold() -> None:
    m = run_scored("replicates=50", "noise=0.5", "batch_size=5", "lr=0.05", "steps=300", "dtype=float64")
    for p in ("w", "b"):
        assert m[f"est/{p}_mse"] == pytest.approx(m[f"est/{p}_bias2"] + m[f"est/{p}_var"], rel=1e-9)
        assert m[f"est/{p}_var"] > 0
        # unbiased: bias^2 = |mean - truth|^2 - var / R may fall below 0 when the bias is within noise
        assert m[f"est/{p}_bias2"] > -3 * m[f"est/{p}_bias2_se"]
    assert m["pred/noise"] == pytest.approx(0.25)
    expected = m["pred/bias2"] + m["pred/var"] + m["pred/noise"]
    # one noisy label per test point: test_mse matches its expectation up to sampling noise of ~1000 labels
    assert m["pred/test_mse"] == pytest.approx(expected, rel=0.15)


def test_least_squares_variance_matches_theory() -> None:
    # Closed form over R = 2000 redrawn data sets: OLS is unbiased, so Var(w_hat) = E_X[sigma^2 tr((A^T A)^-1)_ww].
    # The sample variance of 2000 replicates has relative standard error sqrt(2 / 2000) ~ 3%; allow 4 of them.
    m = run_scored("model=closed_form", "replicates=2000", "noise=1.0", "data.n_train=50", "dtype=float64")
    assert m["est/w_var"] == pytest.approx(m["theory/w_var"], rel=0.13)
    assert m["est/b_var"] == pytest.approx(m["theory/b_var"], rel=0.13)
    assert m["est/w_bias2"] < 0.05 * m["est/w_var"]  # unbiased: the mean is within noise of the truth


def test_ridge_raises_bias_and_lowers_variance_monotonically() -> None:
    # Fixed design (only the noise redrawn): Var(w_hat | X) = sigma^2 S (S + l)^-2 per eigen-direction, which
    # falls with l, while the shrinkage bias l (S + l)^-1 theta grows. With a random design the spread of the
    # bias across designs adds variance that can rise with l, so the textbook claim is tested where it holds.
    grid = [0.0, 0.01, 0.1, 1.0, 10.0]
    runs = [run_scored("model=closed_form", "replicates=300", "noise=1.0", "data.n_train=30", "dtype=float64",
                       "data.fixed_design=true", f"model.weight_decay={wd}") for wd in grid]
    bias2 = [m["est/w_bias2"] for m in runs]
    var = [m["est/w_var"] for m in runs]
    assert all(a < b for a, b in zip(bias2[1:], bias2[2:])) and bias2[-1] > 10 * bias2[0]
    assert all(a > b for a, b in zip(var, var[1:]))


def test_gradient_descent_with_weight_decay_lands_on_the_ridge_solution() -> None:
    common = ["noise=0.5", "batch_size=full", "dtype=float64", "data.n_train=200"]
    ridge = run_scored("model=closed_form", "model.weight_decay=0.5", *common)
    gd = run_scored("optimizer=sgd", "optimizer.weight_decay=0.5", "lr=0.3", "steps=3000", *common)
    assert gd["w/0"] == pytest.approx(ridge["w/0"], abs=1e-6) and gd["b"] == pytest.approx(ridge["b"], abs=1e-6)


def test_theory_bound_tells_expected_divergence_apart() -> None:
    cfg_args = ["batch_size=full", "steps=3000"]  # float32: growth by 1.2x a step overflows to inf
    base = run_scored(*cfg_args)
    lr_max = base["theory/lr_max"]
    cfg = compose_config(*cfg_args, f"lr={1.2 * lr_max}", "device=cpu")
    data = fitting.load_data(cfg)
    fit = fitting.fit_gradient(cfg, data, torch.device("cpu"))
    assert fit.diverged_step is not None and fitting.score(cfg, data, fit)[1]["stability"] == "diverged_as_predicted"
    cfg = compose_config(*cfg_args, f"lr={0.9 * lr_max}", "device=cpu")
    data = fitting.load_data(cfg)
    fit = fitting.fit_gradient(cfg, data, torch.device("cpu"))
    assert fit.diverged_step is None and fitting.score(cfg, data, fit)[1]["stability"] == "stable_as_predicted"


def test_time_to_target_and_censoring() -> None:
    fast = run_scored("batch_size=full", "lr=0.3", "steps=500")
    assert fast["ttt/censored"] == 0 and 0 < fast["ttt/steps"] < 500
    assert fast["ttt/samples"] == fast["ttt/steps"] * 1000
    slow = run_scored("batch_size=full", "lr=1e-4", "steps=100")
    assert slow["ttt/censored"] == 1 and slow["ttt/steps"] == 100  # censored at the budget, not dropped


def test_some_replicates_diverging_leave_the_others_scored() -> None:
    # lr at the median of the replicates' bounds 2/lambda_max (numpy's eigenvalues of the mse Hessian 2 A^T A / n):
    # replicates whose random design is stiffer diverge, the rest converge; theory/lr_max is the smallest bound
    base = compose_config("batch_size=full", "steps=10", "replicates=40", "data.n_train=20", "device=cpu")
    A = np.concatenate([fitting.load_data(base).X.double().numpy(), np.ones((40, 20, 1))], -1)
    bounds = [2 / np.linalg.eigvalsh(2 * a.T @ a / 20).max() for a in A]
    assert run_scored("batch_size=full", "steps=10", "replicates=40", "data.n_train=20")["theory/lr_max"] == \
        pytest.approx(min(bounds), rel=1e-9)
    cfg = compose_config("batch_size=full", "steps=2000", "replicates=40", "data.n_train=20",
                         f"lr={np.median(bounds)}", "device=cpu")
    data = fitting.load_data(cfg)
    fit = fitting.fit_gradient(cfg, data, torch.device("cpu"))
    m, _ = fitting.score(cfg, data, fit)
    assert 0 < fit.finals["diverged_fraction"] < 1
    assert 0 < m["est/finite_replicates"] < 40 and np.isfinite(m["est/w_var"])
    assert np.isfinite(fit.histories["train/loss"][1]).all()


def test_loss_band_is_numpys_percentile_of_the_replicates() -> None:
    cfg = compose_config("replicates=8", "steps=1000", "device=cpu", "lr=0.3", "batch_size=2")
    data = fitting.load_data(cfg)
    fit = fitting.fit_gradient(cfg, data, torch.device("cpu"))
    for q in (10, 90):
        steps, band = fit.histories[f"train/loss_p{q}"]
        assert len(steps) <= 202 and steps[0] == 1 and steps[-1] == 1000  # thinned, first and last kept
        assert np.allclose(band, np.nanpercentile(fit.curves[steps - 1], q, axis=1), rtol=1e-12, atol=0)
