"""Ill-conditioned problems: features drawn with a chosen spectrum and basis against the covariance asked for,
theory's best rates against numpy's eigenvalues and the published formulas, theory/steps_to_target against
a step-by-step numpy simulation and against the measured ttt/steps, stop_at_target against a full run, and
the conditioning preset's report at a reduced grid."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from linreg_lab import contract as C
from linreg_lab import data as data_mod
from linreg_lab import fitting
from linreg_lab.findings import num
from tests.conftest import compose_config, run_cli, run_report, run_scored

SHAPED = ["data.true_w=[]", "data.n_features=6", "data.true_b=0", "model=manual", "model.fit_intercept=false",
          "batch_size=full", "data.n_train=300", "noise=0.01", "replicates=2", "eval_every=1", "device=cpu"]


@pytest.mark.parametrize("spectrum", [["data.spectrum=condition", "data.condition_number=100"],
                                      ["data.spectrum=power_law", "data.decay=1.5"],
                                      ["data.spectrum=list", "data.eigenvalues=[4,2,1,0.5,0.25,0.1]"]])
@pytest.mark.parametrize("basis", ["axes", "rotated"])
def test_drawn_features_have_the_configured_covariance(spectrum: list[str], basis: str) -> None:
    """n = 40000 rows, d = 6: every entry of the sample covariance S is within 5 standard errors of Sigma's, the
    standard error of a Gaussian sample covariance entry being sqrt((S_ii S_jj + S_ij^2) / n) (Anderson 2003,
    "An Introduction to Multivariate Statistical Analysis", 3.4); its eigenvalues are the spectrum asked for."""
    cfg = compose_config(*SHAPED, *spectrum, f"data.basis={basis}", "data.n_train=40000", "replicates=1")
    X = fitting.load_data(cfg).X[0].double().numpy()
    sigma = data_mod.covariance(cfg.data)
    n = len(X)
    S = X.T @ X / n  # the mean is 0
    bound = 5 * np.sqrt((np.outer(np.diag(sigma), np.diag(sigma)) + sigma**2) / n)
    assert (np.abs(S - sigma) <= bound).all(), np.abs(S - sigma) / bound
    expected = np.sort(data_mod.eigenvalues(cfg.data))
    assert np.linalg.eigvalsh(sigma) == pytest.approx(expected, rel=1e-9)
    if spectrum[0] == "data.spectrum=condition":
        assert expected[-1] / expected[0] == pytest.approx(100)


def test_isotropic_axes_reproduce_the_plain_gaussian_draws_exactly() -> None:
    """The default spectrum draws x = x_mean + x_std z with z torch's standard normals from the replicate's
    seed, before its noise: bit for bit what an isotropic recipe always drew."""
    cfg = compose_config("data.x_std=2.0", "data.x_mean=0.5", "replicates=1", "data.n_train=50")
    got = fitting.load_data(cfg).X[0]
    gen = torch.Generator().manual_seed(cfg.data_seed)
    assert torch.equal(got, 0.5 + 2.0 * torch.randn(50, 2, generator=gen))


def test_a_rotated_basis_is_orthogonal_and_one_for_every_replicate_and_job() -> None:
    """Each replicate's features are its isotropic draw z times diag(sqrt(lambda)) Q^T with one Q: undoing that
    recovers the isotropic draw of every replicate, in two jobs with different seeds and condition numbers."""
    for seed, kappa in ((0, 10), (5, 1000)):
        args = [*SHAPED, "data.spectrum=condition", f"data.condition_number={kappa}", "data.basis=rotated",
                f"seed={seed}", "replicates=3", "dtype=float64"]
        shaped = fitting.load_data(compose_config(*args))
        plain = fitting.load_data(compose_config(*SHAPED, f"seed={seed}", "replicates=3", "dtype=float64"))
        cfg = compose_config(*args)
        Q = data_mod.basis(cfg.data)
        assert np.abs(Q.T @ Q - np.eye(6)).max() < 1e-12 and np.abs(Q - np.eye(6)).max() > 0.1
        unrotated = shaped.X.numpy() @ Q / np.sqrt(data_mod.eigenvalues(cfg.data))
        assert np.abs(unrotated - plain.X.numpy()).max() < 1e-12
    assert np.array_equal(Q, data_mod.basis(compose_config(*SHAPED, "data.basis=rotated").data))
    assert not np.allclose(Q, data_mod.basis(compose_config(*SHAPED, "data.basis=rotated",
                                                            "data.basis_seed=1").data))


def test_best_rates_are_the_published_formulas_of_the_training_hessian() -> None:
    """theory/best_lr = 2/(L+mu), theory/polyak_* = Polyak's (1964) pair, L and mu numpy's extreme eigenvalues of
    the mse Hessian 2 X^T X / n over the replicates; theory_tuned runs at exactly those."""
    args = [*SHAPED, "data.spectrum=condition", "data.condition_number=100", "steps=50"]
    cfg = compose_config(*args)
    X = fitting.load_data(cfg).X.double().numpy()
    eig = np.concatenate([np.linalg.eigvalsh(2 * x.T @ x / len(x)) for x in X])
    L, mu = eig.max(), eig.min()
    got = run_scored(*args)
    assert got[C.THEORY_BEST_LR] == pytest.approx(2 / (L + mu), rel=1e-9)
    assert got[C.THEORY_BEST_CONTRACTION] == pytest.approx((L / mu - 1) / (L / mu + 1), rel=1e-9)
    q = (math.sqrt(L / mu) - 1) / (math.sqrt(L / mu) + 1)
    assert got[C.THEORY_POLYAK_LR] == pytest.approx(4 / (math.sqrt(L) + math.sqrt(mu)) ** 2, rel=1e-9)
    assert got[C.THEORY_POLYAK_MOMENTUM] == pytest.approx(q**2, rel=1e-9)
    assert got[C.THEORY_POLYAK_CONTRACTION] == pytest.approx(q, rel=1e-9)
    tuned = fitting.tuned(compose_config(*args, "optimizer=momentum", "theory_tuned=true"), fitting.load_data(cfg))
    assert tuned.lr == pytest.approx(4 / (math.sqrt(L) + math.sqrt(mu)) ** 2, rel=1e-9)
    assert tuned.optimizer.momentum == pytest.approx(q**2, rel=1e-9)


def simulated_steps(X: np.ndarray, y: np.ndarray, lr: float, beta: float, rel: float, budget: int) -> int:
    """The reference: torch's heavy ball (v' = beta v + g, w' = w - lr v') stepped one step at a time in numpy
    float64 from w = 0, the first step whose mean training mse over replicates is within rel of least squares."""
    R, n, _ = X.shape
    floor = np.mean([np.mean((x @ np.linalg.lstsq(x, t, rcond=None)[0] - t) ** 2) for x, t in zip(X, y)])
    w, v = np.zeros(X.shape[::2]), np.zeros(X.shape[::2])
    for t in range(budget + 1):
        loss = np.mean([np.mean((x @ ww - tt) ** 2) for x, ww, tt in zip(X, w, y)])
        if loss <= floor * (1 + rel) + 1e-12:
            return t
        g = np.stack([2 * x.T @ (x @ ww - tt) / n for x, ww, tt in zip(X, w, y)])
        v = beta * v + g
        w = w - lr * v
    return -1


@pytest.mark.parametrize("kappa", [10, 100, 1000])
@pytest.mark.parametrize("basis", ["axes", "rotated"])
def test_steps_to_target_matches_simulation_and_measurement(kappa: int, basis: str) -> None:
    """Full-batch gradient descent (a fixed rate, and 2/(L+mu)) and heavy ball (0.9, and Polyak's pair):
    theory/steps_to_target equals a step-by-step numpy simulation and is within 10% of the measured ttt/steps."""
    args = [*SHAPED, "data.spectrum=condition", f"data.condition_number={kappa}", f"data.basis={basis}",
            "steps=6000", "dtype=float64", "model.init=zeros"]
    base = compose_config(*args)
    data = fitting.load_data(base)
    X, y = data.X.numpy(), data.y.numpy()
    for extra in (["optimizer=sgd", "lr=0.5"], ["optimizer=sgd", "theory_tuned=true"],
                  ["optimizer=momentum", "lr=0.05"], ["optimizer=momentum", "theory_tuned=true"]):
        cfg = fitting.tuned(compose_config(*args, *extra), data)
        got = run_scored(*args, *extra)
        predicted, measured = got[C.THEORY_STEPS_TO_TARGET], got[C.TTT_STEPS]
        assert predicted == simulated_steps(X, y, cfg.lr, cfg.optimizer.momentum, 0.01, 6000), extra
        assert got[C.TTT_CENSORED] == 0 and measured == pytest.approx(predicted, rel=0.10), extra


def test_stop_at_target_keeps_the_time_to_target_and_trains_fewer_steps() -> None:
    """The same ttt/steps as the full run, fewer steps trained (steps_done), the curves up to the stop, and the
    final w the full run had at that step (its evaluation there)."""
    args = [*SHAPED, "data.spectrum=condition", "data.condition_number=100", "steps=3000", "optimizer=momentum",
            "lr=0.05", "replicates=3"]
    cfg, stop = compose_config(*args), compose_config(*args, "stop_at_target=true")
    full = fitting.fit_gradient(cfg, fitting.load_data(cfg), torch.device("cpu"))
    short = fitting.fit_gradient(stop, fitting.load_data(stop), torch.device("cpu"))
    scored_full, scored_short = fitting.score(cfg, fitting.load_data(cfg), full)[0], \
        fitting.score(stop, fitting.load_data(stop), short)[0]
    at = scored_full[C.TTT_STEPS]
    assert scored_short[C.TTT_STEPS] == at and scored_short[C.TTT_CENSORED] == 0
    assert short.finals[C.STEPS_DONE] == at < full.finals[C.STEPS_DONE] == 3000
    assert short.curves.shape == (at, 3) and np.array_equal(short.curves, full.curves[:int(at)])
    steps, values = short.histories[C.FULL_LOSS]
    assert steps[-1] == at and np.array_equal(values, full.histories[C.FULL_LOSS][1][:len(values)])
    assert C.EST_W_MSE in scored_short and C.PRED_TEST_MSE in scored_short
    # the final w is the model as evaluated at the stop: its training loss is the full run's there
    assert values[-1] == full.histories[C.FULL_LOSS][1][int(np.nonzero(full.histories[C.FULL_LOSS][0] == at)[0][0])]


def test_the_preset_report_draws_steps_against_kappa_and_says_what_it_found(tmp_path: Path) -> None:
    """A reduced grid of the preset in a subprocess, then the report: the figure, the slopes table, the findings
    (each optimizer's slope, heavy ball against gradient descent, the rotation verdict, theory's agreement)."""
    sweep = run_cli(["-m", "experiment=conditioning", "data.condition_number=1,30,300", "optimizer=sgd,momentum,adam",
                     "lr=0.03,0.3", "steps=3000", "data.n_train=200", "replicates=2", "hydra/launcher=pool"],
                    tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "[1/48]" in sweep.stdout + sweep.stderr  # 3 x 2 x 3 x 2 grid + 3 x 2 x 2 tuned
    report = run_report(tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    page = (tmp_path / "report" / "report.html").read_text()
    assert (tmp_path / "report" / "conditioning.png").stat().st_size > 10_000
    assert "<h2 id='conditioning'>Conditioning</h2>" in page
    assert "Conditioning: fitted slopes of steps against κ" in page
    runs = pd.read_csv(tmp_path / "report" / "runs.csv")
    tuned = runs[runs["theory_tuned"].astype(str) == "True"]
    assert len(tuned) == 12 and (tuned[C.TTT_STEPS] == tuned[C.THEORY_STEPS_TO_TARGET]).all()
    gd = tuned[(tuned["optimizer.name"] == "sgd") & (tuned["data.basis"] == "axes")]
    gd = gd.sort_values("data.condition_number")
    slope = np.polyfit(np.log(gd["data.condition_number"]), np.log(gd[C.TTT_STEPS]), 1)[0]
    assert f"theory: gradient descent at 2/(L+μ) {slope:.2f}" in page
    top = tuned[tuned["data.condition_number"] == 300].set_index(["optimizer.name", "data.basis"])[C.TTT_STEPS]
    assert html.escape(f"At κ = 300 (axes), Polyak's tuned heavy ball reached the target in "
                       f"{num(top[('momentum', 'axes')], 6)} steps and gradient descent at 2/(L+μ) in "
                       f"{num(top[('sgd', 'axes')], 6)}") in page
    assert "adam at κ = 300:" in page and "rotation (kept if at least half remains)" in page
    assert "of the 12 theory-tuned runs: within 0%" in page
    assert "Each optimizer at its best learning rate" not in page
