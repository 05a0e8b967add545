"""The maths a run is scored with: least squares, errors, the bias/variance decomposition and
the theory that predicts them. Everything here is float64 on the CPU, over R replicates."""

from __future__ import annotations

import numpy as np
import torch

from linreg_lab import contract as C
from linreg_lab import theory


def design(X: torch.Tensor, fit_intercept: bool) -> torch.Tensor:
    """A = [X, 1] (or X without intercept), batched (R, n, p), float64 on the CPU."""
    X = X.detach().double().cpu()
    X = X.unsqueeze(0) if X.dim() == 2 else X
    return torch.cat([X, torch.ones(*X.shape[:-1], 1, dtype=torch.float64)], -1) if fit_intercept else X


def least_squares(X: torch.Tensor, y: torch.Tensor, fit_intercept: bool,
                  penalty: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, b) minimizing |A theta - y|^2 + penalty |theta|^2 per replicate: shapes (R, d), (R,)."""
    A = design(X, fit_intercept)
    y = y.detach().double().cpu().reshape(A.shape[0], -1, 1)
    if penalty > 0:
        eye = torch.eye(A.shape[-1], dtype=torch.float64)
        coef = torch.linalg.solve(A.mT @ A + penalty * eye, A.mT @ y).squeeze(-1)
    else:
        coef = torch.linalg.lstsq(A, y, driver="gelsd").solution.squeeze(-1)
    d = X.shape[-1]
    b = coef[:, -1] if fit_intercept else torch.zeros(len(coef), dtype=torch.float64)
    return coef[:, :d], b


def parameter_errors(w: torch.Tensor, b: torch.Tensor, true_w: list[float], true_b: float,
                     w_ols: torch.Tensor, b_ols: torch.Tensor) -> dict[str, float]:
    """Final errors (learned minus reference), averaged over the replicates that stayed finite."""
    w, b = w.double(), b.double()
    dw = w - torch.tensor(true_w, dtype=torch.float64)
    out = {C.W_ERROR: float(dw.norm(dim=1).mean()), C.B_ERROR: float((b - true_b).mean())}
    out.update({C.W_ERROR_I.format(i=i): float(v) for i, v in enumerate(dw.mean(0))})
    out.update({C.W_I.format(i=i): float(v) for i, v in enumerate(w.mean(0))})
    out[C.B] = float(b.mean())
    out[C.OLS_W_GAP] = float((w - w_ols).norm(dim=1).mean())
    out[C.OLS_B_GAP] = float((b - b_ols).mean())
    return out


def decompose(est: torch.Tensor, truth: torch.Tensor, scale: float = 1.0) -> dict[str, float]:
    """bias2, var, mse of estimates est (R, k) of `truth` (k,), each with its standard error over the R replicates
    (`*_se`), times `scale` (1/k for a mean over test points). Unbiased: var divides by R - 1 and bias2 is
    |mean - truth|^2 - var / R (it can come out below 0 when the bias is within noise), so mse = bias2 + var exactly.
    One replicate gives only mse: a variance from one sample is undefined, not zero."""
    R = len(est)
    sq = (est - truth).square().sum(1)  # each replicate's squared error
    out = {"mse": float(sq.mean()) * scale}
    if R < 2:
        return out
    mean = est.mean(0)
    dev = est - mean
    spread = dev.square().sum(1)
    var = float(spread.sum()) / (R - 1)
    off = mean - truth
    # delta method: Var|mean - truth|^2 ~ 4 off^T C off / R + 2 tr(C^2) / R^2, with C the sample covariance
    gram = dev @ dev.T / (R - 1)
    bias_var = 4 * float((dev @ off).square().sum()) / (R - 1) / R + 2 * float(gram.square().sum()) / R**2
    out.update({"bias2": (float(off.square().sum()) - var / R) * scale, "var": var * scale,
                "mse_se": float(sq.std()) / R**0.5 * scale,
                "var_se": R / (R - 1) * float(spread.std()) / R**0.5 * scale,
                "bias2_se": bias_var**0.5 * scale})
    return out


def estimation_metrics(w: torch.Tensor, b: torch.Tensor, true_w: list[float], true_b: float,
                       w_ols: torch.Tensor) -> dict[str, float]:
    """est/*: bias^2, variance and mse of w and b over replicates with their standard errors; the optimizer's
    distance to its own data's least-squares fit against that fit's distance to the truth."""
    w, b = w.double(), b.double()
    true = torch.tensor(true_w, dtype=torch.float64)
    out = {}
    for name, est, truth in (("w", w, true), ("b", b.unsqueeze(1), torch.tensor([true_b], dtype=torch.float64))):
        out.update(named(decompose(est, truth), C.EST_PARTS[name]))
    for name, err in (("w_opt", w - w_ols), ("w_stat", w_ols - true)):  # optimizer vs data
        out.update(named(decompose(err, torch.zeros_like(true)), C.EST_PARTS[name]))
    out[C.EST_REPLICATES] = float(len(w))
    return out


def prediction_metrics(w: torch.Tensor, b: torch.Tensor, X_grid: torch.Tensor, f_grid: torch.Tensor,
                       y_grid: torch.Tensor, noise_var: float) -> dict[str, float]:
    """pred/*: the decomposition of expected test error on a fixed grid, E(y - y_hat)^2 = bias^2 + var + noise.

    f_grid is E[y | x] (noise mean included); y_grid are noisy labels, to measure test_mse.
    """
    y_hat = w.double() @ X_grid.double().T + b.double()[:, None]  # (R, m)
    scale = 1 / len(f_grid)  # means over the test points
    around_mean = {k: v for k, v in decompose(y_hat, f_grid.double(), scale).items() if not k.startswith("mse")}
    measured = decompose(y_hat, y_grid.double(), scale)  # against the noisy labels: the test error itself
    out = named({**around_mean, **{k: v for k, v in measured.items() if k.startswith("mse")}}, C.PRED_PARTS)
    out[C.PRED_NOISE] = noise_var
    return out


def named(parts: dict[str, float], names: dict[str, str]) -> dict[str, float]:
    """decompose's parts (bias2, var, mse and their _se) under their metric names; parts without one are dropped."""
    out = {}
    for part, value in parts.items():
        base = part.removesuffix("_se")
        if base in names:
            out[C.se(names[base]) if part != base else names[base]] = value
    return out


def design_metrics(X: torch.Tensor, fit_intercept: bool, noise_var: float, curvature: float) -> dict[str, float]:
    """theory/*: least-squares variance sigma^2 tr((A^T A)^-1) of w and b, averaged over the designs;
    the full-batch stability bound 2 / lambda_max (the smallest over the replicates: the largest step stable for
    every one) and the condition number of the loss Hessian (the mean over the replicates); the best
    constant rate of gradient descent and Polyak's heavy ball for the extreme eigenvalues over the replicates.

    `curvature` turns A^T A into the Hessian: 2c/n for a mean loss, 2c for a sum.
    """
    A = design(X, fit_intercept)
    cov = torch.linalg.pinv(A.mT @ A, hermitian=True)  # (R, p, p); Var(theta_ols | X) = sigma^2 cov (eigh: half an SVD)
    d = X.shape[-1]
    eig = hessian_eigenvalues(A, curvature)
    out = {
        C.THEORY_W_VAR: float(noise_var * cov[:, :d, :d].diagonal(dim1=1, dim2=2).sum(1).mean()),
        C.THEORY_LR_MAX: float((2 / eig[:, -1]).min()),  # stable for every replicate
        C.THEORY_CONDITION: float((eig[:, -1] / eig[:, 0].clamp_min(1e-300)).mean()),
    }
    if fit_intercept:
        out[C.THEORY_B_VAR] = float(noise_var * cov[:, d, d].mean())
    return {**out, **tuned_rates(eig)}


def hessian_eigenvalues(A: torch.Tensor, curvature: float) -> torch.Tensor:
    """Eigenvalues (R, p), ascending, of each replicate's loss Hessian curvature * A^T A (A: design's output)."""
    return torch.linalg.eigvalsh(curvature * (A.mT @ A))


def tuned_rates(eig: torch.Tensor) -> dict[str, float]:
    """theory/best_lr and _contraction, theory/polyak_*: from Hessian eigenvalues eig (R, p)."""
    low, high = theory.positive_extremes(eig)
    if not 0 < low <= high < float("inf"):
        return {}
    lr, contraction = theory.best_constant_rate(low, high)
    polyak_lr, polyak_momentum, polyak_contraction = theory.polyak_heavy_ball(low, high)
    return {C.THEORY_BEST_LR: lr, C.THEORY_BEST_CONTRACTION: contraction, C.THEORY_POLYAK_LR: polyak_lr,
            C.THEORY_POLYAK_MOMENTUM: polyak_momentum, C.THEORY_POLYAK_CONTRACTION: polyak_contraction}


def stability_verdict(optimizer: str, lr: float, momentum: float, lr_max: float, diverged: bool) -> str:
    """Did the run diverge where full-batch theory says gradient descent must? ('n/a' for adaptive steps)."""
    if optimizer not in C.GD_FAMILY:
        return "n/a"
    bound = lr_max * (1 + momentum)  # heavy ball: stable iff lr < 2 (1 + beta) / lambda_max
    predicted = lr >= bound
    if diverged:
        return "diverged_as_predicted" if predicted else "diverged_below_bound"
    return "stable_above_bound" if predicted else "stable_as_predicted"


def target_loss(floor: float, rel: float) -> float:
    """The training loss a run must reach: within `rel` of the least-squares loss (and 1e-12, for a floor of 0)."""
    return floor * (1 + rel) + 1e-12


def time_to_target(steps: np.ndarray, loss: np.ndarray, floor: float, rel: float, batch: int,
                   seconds_per_step: float, budget: int) -> dict[str, float]:
    """ttt/*: first evaluated step whose training loss is within `rel` of the least-squares loss.

    A run that never gets there is censored at its budget (ttt/censored = 1), not dropped.
    """
    hit = np.nonzero(loss <= target_loss(floor, rel))[0]
    step = int(steps[hit[0]]) if len(hit) else budget
    return {C.TTT_STEPS: float(step), C.TTT_SAMPLES: float(step * batch), C.TTT_SECONDS: step * seconds_per_step,
            C.TTT_CENSORED: float(not len(hit))}
