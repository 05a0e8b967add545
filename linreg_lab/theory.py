"""What theory predicts for a run's bias^2 and variance, beside what the replicates measure.

Every estimator here is linear in the labels, theta = G y + c, so given a design its mean is
G f + c (f = E[y | X]) and its covariance sigma^2 G G^T. Three of them:

- ridge / least squares (closed_form): G = (s A^T A + wd I)^+ s A^T                   exact
- full-batch gradient descent, with heavy-ball momentum, for t steps from theta_0:    exact
  z = (theta, v), v' = beta v + grad, theta' = theta - lr v'; z_t = T^t z_0 + sum_{k<t} T^k K y
- mini-batch SGD / momentum adds the noise of its batches around the fit (batches of B
  drawn with replacement, the gradient noise taken at the fit, so small-rate):   approximate
  Cov_t = sum_{k<t} T^k N T^k^T with N the one-step noise of the batch gradient.

H = s A^T A + wd I is the Hessian of the objective the optimizer follows (s turns A^T A into
it: 2c/n for a mean loss). Replicates that redraw the design or the start are averaged
conditionally: the theory's mean and variance over the replicates are the average of each
replicate's conditional moments plus the spread of their conditional means, which is what
the measured unbiased bias^2 and variance estimate. float64, CPU, batched over replicates.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from linreg_lab import contract as C

F64 = torch.float64


@dataclass
class Problem:
    """One run's data, as theory sees it (R replicates, p parameters, n samples, m test points)."""

    A: torch.Tensor  # (R, n, p) design [X, 1]
    y: torch.Tensor  # (R, n) the labels drawn (for the residuals SGD's noise is made of)
    f: torch.Tensor  # (R, n) E[y | X]
    theta0: torch.Tensor  # (R, p) each replicate's start
    A_test: torch.Tensor  # (m, p)
    f_test: torch.Tensor  # (m,) E[y | x] on the test set
    truth: torch.Tensor  # (p,) (w, b) the estimates are scored against
    noise_var: float
    s: float  # curvature factor: the Hessian of the data term is s A^T A
    weight_decay: float = 0.0
    labels_fixed: bool = False  # replicates share the labels drawn (they redraw the order or the start only)

    @property
    def target(self) -> torch.Tensor:
        """What the estimate's mean is linear in: E[y | X], or the labels themselves when they are fixed."""
        return self.y if self.labels_fixed else self.f

    @property
    def label_var(self) -> float:
        return 0.0 if self.labels_fixed else self.noise_var

    @functools.cached_property
    def gram(self) -> torch.Tensor:
        return self.A.mT @ self.A

    @functools.cached_property
    def spectrum(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per replicate: eigenvalues lam (R, p) of s A^T A, its eigenvectors U (R, p, p) and s U^T A^T f (R, p)."""
        lam, U = torch.linalg.eigh(self.s * self.gram)
        u = self.s * (U.mT @ (self.A.mT @ self.f.unsqueeze(-1))).squeeze(-1)
        return lam.clamp_min(0.0), U, u

    def hessian(self) -> torch.Tensor:
        p = self.A.shape[-1]
        return self.s * self.gram + self.weight_decay * torch.eye(p, dtype=F64)


@dataclass
class Moments:
    """Each replicate's conditional mean (R, p) and covariance (R, p, p) of its estimate."""

    mean: torch.Tensor
    cov: torch.Tensor


def ridge(pr: Problem) -> Moments:
    """Least squares with penalty wd/2 |theta|^2 (wd = 0: the minimum-norm least-squares fit)."""
    Hp = torch.linalg.pinv(pr.hessian(), hermitian=True)
    mean = (Hp @ (pr.s * pr.A.mT @ pr.target.unsqueeze(-1))).squeeze(-1)
    cov = pr.label_var * pr.s**2 * Hp @ pr.gram @ Hp
    return Moments(mean, cov)


def power_sum(T: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T^t, sum_{k<t} T^k) by repeated squaring, batched: T (R, q, q)."""
    eye = torch.eye(T.shape[-1], dtype=F64).expand_as(T)
    P, S = eye.clone(), torch.zeros_like(T)
    base_P, base_S = T, eye.clone()
    while t:
        if t & 1:
            P, S = P @ base_P, S + P @ base_S
        base_P, base_S = base_P @ base_P, base_S + base_P @ base_S
        t >>= 1
    return P, S


def lyapunov_sum(T: torch.Tensor, N: torch.Tensor, t: int) -> torch.Tensor:
    """sum_{k<t} T^k N T^k^T (the covariance after t steps of z' = T z + noise of covariance N), batched."""
    P = torch.eye(T.shape[-1], dtype=F64).expand_as(T).clone()
    Z = torch.zeros_like(N)
    base_P, base_Z = T, N
    while t:
        if t & 1:
            P, Z = P @ base_P, Z + P @ base_Z @ P.mT
        base_P, base_Z = base_P @ base_P, base_Z + base_P @ base_Z @ base_P.mT
        t >>= 1
    return Z


def transition(H: torch.Tensor, lr: float, momentum: float) -> torch.Tensor:
    """T of one full-batch step: theta alone for plain GD, (theta, v) with momentum."""
    p = H.shape[-1]
    eye = torch.eye(p, dtype=F64).expand_as(H)
    if not momentum:
        return eye - lr * H
    top = torch.cat([eye - lr * H, -lr * momentum * eye], -1)
    return torch.cat([top, torch.cat([H, momentum * eye], -1)], -2)


def lift(M: torch.Tensor, lr: float, momentum: float) -> torch.Tensor:
    """A drive M entering theta as -lr M and v as +M, as a (q, p) block (q = p, or 2p with momentum)."""
    return -lr * M if not momentum else torch.cat([-lr * M, M], -2)


def gradient_descent(pr: Problem, lr: float, momentum: float, steps: int) -> Moments:
    """Full-batch GD (heavy ball when momentum > 0) for `steps` steps from theta0, v0 = 0 (torch's buffer)."""
    p = pr.A.shape[-1]
    P, S = gd_powers(pr, lr, steps) if not momentum else power_sum(transition(pr.hessian(), lr, momentum), steps)
    drive = lift(-pr.s * pr.A.mT, lr, momentum)  # z' = T z + drive y: the gradient's -s A^T y part
    start = pr.theta0 if not momentum else torch.cat([pr.theta0, torch.zeros_like(pr.theta0)], -1)
    mean = (P @ start.unsqueeze(-1) + S @ drive @ pr.target.unsqueeze(-1)).squeeze(-1)[:, :p]
    G = (S @ drive)[:, :p]
    return Moments(mean, pr.label_var * G @ G.mT)


def gd_powers(pr: Problem, lr: float, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T^t, sum_{k<t} T^k) for plain GD, T = I - lr H, from H's eigenvectors (the spectrum theory computes
    anyway), instead of repeated squaring: per direction mu^t and (1 - mu^t) / (1 - mu) with mu = 1 - eps,
    the latter as -expm1(t log1p(-eps)) / eps where eps is small (exact to rounding), t where eps = 0."""
    lam, U, _ = pr.spectrum
    eps = lr * (lam + pr.weight_decay)
    power = (1 - eps) ** steps
    safe = torch.where(eps == 0, torch.ones_like(eps), eps)
    near = -torch.expm1(steps * torch.log1p(-eps.clamp(-0.5, 0.5))) / safe
    geometric = torch.where(eps == 0, float(steps), torch.where(eps.abs() < 0.5, near, (1 - power) / safe))
    return U @ (power.unsqueeze(-1) * U.mT), U @ (geometric.unsqueeze(-1) * U.mT)


def batch_noise(pr: Problem, batch_size: int) -> torch.Tensor:
    """Covariance (R, p, p) of a batch gradient around the full one, at the fit, batches drawn with replacement.

    The per-sample gradient is g_i = s n a_i r_i (its mean is the full data gradient s A^T r)."""
    fit = ridge(dataclasses.replace(pr, labels_fixed=True))  # the fit of the labels drawn
    r = (pr.A @ fit.mean.unsqueeze(-1)).squeeze(-1) - pr.y  # residuals at the fit of the labels drawn
    n = pr.A.shape[1]
    second = pr.s**2 * n * (pr.A.mT * r.square().unsqueeze(1)) @ pr.A  # E_i g_i g_i^T
    g = pr.s * (pr.A.mT @ r.unsqueeze(-1))  # the mean, -wd theta_fit
    return (second - g @ g.mT) / batch_size


def sgd_noise(pr: Problem, lr: float, momentum: float, steps: int, batch_size: int) -> torch.Tensor:
    """Covariance (R, p, p) the batches' noise adds to theta after `steps` steps (small-rate approximation)."""
    p = pr.A.shape[-1]
    T = transition(pr.hessian(), lr, momentum)
    L = lift(torch.eye(p, dtype=F64).expand(len(pr.A), p, p), lr, momentum)
    N = L @ batch_noise(pr, batch_size) @ L.mT
    return lyapunov_sum(T, N, steps)[:, :p, :p]


def summarize(pr: Problem, mom: Moments, d: int) -> dict[str, float]:
    """theory/est/* of w (first d parameters) and b (the next one, if any), and theory/pred/* on the test set:
    the expectations of what analysis.decompose measures over the same replicates."""
    R = len(mom.mean)
    center = mom.mean.mean(0)
    dev = mom.mean - center
    k = 1.0 / (R - 1) if R > 1 else 0.0  # the spread of the conditional means, as the measured variance counts it
    out = {}
    p = mom.mean.shape[-1]
    for name, idx in (("w", slice(0, d)), ("b", slice(d, d + 1))):
        if idx.start >= p:
            continue
        spread = float(dev[:, idx].square().sum()) * k
        var = float(mom.cov[:, idx, idx].diagonal(dim1=1, dim2=2).sum(1).mean()) + spread
        bias2 = float((center[idx] - pr.truth[idx]).square().sum()) - spread / R
        parts = {"bias2": bias2, "var": var, "mse": bias2 + var}
        out.update({C.theory_of(C.EST_PARTS[name][part]): value for part, value in parts.items()})
    m = len(pr.f_test)
    Q = pr.A_test.T @ pr.A_test / m
    spread = float(torch.einsum("ri,ij,rj->", dev, Q, dev)) * k
    var = float((mom.cov * Q).sum((1, 2)).mean()) + spread
    err = pr.A_test @ center - pr.f_test
    bias2 = float(err.square().mean()) - spread / R
    out.update({C.theory_of(C.PRED_BIAS2): bias2, C.theory_of(C.PRED_VAR): var,
                C.theory_of(C.PRED_TEST_MSE): bias2 + var + pr.noise_var})
    return out


GRID_CHUNK = 16  # replicates per pass of a grid search: their (chunk, G, p) arrays stay small (no page faults)


def prediction_mse(pr: Problem, terms: Callable[[slice], tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Expected test error less the noise, mean over replicates, at each of G grid points; returns (G,).
    `terms(rows)` gives, for the replicates `rows` (a slice), the mean's eigen-coordinates coef (r, G, p) and the
    variances var_coef (r, G, p) along the eigenvectors (in units of sigma^2). The replicates are taken
    GRID_CHUNK at a time: the same sums, without (R, G, p) arrays of hundreds of megabytes.
    |A_test theta - f_test|^2 / m = theta^T Q theta - 2 theta^T q + f.f / m, Q = A_test^T A_test / m."""
    _, U, _ = pr.spectrum
    m, R = len(pr.f_test), len(U)
    S, s = pr.A_test.T @ pr.A_test / m, pr.A_test.T @ pr.f_test / m
    total = 0.0
    for first in range(0, R, GRID_CHUNK):
        rows = slice(first, first + GRID_CHUNK)
        coef, var_coef = terms(rows)
        Q = U[rows].mT @ S @ U[rows]  # (r, p, p) in eigen-coordinates
        q = (U[rows].mT @ s.unsqueeze(-1)).squeeze(-1)  # (r, p)
        quad = ((coef @ Q) * coef).sum(-1) - 2 * (coef * q.unsqueeze(1)).sum(-1)
        noise = pr.noise_var * (var_coef * Q.diagonal(dim1=1, dim2=2).unsqueeze(1)).sum(-1)
        total = total + (quad + noise).sum(0)
    return total / R + float(pr.f_test.square().mean())


def first_minimum(values: torch.Tensor, rel: float = 1e-6) -> int:
    """Index of the first value within `rel` of the minimum: on a flat curve (a tiny noise, say) the exact
    argmin would be decided by rounding, which differs between thread counts; the first is stable."""
    values = torch.where(torch.isfinite(values), values, torch.inf)
    low = values.min()
    return int(torch.nonzero(values <= low + rel * low.abs())[0, 0])


def best_weight_decay(pr: Problem, points: int = 241) -> float:
    """The smallest weight decay (ridge, converged) that minimizes the expected test error (to 1e-6), searched
    on a log grid from 1e-6 to 1e3 times the mean curvature."""
    lam, _, u = pr.spectrum
    scale = float(lam.mean().clamp_min(1e-300))
    grid = scale * torch.logspace(-6, 3, points, dtype=F64)

    def terms(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        h = lam[rows].unsqueeze(1) + grid[:, None]  # (r, G, p)
        var_coef = pr.s * lam[rows].unsqueeze(1) / h.square()  # sigma^2 G G^T = sigma^2 s Lam / h^2 per direction
        return u[rows].unsqueeze(1) / h, var_coef

    return float(grid[first_minimum(prediction_mse(pr, terms))])


def best_steps(pr: Problem, lr: float, horizon: int, points: int = 300) -> float:
    """The fewest full-batch GD steps (no momentum) from theta0 that minimize the expected test error (to 1e-6),
    searched over 1..horizon: early stopping as regularization."""
    lam, U, u = pr.spectrum
    h = lam + pr.weight_decay  # eigenvalues of H
    t = torch.unique(torch.logspace(0, torch.log10(torch.tensor(float(horizon))), points, dtype=F64).round())
    safe = h.abs() > 1e-300
    start = (pr.theta0.unsqueeze(1) @ U).squeeze(1)  # theta0 in eigen-coordinates

    def terms(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        rho_t = (1 - lr * h[rows]).unsqueeze(1) ** t[:, None]  # (r, G, p)
        gain = torch.where(safe[rows].unsqueeze(1), (1 - rho_t) / torch.where(safe[rows], h[rows], 1.0).unsqueeze(1),
                           lr * t[:, None])  # sum_{k<t} rho^k lr, whose limit at h = 0 is lr t
        coef = rho_t * start[rows].unsqueeze(1) + gain * u[rows].unsqueeze(1)
        return coef, pr.s * gain.square() * lam[rows].unsqueeze(1)

    return float(t[first_minimum(prediction_mse(pr, terms))])

# ---- conditioning: the best constant rates, and the step a full-batch run reaches its target ----


def positive_extremes(lam: torch.Tensor) -> tuple[float, float]:
    """(lambda_min, lambda_max) of Hessian eigenvalues lam (R, p) over every replicate, the smallest counted
    among the eigenvalues above 1e-10 lambda_max of its replicate (a null direction moves no loss)."""
    top = lam.max(-1, keepdim=True).values
    low = torch.where(lam > 1e-10 * top, lam, torch.inf).min(-1).values
    return float(low.min()), float(top.max())


def best_constant_rate(lam_min: float, lam_max: float) -> tuple[float, float]:
    """Gradient descent's best constant step on a quadratic, 2 / (L + mu), and its contraction per step of the
    distance to the minimum, (kappa - 1) / (kappa + 1) (Polyak 1987, "Introduction to Optimization", 1.4)."""
    kappa = lam_max / lam_min
    return 2 / (lam_max + lam_min), (kappa - 1) / (kappa + 1)


def polyak_heavy_ball(lam_min: float, lam_max: float) -> tuple[float, float, float]:
    """Polyak's tuned heavy ball (Polyak 1964, "Some methods of speeding up the convergence of iteration
    methods"): lr = 4 / (sqrt L + sqrt mu)^2, momentum = ((sqrt kappa - 1) / (sqrt kappa + 1))^2, contraction
    (sqrt kappa - 1) / (sqrt kappa + 1). torch's SGD momentum (v' = beta v + g, theta' = theta - lr v') is this
    method with the same lr and beta."""
    root = math.sqrt(lam_max / lam_min)
    rate = (root - 1) / (root + 1)
    return 4 / (math.sqrt(lam_max) + math.sqrt(lam_min)) ** 2, rate**2, rate


def steps_to_target(pr: Problem, lr: float, momentum: float, loss_factor: float, gap: float, steps: list[int]) -> float:
    """The first evaluated step at which full-batch GD / heavy ball from theta0 (v0 = 0) brings the replicates'
    mean training loss within `gap` of their mean least-squares loss: ttt/steps's rule, computed per eigen-
    direction of the Hessian. In direction i (eigenvalue lam of s A^T A, h = lam + wd), the error e from the
    fixed point moves as (e, v)' = T (e, v), T = [[1 - lr h, -lr beta], [h, beta]]; between evaluations the
    state jumps by a power of T, never step by step. Loss above least squares: loss_factor sum lam d^2, d the
    distance to the least-squares fit. The evaluations are `steps` (ascending); NaN if the target is not met by the
    last."""
    lam, U, _ = pr.spectrum
    h = lam + pr.weight_decay
    u = pr.s * (U.mT @ (pr.A.mT @ pr.y.unsqueeze(-1))).squeeze(-1)  # s U^T A^T y: the labels the loss sees
    moves, fits = h > 1e-12 * h.max(), lam > 1e-12 * lam.max()
    fixed = torch.where(moves, u / torch.where(moves, h, 1.0), 0.0)
    ols = torch.where(fits, u / torch.where(fits, lam, 1.0), 0.0)
    start = (pr.theta0.unsqueeze(1) @ U).squeeze(1)
    fixed = torch.where(moves, fixed, start)  # a direction that does not move stays where it started
    z = torch.stack([start - fixed, torch.zeros_like(start)], -1).unsqueeze(-1)  # (R, p, 2, 1)
    one = torch.ones_like(h)
    T = torch.stack([torch.stack([1 - lr * h, -lr * momentum * one], -1), torch.stack([h, momentum * one], -1)], -2)
    jumps: dict[int, torch.Tensor] = {}
    done = 0
    for t in steps:
        if t - done not in jumps:
            jumps[t - done] = torch.linalg.matrix_power(T, t - done)
        z, done = jumps[t - done] @ z, t
        excess = loss_factor * (lam * (fixed + z[..., 0, 0] - ols).square()).sum(-1)  # (R,)
        if not torch.isfinite(excess).all():
            return math.nan
        if float(excess.mean()) <= gap:
            return float(t)
    return math.nan


# ---- streaming Gaussian features: mini-batch SGD and heavy ball in expectation, at every step ----
# Fresh rows x ~ N(0, Sigma) every step, y = x.w + e, Var(e) = sigma^2, no intercept; the loss c (x.w - y)^2, its
# gradient h x (x.w - y) with h = 2c; a batch of B rows. In Sigma's eigenbasis (eigenvalues lam) the error e = w - w*
# and the momentum buffer v have second moments whose diagonals, a = E[e_i^2], m = E[e_i v_i], s = E[v_i^2], obey a
# closed linear recursion (the batch is independent of the state): with eta = lr h and Isserlis' theorem for the
# fourth moment of a Gaussian, E[x x^T P x x^T] = 2 Sigma P Sigma + tr(Sigma P) Sigma, the batch Hessian H_B gives
# E[H_B P H_B]_ii = (1 + 1/B) lam_i^2 P_ii + lam_i sum_j lam_j P_jj / B =: (K P)_i, and
#   a' = (1 - 2 eta lam) a + eta^2 K a + lr^2 beta^2 s - 2 lr beta (1 - eta lam) m + lr^2 h^2 sigma^2 lam / B
#   m' = h (lam a - eta K a) + beta (1 - 2 eta lam) m - lr beta^2 s - lr h^2 sigma^2 lam / B
#   s' = h^2 K a + beta^2 s + 2 h beta lam m + h^2 sigma^2 lam / B
# (torch's heavy ball v' = beta v + g, w' = w - lr v'; beta = 0 is SGD). The expected loss is c (lam.a + sigma^2),
# exact at every step (Bach & Moulines 2013, "Non-strongly-convex smooth stochastic approximation with convergence
# rate O(1/n)", and Zhang et al. 2019, "Which Algorithmic Choices Matter at Which Batch Sizes? Insights From a
# Noisy Quadratic Model", whose NQM keeps only the diagonal part; here the fourth moment is the Gaussian one).


def streaming_recursion(lam: torch.Tensor, lr: float, momentum: float, batch: int, noise_var: float,
                        loss_c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, b) of the state z = (a, m, s) (3d,): z' = A z + b, as above."""
    d = len(lam)
    h, beta = 2 * loss_c, momentum
    eta = lr * h
    K = torch.diag((1 + 1 / batch) * lam**2) + torch.outer(lam, lam) / batch
    eye = torch.eye(d, dtype=F64)
    Lam = torch.diag(lam)
    A = torch.zeros(3 * d, 3 * d, dtype=F64)
    A[:d, :d] = torch.diag(1 - 2 * eta * lam) + eta**2 * K
    A[:d, d:2 * d] = -2 * lr * beta * torch.diag(1 - eta * lam)
    A[:d, 2 * d:] = lr**2 * beta**2 * eye
    A[d:2 * d, :d] = h * (Lam - eta * K)
    A[d:2 * d, d:2 * d] = beta * torch.diag(1 - 2 * eta * lam)
    A[d:2 * d, 2 * d:] = -lr * beta**2 * eye
    A[2 * d:, :d] = h**2 * K
    A[2 * d:, d:2 * d] = 2 * h * beta * Lam
    A[2 * d:, 2 * d:] = beta**2 * eye
    kick = h**2 * noise_var * lam / batch
    b = torch.cat([lr**2 * kick, -lr * kick, kick])
    return A, b


def streaming_losses(lam: torch.Tensor, start_sq: torch.Tensor, lr: float, momentum: float, batch: int,
                     noise_var: float, loss_c: float, steps: list[int]):
    """Yield (t, expected population loss c (lam.a_t + sigma^2)) at each of `steps` (ascending), from a_0 =
    start_sq (the mean squared start error in Sigma's eigenbasis), m_0 = s_0 = 0; the state jumps between them
    by (A^k, sum_{j<k} A^j) (power_sum), never step by step."""
    A, b = streaming_recursion(lam, lr, momentum, batch, noise_var, loss_c)
    d = len(lam)
    z = torch.cat([start_sq, torch.zeros(2 * d, dtype=F64)])
    done, jumps = 0, {}
    for t in steps:
        k = t - done
        if k not in jumps:
            P, S = power_sum(A.unsqueeze(0), k)
            jumps[k] = (P[0], S[0] @ b)
        P, drift = jumps[k]
        z, done = P @ z + drift, t
        yield t, loss_c * (float(lam @ z[:d]) + noise_var)


def streaming_steps_to_target(lam: torch.Tensor, start_sq: torch.Tensor, lr: float, momentum: float, batch: int,
                              noise_var: float, loss_c: float, target: float, steps: list[int]) -> float:
    """The first of `steps` (ascending) whose expected loss is <= target; NaN if none (the expected loss settles
    above it, or grows without bound)."""
    for t, loss in streaming_losses(lam, start_sq, lr, momentum, batch, noise_var, loss_c, steps):
        if not math.isfinite(loss):
            return math.nan
        if loss <= target:
            return float(t)
    return math.nan


def noise_scale(lam: torch.Tensor, start: torch.Tensor, noise_var: float) -> float:
    """McCandlish et al.'s (2018, "An Empirical Model of Large-Batch Training") simple noise scale
    B_simple = tr(Cov g) / |E g|^2 of the per-sample gradient at the start, exact for Gaussian rows: with e the
    start error in Sigma's eigenbasis (rows of `start`, one per replicate), Cov g = h^2 (Sigma e e^T Sigma +
    (e^T Sigma e + sigma^2) Sigma) (Isserlis), so B_simple = 1 + (e^T Sigma e + sigma^2) tr Sigma / |Sigma e|^2;
    the mean over the replicates."""
    quad = (start**2 * lam).sum(-1)
    grad = ((start * lam) ** 2).sum(-1)
    return float((1 + (quad + noise_var) * lam.sum() / grad).mean())


# ---- isotropic Gaussian designs: the double-descent curve in expectation over design and noise ----
# Exact expectations for least squares on an isotropic Gaussian design: the double-descent curve.
#
# Rows x ~ N(0, s^2 I_p), n of them, no intercept, y = x.w + e with Var(e) = sigma^2. Expectations are
# over the design and the noise (the replicates of a `double_descent` run redraw both).
#
# - Least squares (p < n - 1) and the minimum-norm interpolant (p > n + 1), finite n and p: the inverse
#   Wishart moments E tr((X^T X)^-1) = p / (s^2 (n - p - 1)) and, past interpolation, the projection onto
#   a random n-dimensional row space, E ||(I - X^+ X) w||^2 = ||w||^2 (1 - n/p), give
#       p < n - 1:  E||w_hat - w||^2 = sigma^2 p / (s^2 (n - p - 1))
#       p > n + 1:  E||w_hat - w||^2 = ||w||^2 (1 - n/p) + sigma^2 n / (s^2 (p - n - 1))
#   (Belkin, Hsu, Xu 2019, "Two models of double descent for weak features", Thm 1; Hastie, Montanari,
#   Rosset, Tibshirani 2019, "Surprises in high-dimensional ridgeless least squares interpolation").
#   The first term past interpolation is the bias conditional on the design, E_X ||E[w_hat | X] - w||^2;
#   the second its variance.
# - Ridge at the optimal penalty, as n, p -> infinity with p/n -> gamma (Marchenko-Pastur): the penalty
#   lambda* = gamma sigma^2 / (s^2 ||w||^2) (in (X^T X / n + s^2 lambda I) w = X^T y / n form) attains
#       s^2 E||w_hat - w||^2 -> gamma sigma^2 m_gamma(-lambda*)
#   with m_gamma the Stieltjes transform of the Marchenko-Pastur law (Dobriban & Wager 2018, "High-
#   dimensional asymptotics of prediction: ridge regression and classification", Thm 2.1; Nakkiran,
#   Venkat, Kakade, Ma 2020, "Optimal regularization can mitigate double descent").


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
