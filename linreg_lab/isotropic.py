"""Exact expectations for least squares on an isotropic Gaussian design: the double-descent curve.

Rows x ~ N(0, s^2 I_p), n of them, no intercept, y = x.w + e with Var(e) = sigma^2. Expectations are
over the design and the noise (the replicates of a `double_descent` run redraw both).

- Least squares (p < n - 1) and the minimum-norm interpolant (p > n + 1), finite n and p: the inverse
  Wishart moments E tr((X^T X)^-1) = p / (s^2 (n - p - 1)) and, past interpolation, the projection onto
  a random n-dimensional row space, E ||(I - X^+ X) w||^2 = ||w||^2 (1 - n/p), give
      p < n - 1:  E||w_hat - w||^2 = sigma^2 p / (s^2 (n - p - 1))
      p > n + 1:  E||w_hat - w||^2 = ||w||^2 (1 - n/p) + sigma^2 n / (s^2 (p - n - 1))
  (Belkin, Hsu, Xu 2019, "Two models of double descent for weak features", Thm 1; Hastie, Montanari,
  Rosset, Tibshirani 2019, "Surprises in high-dimensional ridgeless least squares interpolation").
  The first term past interpolation is the bias conditional on the design, E_X ||E[w_hat | X] - w||^2;
  the second its variance.
- Ridge at the optimal penalty, as n, p -> infinity with p/n -> gamma (Marchenko-Pastur): the penalty
  lambda* = gamma sigma^2 / (s^2 ||w||^2) (in (X^T X / n + s^2 lambda I) w = X^T y / n form) attains
      s^2 E||w_hat - w||^2 -> gamma sigma^2 m_gamma(-lambda*)
  with m_gamma the Stieltjes transform of the Marchenko-Pastur law (Dobriban & Wager 2018, "High-
  dimensional asymptotics of prediction: ridge regression and classification", Thm 2.1; Nakkiran,
  Venkat, Kakade, Ma 2020, "Optimal regularization can mitigate double descent").
"""

from __future__ import annotations

import math


def least_squares_risk(n: int, p: int, w_norm2: float, noise_var: float, x_var: float = 1.0) -> dict[str, float]:
    """E||w_hat - w||^2 of least squares / the minimum-norm fit and its parts conditional on the design:
    bias2 (E_X ||E[w_hat|X] - w||^2) and var; NaN for n - 1 <= p <= n + 1, where the expectation is infinite."""
    if p < n - 1:
        bias2, var = 0.0, noise_var * p / (x_var * (n - p - 1))
    elif p > n + 1:
        bias2, var = w_norm2 * (1 - n / p), noise_var * n / (x_var * (p - n - 1))
    else:
        return {"mse": math.nan, "bias2": math.nan, "var": math.nan}
    return {"mse": bias2 + var, "bias2": bias2, "var": var}


def marchenko_pastur_stieltjes(gamma: float, lam: float) -> float:
    """m(-lam) = integral of dF(x) / (x + lam) for the Marchenko-Pastur law of ratio gamma (variance 1)."""
    a = 1 - gamma + lam
    return (-a + math.sqrt(a * a + 4 * gamma * lam)) / (2 * gamma * lam)


def optimal_ridge_penalty(n: int, p: int, w_norm2: float, noise_var: float, x_var: float = 1.0) -> float:
    """lambda* = gamma sigma^2 / (s^2 ||w||^2): ridge's best penalty, in (X^T X / n + s^2 lambda I) form."""
    return (p / n) * noise_var / (x_var * w_norm2)


def optimal_ridge_weight_decay(n: int, p: int, w_norm2: float, noise_var: float, loss_scale: float) -> float:
    """The weight decay (torch's meaning: loss c * mean(r^2) + wd/2 |w|^2) that is ridge at lambda*:
    wd = 2 c s^2 lambda*, the design's scale s cancelling."""
    return 2 * loss_scale * (p / n) * noise_var / w_norm2


def optimal_ridge_risk(n: int, p: int, w_norm2: float, noise_var: float, x_var: float = 1.0) -> float:
    """The limit of E||w_hat - w||^2 for ridge at lambda*, evaluated at gamma = p / n."""
    gamma = p / n
    lam = optimal_ridge_penalty(n, p, w_norm2, noise_var, x_var)  # the standardized design's penalty
    if noise_var == 0:
        return w_norm2 * max(0.0, 1 - 1 / gamma)  # noiseless: only the part of w outside the row space
    return gamma * noise_var * marchenko_pastur_stieltjes(gamma, lam) / x_var
