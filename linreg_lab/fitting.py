"""From a checked config to numbers: draw the replicates' data, fit (train or solve), and score."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from linreg_lab import analysis, contract, schema, theory
from linreg_lab.data import Dataset, basis, batch_indices, eigenvalues, make_dataset, noise_moments, replicate_seed
from linreg_lab.models import affine, build_model, closed_form, grid_search, init_params, loss_scale, mean_loss
from linreg_lab.schema import ClosedFormConfig, NoiseDist, Reduction, RunConfig, Sampling, Spacing, XDist
from linreg_lab.train import evaluation_steps, train

BAND_POINTS = 100  # train/loss_p10 and _p90 (R > 1): a band needs no more points than this


@dataclass
class Fit:
    """Everything a job measured, ready to log; per-replicate arrays have R rows."""

    w: torch.Tensor  # (R, d), NaN rows for diverged replicates
    b: torch.Tensor  # (R,)
    histories: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    finals: dict[str, float] = field(default_factory=dict)
    curves: np.ndarray = field(default_factory=lambda: np.empty((0, 1)))  # (steps, R) batch losses
    w_init: np.ndarray = field(default_factory=lambda: np.empty(0))
    b_init: np.ndarray = field(default_factory=lambda: np.empty(0))
    grid: tuple[np.ndarray, np.ndarray] | None = None  # (G, d) values, (G,) mean cost
    full_curve: tuple[np.ndarray, np.ndarray] | None = None  # eval steps, mean full-data loss
    diverged_at: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    steps_done: int = 0
    interrupted: KeyboardInterrupt | None = None
    ols: tuple[torch.Tensor, torch.Tensor, float] | None = None  # (w, b, mean loss) of least squares, once computed

    @property
    def diverged_step(self) -> int | None:
        hit = self.diverged_at[self.diverged_at > 0]
        return int(hit.min()) if len(hit) else None


def seeds(cfg: RunConfig, stream: str, base: int) -> list[int]:
    """The seed of `stream` (data, init or order) for each replicate."""
    return [replicate_seed(base, r, stream in cfg.replicate_over) for r in range(cfg.replicates)]


_last_drawn: list[tuple[tuple, Dataset]] = []  # this process's latest data and what drew it (one at most)


def load_data(cfg: RunConfig) -> Dataset:
    """Each replicate's dataset; a stream holds every sample its steps will draw. A process's next job that draws
    the very same data (same recipe, noise, size, seeds, dtype: only its rate, optimizer or batch size differ)
    gets the same Dataset, with what was derived from it (Dataset.memo); any other frees it before drawing."""
    n = cfg.steps * cfg.batch_size if cfg.data.streaming else cfg.data.n_train
    data_seeds = seeds(cfg, "data", cfg.data_seed)
    key = (repr(cfg.data), cfg.noise, n, tuple(data_seeds), cfg.dtype)
    if _last_drawn and _last_drawn[0][0] == key:
        return _last_drawn[0][1]
    _last_drawn.clear()
    data = make_dataset(cfg.data, cfg.noise, n, data_seeds, getattr(torch, cfg.dtype))
    _last_drawn.append((key, data))
    return data


def history(steps: np.ndarray, per_replicate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the replicates still finite at each step; steps where none is are dropped."""
    alive = np.isfinite(per_replicate).any(1)
    with np.errstate(all="ignore"):
        return steps[alive], np.nanmean(per_replicate[alive], 1)


def evenly_spaced(count: int, points: int) -> np.ndarray:
    """Indices of at most ~`points` evenly spaced steps out of `count`, the first and last always kept (the
    band's steps; what MLflow holds of a history is curves.thinned's choice)."""
    if not count:
        return np.empty(0, int)
    return np.unique(np.r_[np.arange(0, count, max(1, -(-count // points))), count - 1])


def loss_histories(res, replicated: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train/loss (every step), quantiles (BAND_POINTS), test and full-data losses."""
    steps = np.arange(1, len(res.train_loss) + 1)
    out = {contract.TRAIN_LOSS: history(steps, res.train_loss),
           contract.TEST_LOSS: history(res.eval_steps, res.test_loss),
           contract.FULL_LOSS: history(res.eval_steps, res.full_loss)}
    if replicated:
        band = evenly_spaced(len(steps), BAND_POINTS)
        alive = np.isfinite(res.train_loss[band]).any(1)
        losses = torch.from_numpy(res.train_loss[band][alive])
        for q in (10, 90):  # torch's nanquantile works on the whole array; numpy's nanpercentile loops over rows
            out[contract.loss_percentile(q)] = (steps[band][alive], torch.nanquantile(losses, q / 100, dim=1).numpy())
    return out


def float64(data: Dataset) -> Dataset:
    """The data as float64 on the CPU (itself when it is), converted once (a long stream is costly to convert
    again and again)."""
    tensors = (data.X, data.y, data.X_test, data.y_test)
    if all(t.dtype == torch.float64 and t.device.type == "cpu" for t in tensors):
        return data
    return data.memo("float64", lambda: Dataset(*(t.detach().double().cpu() for t in tensors)))


def least_squares_fit(cfg: RunConfig, data: Dataset) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(w, b) of each replicate's least-squares fit and ols/loss, its training loss's mean over the replicates."""
    data64 = float64(data)  # kept on the float64 copy, which a job's fit and its scoring both reach

    def fit() -> tuple[torch.Tensor, torch.Tensor, float]:
        w_ols, b_ols = analysis.least_squares(data64.X, data64.y, cfg.model.fit_intercept)
        return w_ols, b_ols, float(mean_loss(affine(data64.X, w_ols, b_ols), data64.y, cfg.model.loss).mean())

    return data64.memo(("least_squares", cfg.model.fit_intercept, cfg.model.loss), fit)


def tuned(cfg: RunConfig, data: Dataset) -> RunConfig:
    """With theory_tuned, the run's rate (sgd: 2 / (L + mu)) or rate and momentum (momentum: Polyak's pair)
    from the extreme eigenvalues of the training Hessian over the replicates; the config as it was otherwise."""
    if not cfg.theory_tuned:
        return cfg
    A = analysis.design(data.X, cfg.model.fit_intercept)
    low, high = theory.positive_extremes(analysis.hessian_eigenvalues(A, curvature(cfg, A.shape[1])))
    if cfg.optimizer.momentum:
        lr, momentum, _ = theory.polyak_heavy_ball(low, high)
        return dataclasses.replace(cfg, lr=lr, optimizer=dataclasses.replace(cfg.optimizer, momentum=momentum))
    return dataclasses.replace(cfg, lr=theory.best_constant_rate(low, high)[0])


def fit_gradient(cfg: RunConfig, data: Dataset, device: torch.device,
                 progress: Callable[[int], object] | None = None) -> Fit:
    """Train a gradient model on all replicates at once with the shared loop (`progress`: train's bar hook);
    with stop_at_target, training ends at the first evaluation that meets ttt's target."""
    w0, b0 = init_params(cfg.model, data.X.shape[-1], seeds(cfg, "init", cfg.init_seed), data.X.dtype)
    model = build_model(w0.to(device), b0.to(device), cfg.model, cfg.lr, cfg.optimizer)
    idx = batch_indices(data.X.shape[1], cfg.batch_size, cfg.steps, cfg.data.streaming,
                        seeds(cfg, "order", cfg.order_seed), cfg.data.sampling is Sampling.replacement)
    ols = least_squares_fit(cfg, data) if cfg.stop_at_target else None
    stop = analysis.target_loss(ols[2], cfg.target_rel) if ols else None
    res = train(model, data.to(device), None if idx is None else idx.to(device), cfg.steps, cfg.eval_every,
                progress, stop, cfg.eval_spacing is Spacing.log)
    histories = loss_histories(res, cfg.replicates > 1)
    fit = Fit(res.w, res.b, histories, curves=res.train_loss, w_init=w0.numpy(), b_init=b0.numpy(),
              full_curve=histories[contract.FULL_LOSS], diverged_at=res.diverged_at,
              steps_done=len(res.train_loss), interrupted=res.interrupted, ols=ols)
    fit.finals = {contract.TIME_TRAIN: res.seconds, contract.DIVERGED: float(fit.diverged_step is not None),
                  contract.DIVERGED_FRACTION: float((res.diverged_at > 0).mean()),
                  contract.STEPS_DONE: float(fit.steps_done)}
    if fit.diverged_step is not None:
        fit.finals[contract.DIVERGED_STEP] = float(fit.diverged_step)
    return fit


def fit_solver(cfg: RunConfig, data: Dataset) -> Fit:
    """closed_form or grid: no optimizer, no loop."""
    start = time.perf_counter()
    if cfg.model.name == "closed_form":
        fit = Fit(*closed_form(data.X, data.y, solver_model(cfg)))
    else:
        g = grid_search(data.X, data.y, cfg.model)
        costs = g.costs.mean(0).numpy()
        fit = Fit(g.w, g.b, grid=(g.grid.numpy(), costs))
        fit.histories[contract.GRID_COST] = (np.arange(len(costs)), costs)
    fit.finals = {contract.TIME_TRAIN: time.perf_counter() - start, contract.DIVERGED: 0.0,
                  contract.DIVERGED_FRACTION: 0.0}
    X, y = data.X.double(), data.y.double()
    for key, value in ((contract.FULL_LOSS, mean_loss(affine(X, fit.w, fit.b), y, cfg.model.loss)),
                       (contract.TEST_LOSS, mean_loss(affine(data.X_test.double(), fit.w, fit.b), data.y_test.double(),
                                               cfg.model.loss))):
        fit.histories[key] = (np.array([0]), np.array([float(value.mean())]))
    fit.full_curve = fit.histories[contract.FULL_LOSS]
    return fit


def curvature(cfg: RunConfig, n: int) -> float:
    """Factor turning A^T A into the Hessian of the objective the optimizer follows."""
    c = loss_scale(cfg.model.loss)
    if getattr(cfg.model, "reduction", None) is Reduction.sum:  # solvers have no reduction
        return 2 * c * (cfg.batch_size or n) / n
    return 2 * c / n


def score(cfg: RunConfig, data: Dataset, fit: Fit) -> tuple[dict[str, float], dict[str, str]]:
    """Final metrics and tags: errors (mean over finite replicates), est/, pred/, theory/, ttt/."""
    ok = torch.isfinite(fit.w.double()).all(1) & torch.isfinite(fit.b.double())
    w, b = fit.w.double().cpu()[ok], fit.b.double().cpu()[ok]
    data = float64(data)
    w_ols, b_ols, ols_loss = fit.ols or least_squares_fit(cfg, data)
    X = data.X
    noise_mean, noise_var = noise_moments(cfg.data, cfg.noise)
    out = {contract.OLS_LOSS: ols_loss, contract.EST_FINITE_REPLICATES: float(ok.sum())}
    design = (cfg.model.fit_intercept, noise_var, curvature(cfg, X.shape[1]))
    out.update(data.memo(("design", *design), lambda: analysis.design_metrics(data.X, *design)))
    if len(w):
        out.update(analysis.parameter_errors(w, b, cfg.data.true_w, cfg.data.true_b, w_ols[ok], b_ols[ok]))
        out.update(analysis.estimation_metrics(w, b, cfg.data.true_w, cfg.data.true_b, w_ols[ok]))
        X_grid = data.X_test.double().cpu()
        f_grid = X_grid @ torch.tensor(cfg.data.true_w, dtype=torch.float64) + cfg.data.true_b + noise_mean
        out.update(analysis.prediction_metrics(w, b, X_grid, f_grid, data.y_test.double().cpu(), noise_var))
        for x in cfg.data.predict_at:
            out[contract.PREDICT_AT.format(x=f"{x:g}")] = float((w[:, 0] * x + b).mean())
    if fit.full_curve is not None and len(fit.full_curve[0]) and not cfg.is_solver:
        per_step = fit.finals[contract.TIME_TRAIN] / max(fit.steps_done, 1)
        out.update(analysis.time_to_target(fit.full_curve[0], fit.full_curve[1], out[contract.OLS_LOSS], cfg.target_rel,
                                           cfg.batch_size or X.shape[1], per_step, cfg.steps))
    momentum = getattr(cfg.optimizer, "momentum", 0.0) if cfg.optimizer.name == "momentum" else 0.0
    verdict = "n/a" if cfg.is_solver else analysis.stability_verdict(
        cfg.optimizer.name, cfg.lr, momentum, out[contract.THEORY_LR_MAX], fit.diverged_step is not None)
    kind = theory_kind(cfg)
    if kind != "none" and cfg.data.streaming:
        out.update(streaming_metrics(cfg, fit, out[contract.OLS_LOSS]))
    elif kind != "none" and bool(ok.any()):
        predicted = predicted_metrics(cfg, data, fit, ok, stable=verdict in ("stable_as_predicted", "n/a",
                                                                          "diverged_below_bound"),
                                      floor=out[contract.OLS_LOSS])
        out.update({k: v for k, v in predicted.items() if np.isfinite(v)})
    if contract.EST_W_BIAS2_COND in out and contract.EST_W_MSE in out:
        out[contract.EST_W_VAR_COND] = out[contract.EST_W_MSE] - out[contract.EST_W_BIAS2_COND]
    out.update(gaussian_design_metrics(cfg))
    return out, {"stability": verdict, "theory": kind}


def full_batch(cfg: RunConfig) -> bool:
    """Every step sees the whole training set: no batch noise (schema.full_batch, the check's own rule)."""
    return schema.full_batch(cfg.batch_size, cfg.data)


def theory_kind(cfg: RunConfig) -> str:
    """What theory says about this run: exact (ridge / least squares, full-batch gradient descent and heavy ball;
    SGD and heavy ball on streaming Gaussian rows, where the expected loss is exact at every step), approximate
    (mini-batch SGD and momentum on a fixed set: small-rate batch noise) or none (RMSprop, Adam, Nesterov,
    dampening, the grid, other streaming data)."""
    if cfg.model.name == "grid":
        return "none"
    if cfg.model.name == "closed_form":
        return "exact" if not cfg.data.streaming else "none"
    opt = cfg.optimizer
    if opt.name not in contract.GD_FAMILY or opt.nesterov or opt.dampening:
        return "none"
    if cfg.data.streaming:
        return "exact" if streaming_gaussian(cfg) else "none"
    return "exact" if full_batch(cfg) else "approximate"


def streaming_gaussian(cfg: RunConfig) -> bool:
    """Fresh N(0, Sigma) rows every step, y = x.w + Gaussian noise, no intercept to fit or to miss, no weight
    decay: where theory's streaming recursion is exact."""
    d = cfg.data
    return (d.x_dist is XDist.normal and d.x_mean == 0 and d.noise_dist is NoiseDist.gaussian and d.true_b == 0
            and not cfg.model.fit_intercept and not cfg.optimizer.weight_decay)


def streaming_metrics(cfg: RunConfig, fit: Fit, floor: float) -> dict[str, float]:
    """theory/steps_to_target of the run's own (lr, batch, momentum) from the expected-loss recursion
    (theory.streaming_losses), ttt's target above the run's least-squares loss `floor`; theory/noise_scale at the
    start."""
    lam = torch.from_numpy(eigenvalues(cfg.data) * cfg.data.x_std**2)
    start = torch.from_numpy((np.atleast_2d(fit.w_init) - np.asarray(cfg.data.true_w)) @ basis(cfg.data))
    lr = cfg.lr * (cfg.batch_size if cfg.model.reduction is Reduction.sum else 1)
    noise_var = noise_moments(cfg.data, cfg.noise)[1]
    target = analysis.target_loss(floor, cfg.target_rel)
    steps = theory.streaming_steps_to_target(lam, start.square().mean(0), lr, cfg.optimizer.momentum, cfg.batch_size,
                                             noise_var, loss_scale(cfg.model.loss), target, theory_grid(cfg))
    out = {contract.THEORY_NOISE_SCALE: theory.noise_scale(lam, start, noise_var)}
    if np.isfinite(steps):
        out[contract.THEORY_STEPS_TO_TARGET] = steps
    return out


def theory_problem(cfg: RunConfig, data: Dataset, fit: Fit, ok: torch.Tensor) -> theory.Problem:
    """The finite replicates' data, starts and truth, as theory.Problem."""
    intercept = cfg.model.fit_intercept
    X, y = data.X.double().cpu()[ok], data.y.double().cpu()[ok]
    true_w = torch.tensor(cfg.data.true_w, dtype=torch.float64)
    shift = cfg.data.true_b + noise_moments(cfg.data, cfg.noise)[0]  # E[y | x] = x.w + b + noise mean
    A, A_test = analysis.design(X, intercept), analysis.design(data.X_test, intercept)[0]
    if len(fit.w_init):
        start = [torch.as_tensor(fit.w_init, dtype=torch.float64)]
        start += [torch.as_tensor(fit.b_init, dtype=torch.float64).unsqueeze(-1)] if intercept else []
        theta0 = torch.cat(start, -1)[ok]
    else:
        theta0 = torch.zeros(A.shape[0], A.shape[-1], dtype=torch.float64)
    truth = torch.cat([true_w, torch.tensor([cfg.data.true_b], dtype=torch.float64)]) if intercept else true_w
    wd = solver_model(cfg).weight_decay if cfg.model.name == "closed_form" else cfg.optimizer.weight_decay
    return theory.Problem(A, y, X @ true_w + shift, theta0, A_test, A_test[:, :len(true_w)] @ true_w + shift, truth,
                          noise_moments(cfg.data, cfg.noise)[1], curvature(cfg, X.shape[1]), wd,
                          labels_fixed="data" not in cfg.replicate_over)


def predicted_metrics(cfg: RunConfig, data: Dataset, fit: Fit, ok: torch.Tensor, stable: bool,
                      floor: float) -> dict[str, float]:
    """What theory predicts for this run's replicates: theory/est/*, theory/pred/* (where the run is stable),
    theory/best_weight_decay, theory/best_steps and (full batch) theory/steps_to_target for ttt's target
    above the least-squares loss `floor`."""
    pr = theory_problem(cfg, data, fit, ok)
    d = len(cfg.data.true_w)
    out = {contract.THEORY_BEST_WEIGHT_DECAY: theory.best_weight_decay(pr)}
    if cfg.model.name == "closed_form":
        moments = theory.ridge(pr)
        return {**out, **theory.summarize(pr, moments, d), **conditional_bias(pr, moments, d)}
    momentum = cfg.optimizer.momentum
    if not momentum:
        out[contract.THEORY_BEST_STEPS] = theory.best_steps(pr, cfg.lr, 100 * cfg.steps)
    if not stable:
        return out
    moments = theory.gradient_descent(pr, cfg.lr, momentum, fit.steps_done)
    if full_batch(cfg):
        out.update(conditional_bias(pr, moments, d))
        out[contract.THEORY_STEPS_TO_TARGET] = steps_to_target(cfg, pr, floor)
    else:
        noise = theory.sgd_noise(pr, cfg.lr, momentum, cfg.steps, cfg.batch_size)
        out[contract.THEORY_W_VAR_SGD] = float(noise[:, :d, :d].diagonal(dim1=1, dim2=2).sum(1).mean())
        moments.cov = moments.cov + noise
    return {**out, **theory.summarize(pr, moments, d)}


def steps_to_target(cfg: RunConfig, pr: theory.Problem, floor: float) -> float:
    """theory/steps_to_target on the run's evaluation grid, extended past the budget (theory_grid): the full-data
    loss (c/n |A theta - y|^2) above least squares is c/n / s in A^T A's eigen-terms."""
    loss_factor = loss_scale(cfg.model.loss) / pr.A.shape[1] / pr.s
    gap = analysis.target_loss(floor, cfg.target_rel) - floor
    return theory.steps_to_target(pr, cfg.lr, cfg.optimizer.momentum, loss_factor, gap, theory_grid(cfg))


def theory_grid(cfg: RunConfig) -> list[int]:
    """The run's evaluation steps, then the same spacing on past the budget to 10 budgets: where theory looks for
    the target (a prediction past the budget says how far off a censored run was)."""
    log = cfg.eval_spacing is Spacing.log
    return sorted(set(evaluation_steps(cfg.steps, cfg.eval_every, log))
                  | set(evaluation_steps(10 * cfg.steps, cfg.eval_every, log)))


def conditional_bias(pr: theory.Problem, moments: theory.Moments, d: int) -> dict[str, float]:
    """est/w_bias2_cond: the bias of w given each replicate's design, ||E[w_hat | X] - w||^2 with E[w_hat | X]
    exact (the estimator is linear in the labels), averaged over the replicates' designs."""
    gap = moments.mean[:, :d] - pr.truth[:d]
    return {contract.EST_W_BIAS2_COND: float(gap.square().sum(1).mean())}


def solver_model(cfg: RunConfig) -> ClosedFormConfig:
    """The closed-form model as fitted: with model.optimal_ridge, its weight decay is isotropic theory's optimum
    for this n, p, |w| and noise."""
    if not getattr(cfg.model, "optimal_ridge", False):
        return cfg.model
    wd = theory.optimal_ridge_weight_decay(cfg.data.n_train, len(cfg.data.true_w), w_norm2(cfg),
                                              noise_moments(cfg.data, cfg.noise)[1], loss_scale(cfg.model.loss))
    return dataclasses.replace(cfg.model, weight_decay=wd)


def w_norm2(cfg: RunConfig) -> float:
    return float(np.square(cfg.data.true_w).sum())


def isotropic_gaussian(cfg: RunConfig) -> bool:
    """Rows N(0, s^2 I) redrawn by every replicate, Gaussian noise, no intercept: where theory's isotropic
    Gaussian expectations hold."""
    d = cfg.data
    return (d.x_dist is XDist.normal and d.x_mean == 0 and d.noise_dist is NoiseDist.gaussian and not d.streaming
            and not d.fixed_design and "data" in cfg.replicate_over and not cfg.model.fit_intercept)


def gaussian_design_metrics(cfg: RunConfig) -> dict[str, float]:
    """theory/gauss/*: the expectations over design and noise (theory.least_squares_risk, optimal_ridge_risk)
    of a closed-form run on isotropic Gaussian data: least squares / minimum norm (finite n, p) or ridge at
    the optimal penalty (the Marchenko-Pastur limit); none where the expectation is infinite (|p - n| <= 1)."""
    if cfg.model.name != "closed_form" or not isotropic_gaussian(cfg):
        return {}
    n, p, x_var = cfg.data.n_train, len(cfg.data.true_w), cfg.data.x_std**2
    noise_var = noise_moments(cfg.data, cfg.noise)[1]
    if cfg.model.optimal_ridge:
        return {contract.THEORY_GAUSS_RIDGE_W_MSE: theory.optimal_ridge_risk(n, p, w_norm2(cfg), noise_var, x_var),
                contract.THEORY_GAUSS_RIDGE_WEIGHT_DECAY: solver_model(cfg).weight_decay}
    if cfg.model.weight_decay:
        return {}
    risk = theory.least_squares_risk(n, p, w_norm2(cfg), noise_var, x_var)
    out = {contract.THEORY_GAUSS_W_MSE: risk["mse"], contract.THEORY_GAUSS_W_BIAS2_COND: risk["bias2"],
           contract.THEORY_GAUSS_W_VAR_COND: risk["var"]}
    return {k: v for k, v in out.items() if np.isfinite(v)}
