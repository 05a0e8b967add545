"""One Hydra job: draw the data, fit the model, score it, and record everything in one MLflow run."""

from __future__ import annotations

import functools
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from linreg_lab import console, contract, curves, tracking
from linreg_lab.data import Dataset
from linreg_lab.devices import pick_device
from linreg_lab.fitting import Fit, fit_gradient, fit_solver, load_data, score, tuned
from linreg_lab.lifecycle import uninterrupted
from linreg_lab.schema import RunConfig


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
    sweep_dir: str | None = None  # inside a sweep: finds the parent where LINREG_LAB_PARENT_RUN_ID did not arrive


STREAM_KEPT = 1 << 20  # numbers of a stream data.npz keeps whole; a longer one: its first data.n_train rows
IN_NAME = ("optimizer", "lr", "batch_size", "noise", "seed", "model", "replicates", "experiment", "resume", "device",
           "mlflow.experiment", "mlflow.tracking_uri")  # overrides the name already shows, or that change no result


def run_name(cfg: RunConfig, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """Readable name from the key settings, e.g. manual-adam-lr0.01-bs10-noise0.01-s0-R8, then every other
    override as key=value (the last part of a dotted key, values cut at 24 characters), so the jobs of a
    sweep, which differ in their overrides, have different names."""
    bs = "full" if cfg.batch_size is None else cfg.batch_size
    parts = [] if cfg.model.name == "linear" else [cfg.model.name]
    reps = [f"R{cfg.replicates}"] if cfg.replicates > 1 else []
    if cfg.is_solver:
        parts += [f"noise{cfg.noise:g}", f"s{cfg.seed}"] + reps
    else:
        parts += [cfg.optimizer.name, f"lr{cfg.lr:g}", f"bs{bs}", f"noise{cfg.noise:g}", f"s{cfg.seed}"] + reps
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key.startswith("hydra") or key in IN_NAME:
            continue
        parts.append(f"{key.rsplit('.', 1)[-1]}={value[:24]}")
    return "-".join(parts)


@functools.cache  # one git call per process, not one per job
def git_commit() -> str | None:
    """Commit of the checkout this package runs from, if it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_artifacts(cfg: RunConfig, ctx: JobContext, data: Dataset, fit: Fit, out: Path) -> None:
    """config.yaml, data.npz, curves.npz, curve.csv, replicates.npz, and the pictures for one-feature data."""
    (out / contract.CONFIG_YAML).write_text(ctx.config_yaml)
    curves.save(out / contract.CURVES_NPZ, fit.histories)
    one = cfg.replicates == 1  # a single replicate keeps the tutorials' shapes: X (n, d), w_init (d,)
    pick = (lambda a: a[0]) if one else (lambda a: a)
    rows = data.X.shape[1]
    if cfg.data.streaming and data.X.numel() > STREAM_KEPT:  # a long stream's head; the rest: redrawn from the seeds
        rows = cfg.data.n_train
    np.savez(out / contract.DATA_NPZ, X=pick(data.X[:, :rows].cpu().numpy()), y=pick(data.y[:, :rows].cpu().numpy()),
             w_init=pick(fit.w_init) if len(fit.w_init) else fit.w_init,
             b_init=pick(fit.b_init) if len(fit.b_init) else fit.b_init,
             X_test=data.X_test.cpu().numpy(), y_test=data.y_test.cpu().numpy(),
             true_w=np.asarray(cfg.data.true_w, dtype=np.float64), true_b=np.float64(cfg.data.true_b))
    if len(fit.curves):
        with np.errstate(all="ignore"):
            mean = fit.curves[:, 0] if one else np.nanmean(fit.curves, 1)
        write_curve(out / contract.CURVE_CSV, mean)
    if not one:
        np.savez(out / contract.REPLICATES_NPZ, train_loss=fit.curves, w=fit.w.numpy(), b=fit.b.numpy(),
                 w_init=fit.w_init, b_init=fit.b_init, diverged_at=fit.diverged_at)
    if data.X.shape[-1] == 1:
        draw(cfg, ctx, data, fit, out)


def write_curve(path: Path, mean: np.ndarray) -> None:
    """step,train_loss lines, as np.savetxt(fmt=["%d", "%.9g"]) writes them, without its per-row formatting calls."""
    with open(path, "w") as f:
        f.write(f"{contract.CURVE_CSV_HEADER}\n")
        f.writelines(f"{step},{value:.9g}\n" for step, value in enumerate(mean.tolist(), 1))


def draw(cfg: RunConfig, ctx: JobContext, data: Dataset, fit: Fit, out: Path) -> None:
    """The fitted line over replicate 0's data, and the grid's cost curve."""
    from linreg_lab import plots  # matplotlib loads only for runs that draw

    name = run_name(cfg, ctx.overrides)
    plots.plot_fit(data.X[0].cpu().numpy(), data.y[0].cpu().numpy(), float(fit.w[0, 0]), float(fit.b[0]),
                   cfg.data.true_w[0], cfg.data.true_b, out / contract.FIT_PNG, name)
    if fit.grid is not None:
        grid_w, costs = fit.grid
        np.savetxt(out / contract.GRID_CSV, np.c_[grid_w, costs], delimiter=",", header="w,cost", comments="")
        plots.plot_grid_cost(grid_w[:, 0], costs, float(fit.w[0, 0]), out / contract.GRID_COST_PNG, name)


def job_tags(cfg: RunConfig, ctx: JobContext, device: torch.device) -> dict[str, str]:
    """Tags set when the run is created."""
    tags = {contract.RUN_KIND: "job", contract.DEVICE: str(device), contract.TORCH_VERSION: torch.__version__,
            contract.OVERRIDES: " ".join(ctx.overrides), contract.MODEL: cfg.model.name,
            contract.CONFIG_HASH: ctx.config_hash}
    if cfg.experiment:
        tags[contract.PRESET] = cfg.experiment
    commit = git_commit()
    if commit:
        tags[contract.GIT_COMMIT] = commit
    return tags


def step_bar(total: int):
    """A job's bar over its steps, for the training loop to move (drawn on a terminal only)."""
    return console.progress(total, "step")


def run_job(cfg: RunConfig, ctx: JobContext) -> dict[str, float]:
    """Do the whole job inside one MLflow run; the run never stays RUNNING. Returns its final metrics and each
    history's last value (a resumed job: its earlier run's)."""
    start = time.perf_counter()
    device = pick_device(cfg.device)
    if ctx.params.get("data.true_w") == []:  # drawn by the check (data.n_features): the run records them
        ctx.params["data.true_w"] = list(cfg.data.true_w)
    client, exp_id = tracking.open_experiment(ctx.tracking_uri, cfg.mlflow.experiment)
    name = run_name(cfg, ctx.overrides)
    if cfg.resume:
        done = tracking.finished_run_with(client, exp_id, contract.CONFIG_HASH, ctx.config_hash)
        if done:
            console.say(f"{ctx.label}{name}: already FINISHED as run {done}, skipped (resume=true)")
            return tracking.latest_metrics(client, done)  # what it returned then: a sweeper's objective
    data = None
    if cfg.theory_tuned:  # the rate (and momentum) theory sets from this data: the run's params are what it used
        data = load_data(cfg)
        cfg = tuned(cfg, data)
        ctx.params.update({"lr": cfg.lr, "optimizer.momentum": cfg.optimizer.momentum})
        name = run_name(cfg, ctx.overrides)
    # a worker of a cluster started on its own (Ray, SLURM) may not inherit the launching process's environment
    parent = ctx.parent_run_id or (tracking.latest_run_with(client, exp_id, contract.SWEEP_DIR, ctx.sweep_dir,
                                                                   "RUNNING")
                                   if ctx.sweep_dir else None)
    # the run's params go in with its metrics (one write); a run that fails or is interrupted first gets them then
    run_id, closed = None, []
    try:
        with uninterrupted():  # a stop signal during the run's creation takes effect once its id is known here
            run_id = tracking.start_run(client, exp_id, name, job_tags(cfg, ctx, device), parent)
        fit, finals = fit_and_log(cfg, ctx, data, client, run_id, device, start, closed)
    except KeyboardInterrupt as err:
        if run_id and not closed:
            tracking.end_run(client, run_id, "KILLED", f"interrupted: {str(err) or 'SIGINT'}", ctx.params)
        raise
    except BaseException as err:
        if run_id and not closed:
            tracking.end_run(client, run_id, "FAILED", f"{type(err).__name__}: {err}", ctx.params)
        raise
    if fit.interrupted is not None:  # what was computed is logged and the run ended KILLED; now stop the sweep
        raise fit.interrupted
    print_result(name, ctx, fit, finals)
    last = {key: float(values[-1]) for key, (_, values) in fit.histories.items() if len(values)}
    return {**last, **finals}  # a history's last value too: any metric can be a sweep's objective


def fit_and_log(cfg: RunConfig, ctx: JobContext, data: Dataset | None, client, run_id: str, device: torch.device,
                start: float, closed: list[str]) -> tuple[Fit, dict[str, float]]:
    """Fit (drawing the data unless given), write the artifacts, then log metrics and tags and end the run, in one
    write where the store allows; `closed` then holds the run's status (a stop signal that arrived during that
    write takes effect after it, and must not close the run a second time)."""
    data = load_data(cfg) if data is None else data
    fit = fit_solver(cfg, data) if cfg.is_solver else fit_gradient(cfg, data, device, step_bar)
    metrics, tags = score(cfg, data, fit)
    finals = {**fit.finals, **metrics}
    local = tracking.artifact_dir(client, run_id)
    if local is not None:  # written in place: no copy
        write_artifacts(cfg, ctx, data, fit, local)
    else:
        with tempfile.TemporaryDirectory(prefix="linreg_lab-") as tmp:
            write_artifacts(cfg, ctx, data, fit, Path(tmp))
            tracking.log_artifacts(client, run_id, Path(tmp))
    finals[contract.TIME_TOTAL] = time.perf_counter() - start
    outcome = "diverged" if fit.diverged_step is not None else "completed"
    tags[contract.OUTCOME] = "interrupted" if fit.interrupted else outcome
    status = "FINISHED"
    if fit.interrupted is not None:
        status, tags[contract.ERROR] = "KILLED", f"interrupted at step {fit.steps_done}: {fit.interrupted}"
    with uninterrupted():
        tracking.log_metrics(client, run_id, fit.histories, finals, tags, status, ctx.params)
        closed.append(status)
    return fit, finals


def print_result(name: str, ctx: JobContext, fit: Fit, finals: dict[str, float]) -> None:
    """The job's one line: settings and results."""
    hist = fit.histories.get(contract.FULL_LOSS) or fit.histories.get(contract.TRAIN_LOSS) or ([], [])
    loss = hist[1][-1] if len(hist[1]) else float("nan")
    state = f" DIVERGED at step {fit.diverged_step}" if fit.diverged_step is not None else ""
    w_err, b_err = finals.get(contract.W_ERROR, float("nan")), finals.get(contract.B_ERROR, float("nan"))
    console.say(f"{ctx.label}{name}: loss {loss:.4g}, |w-w_true| {w_err:.3g}, b-b_true {b_err:+.3g}, "
                f"{finals[contract.TIME_TOTAL]:.2f}s{state}")
