"""One Hydra job: draw the data, fit the model, score it, and record everything in one MLflow run."""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from linreg_lab import tracking
from linreg_lab.analysis import least_squares, parameter_errors
from linreg_lab.config import ConfigError, RunConfig
from linreg_lab.data import Dataset, batch_indices, make_dataset
from linreg_lab.models import build_model, closed_form, grid_search, init_params, mean_loss
from linreg_lab.train import train

HISTORY_POINTS = 5000  # train/loss is logged at every step up to this many steps, thinned above


@dataclass
class JobContext:
    """What the entry point knows about this job besides its config."""

    tracking_uri: str
    params: dict[str, object]  # the resolved config, flattened with dotted keys
    config_yaml: str
    overrides: list[str]
    config_hash: str = ""
    parent_run_id: str | None = None
    label: str = ""  # "[3/4]" inside a sweep


@dataclass
class Fit:
    """Everything a job measured, ready to log."""

    w: torch.Tensor
    b: torch.Tensor
    histories: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    finals: dict[str, float] = field(default_factory=dict)
    curve: np.ndarray = field(default_factory=lambda: np.empty(0))
    w_init: np.ndarray = field(default_factory=lambda: np.empty(0))
    b_init: np.ndarray = field(default_factory=lambda: np.empty(0))
    grid: tuple[np.ndarray, np.ndarray] | None = None
    diverged_step: int | None = None
    steps_done: int = 0
    interrupted: KeyboardInterrupt | None = None


def pick_device(name: str) -> torch.device:
    """auto -> cuda, then mps, then cpu; an explicit device that is missing is a ConfigError."""
    has = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if has[d]))
    if not has[name]:
        here = ", ".join(["auto"] + [d for d, ok in has.items() if ok])
        raise ConfigError(f"device={name} is not available on this machine; allowed here: {here}")
    return torch.device(name)


def run_name(cfg: RunConfig) -> str:
    """Readable name from the key settings, e.g. adam-lr0.01-bs10-noise0.01-s0."""
    bs = "full" if cfg.batch_size is None else cfg.batch_size
    parts = [] if cfg.model.name == "linear" else [cfg.model.name]
    if cfg.is_solver:
        return "-".join(parts + [f"noise{cfg.noise:g}", f"s{cfg.seed}"])
    return "-".join(parts + [cfg.optimizer.name, f"lr{cfg.lr:g}", f"bs{bs}", f"noise{cfg.noise:g}", f"s{cfg.seed}"])


def git_commit() -> str | None:
    """Commit of the checkout this package runs from, if it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def load_data(cfg: RunConfig) -> Dataset:
    """The run's dataset; a stream holds every sample its steps will draw."""
    n = cfg.steps * cfg.batch_size if cfg.data.streaming else cfg.data.n_train
    return make_dataset(cfg.data, cfg.noise, n, cfg.data_seed, getattr(torch, cfg.dtype))


def fit_gradient(cfg: RunConfig, data: Dataset, device: torch.device) -> Fit:
    """Train a gradient model with the shared loop and collect its histories."""
    w0, b0 = init_params(cfg.model, data.X.shape[1], cfg.init_seed, data.X.dtype)
    model = build_model(w0.to(device), b0.to(device), cfg.model, cfg.lr, cfg.optimizer)
    idx = batch_indices(len(data.X), cfg.batch_size, cfg.steps, cfg.data.streaming, cfg.order_seed)
    res = train(model, data.to(device), None if idx is None else idx.to(device), cfg.steps, cfg.eval_every,
                cfg.data.streaming)
    steps = np.arange(1, len(res.train_loss) + 1)
    thin = max(1, -(-len(steps) // HISTORY_POINTS))
    keep = np.unique(np.r_[steps[::thin] - 1, len(steps) - 1]) if len(steps) else np.empty(0, int)
    histories = {"train/loss": (steps[keep], res.train_loss[keep]), "test/loss": (res.eval_steps, res.test_loss)}
    if len(res.full_loss):
        histories["train/full_loss"] = (res.eval_steps, res.full_loss)
    finals = {"time/train_s": res.seconds, "diverged": float(res.diverged_step is not None)}
    if res.diverged_step is not None:
        finals["diverged_step"] = float(res.diverged_step)
    return Fit(res.w, res.b, histories, finals, curve=res.train_loss, w_init=w0.numpy(), b_init=b0.numpy(),
               diverged_step=res.diverged_step, steps_done=len(res.train_loss), interrupted=res.interrupted)


def fit_solver(cfg: RunConfig, data: Dataset) -> Fit:
    """closed_form or grid: no optimizer, no loop."""
    start = time.perf_counter()
    if cfg.model.name == "closed_form":
        w, b = closed_form(data.X, data.y, cfg.model)
        fit = Fit(w, b)
    else:
        g = grid_search(data.X, data.y, cfg.model)
        fit = Fit(g.w, g.b, grid=(g.grid.numpy(), g.costs.numpy()))
        fit.histories["grid/cost"] = (np.arange(len(g.costs)), g.costs.numpy())
    fit.finals["time/train_s"] = time.perf_counter() - start
    fit.finals["diverged"] = 0.0
    for key, X, y in (("train/full_loss", data.X, data.y), ("test/loss", data.X_test, data.y_test)):
        value = mean_loss(X.double() @ fit.w.double() + fit.b.double(), y.double(), cfg.model.loss)
        fit.histories[key] = (np.array([0]), np.array([float(value)]))
    return fit


def score(cfg: RunConfig, data: Dataset, fit: Fit) -> dict[str, float]:
    """Final metrics: learned parameters, errors against the truth and against least squares."""
    w_ols, b_ols = least_squares(data.X, data.y, cfg.model.fit_intercept)
    out = parameter_errors(fit.w, fit.b, cfg.data.true_w, cfg.data.true_b, w_ols, b_ols)
    out.update({f"w/{i}": float(v) for i, v in enumerate(fit.w.double())})
    out["b"] = float(fit.b)
    X64, y64 = data.X.double().cpu(), data.y.double().cpu()
    out["ols/loss"] = float(mean_loss(X64 @ w_ols + b_ols, y64, cfg.model.loss))
    for x in cfg.data.predict_at:
        out[f"predict/{x:g}"] = float(fit.w[0] * x + fit.b)
    return out


def write_artifacts(cfg: RunConfig, ctx: JobContext, data: Dataset, fit: Fit, out: Path) -> None:
    """config.yaml, data.npz, curve.csv, and the pictures for one-feature data."""
    (out / "config.yaml").write_text(ctx.config_yaml)
    np.savez(out / "data.npz", X=data.X.cpu().numpy(), y=data.y.cpu().numpy(), w_init=fit.w_init,
             b_init=fit.b_init, X_test=data.X_test.cpu().numpy(), y_test=data.y_test.cpu().numpy())
    if len(fit.curve):
        steps = np.arange(1, len(fit.curve) + 1)
        np.savetxt(out / "curve.csv", np.c_[steps, fit.curve], delimiter=",", header="step,train_loss",
                   comments="", fmt=["%d", "%.9g"])
    if data.X.shape[1] != 1:
        return
    from linreg_lab import plots  # matplotlib costs ~0.5 s: only runs that draw pay it

    name = run_name(cfg)
    plots.plot_fit(data.X.cpu().numpy(), data.y.cpu().numpy(), float(fit.w[0]), float(fit.b),
                   cfg.data.true_w[0], cfg.data.true_b, out / "fit.png", name)
    if fit.grid is not None:
        grid_w, costs = fit.grid
        np.savetxt(out / "grid.csv", np.c_[grid_w, costs], delimiter=",", header="w,cost", comments="")
        plots.plot_grid_cost(grid_w[:, 0], costs, float(fit.w[0]), out / "grid_cost.png", name)


def job_tags(cfg: RunConfig, ctx: JobContext, device: torch.device) -> dict[str, str]:
    """Tags set when the run is created."""
    tags = {"run_kind": "job", "device": str(device), "torch_version": torch.__version__,
            "overrides": " ".join(ctx.overrides), "model": cfg.model.name, "config_hash": ctx.config_hash}
    if cfg.experiment:
        tags["preset"] = cfg.experiment
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    return tags


def run_job(cfg: RunConfig, ctx: JobContext) -> dict[str, float]:
    """Do the whole job inside one MLflow run; the run never stays RUNNING."""
    start = time.perf_counter()
    device = pick_device(cfg.device)
    client, exp_id = tracking.open_experiment(ctx.tracking_uri, cfg.mlflow.experiment)
    if cfg.resume:
        done = tracking.finished_run_with(client, exp_id, "config_hash", ctx.config_hash)
        if done:
            print(f"{ctx.label}{run_name(cfg)}: already FINISHED as run {done}, skipped (resume=true)", flush=True)
            return {}
    run_id = tracking.start_run(client, exp_id, run_name(cfg), job_tags(cfg, ctx, device), ctx.parent_run_id)
    try:
        fit, finals = fit_and_log(cfg, ctx, client, run_id, device, start)
    except KeyboardInterrupt as err:
        tracking.end_run(client, run_id, "KILLED", f"interrupted: {err or 'SIGINT'}")
        raise
    except BaseException as err:
        tracking.end_run(client, run_id, "FAILED", f"{type(err).__name__}: {err}")
        raise
    if fit.interrupted is not None:  # what was computed is logged; now stop the sweep
        tracking.end_run(client, run_id, "KILLED", f"interrupted at step {fit.steps_done}: {fit.interrupted}")
        raise fit.interrupted
    tracking.end_run(client, run_id, "FINISHED")
    print_result(cfg, ctx, fit, finals)
    return finals


def fit_and_log(cfg: RunConfig, ctx: JobContext, client, run_id: str, device: torch.device,
                start: float) -> tuple[Fit, dict[str, float]]:
    """Params first (a failed run still says what it was), then fit, artifacts, metrics."""
    with tempfile.TemporaryDirectory(prefix="linreg_lab-") as tmp:
        out = Path(tmp)
        tracking.log_params(client, run_id, ctx.params, out)
        data = load_data(cfg)
        fit = fit_solver(cfg, data) if cfg.is_solver else fit_gradient(cfg, data, device)
        finals = {**fit.finals, **score(cfg, data, fit)}
        write_artifacts(cfg, ctx, data, fit, out)
        tracking.log_artifacts(client, run_id, out)
        finals["time/total_s"] = time.perf_counter() - start
        tracking.log_metrics(client, run_id, fit.histories, finals, fit.steps_done)
        outcome = "diverged" if fit.diverged_step is not None else "completed"
        tracking.set_tags(client, run_id, {"outcome": "interrupted" if fit.interrupted else outcome})
    return fit, finals


def print_result(cfg: RunConfig, ctx: JobContext, fit: Fit, finals: dict[str, float]) -> None:
    """The job's one line: settings and results."""
    hist = fit.histories.get("train/full_loss") or fit.histories["train/loss"]
    loss = hist[1][-1] if len(hist[1]) else float("nan")
    state = f" DIVERGED at step {fit.diverged_step}" if fit.diverged_step is not None else ""
    print(f"{ctx.label}{run_name(cfg)}: loss {loss:.4g}, |w-w_true| {finals.get('w_error/l2', float('nan')):.3g}, "
          f"b-b_true {finals.get('b_error', float('nan')):+.3g}, {finals['time/total_s']:.2f}s{state}", flush=True)
