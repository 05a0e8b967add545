"""The sweep's life in MLflow: one parent run per multirun, its jobs nested under it,
and the summary table at the end. Hydra calls `SweepCallback` in the launching process."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from linreg_lab import console, describe, tracking
from linreg_lab.config import sweep_hash
from linreg_lab.contract import (
    B_ERROR,
    BEST_OBJECTIVE,
    BEST_RUN_ID,
    COMMAND,
    CONFIG_HASH,
    FULL_LOSS,
    OPTIMIZATION_RESULTS,
    OUTCOME,
    OVERRIDES,
    PARENT_ENV,
    RUN_KIND,
    SIZE_ENV,
    SWEEP_DIR,
    SWEEP_HASH,
    TIME_TOTAL,
    W_ERROR,
)
from linreg_lab.lifecycle import uninterrupted
from linreg_lab.store_check import StoreError
from linreg_lab.store_uri import resolve_tracking_uri

SUMMARY_COLUMNS = {
    "run_name": "run",
    "status": "status",
    f"tags.{OUTCOME}": "outcome",
    f"metrics.{FULL_LOSS}": "loss (train set)",
    f"metrics.{W_ERROR}": "|w err|",
    f"metrics.{B_ERROR}": "b err",
    f"metrics.{TIME_TOTAL}": "time s",
}
_open: dict[str, object] = {}  # the parent this process opened: uri, ids, command, objective, direction, folder


def typed_command() -> str:
    """The command line that started this sweep, as the user typed it (either entry point)."""
    prog = "linreg-lab" if Path(sys.argv[0]).name == "linreg-lab" else "python -m linreg_lab.run"
    return f"{prog} {shlex.join(sys.argv[1:])}".strip()


def report_hint(run_id: str) -> str:
    """The description's report line until a report is made."""
    return (f"not made yet: `python -m linreg_lab.report --sweep {run_id}` writes report/report.html "
            "and logs it here, under this run's artifacts `report/`")


class SweepCallback(Callback):
    """Opens the parent run before the first job, closes it with a summary after the last."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        uri = resolve_tracking_uri(OmegaConf.select(config, "mlflow.tracking_uri"), config.hydra.runtime.cwd)
        if tracking.start_creating_store(uri):  # a new store is made meanwhile: load torch, which jobs need anyway
            import linreg_lab.job  # noqa: F401
        try:
            with uninterrupted():  # a stop signal takes effect once the parent run exists and is known (_open)
                open_parent(config, uri)
        except StoreError as err:
            sys.exit(f"linreg_lab: error: {err}")

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        console.job_done()  # moves the sweep's bar when the job ran in this process (basic launcher)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        finish_sweep(None)


def open_parent(config: DictConfig, uri: str) -> None:
    """Open (or, resuming, reopen) the sweep's parent run and remember it in _open."""
    client, exp_id = tracking.open_experiment(uri, config.mlflow.experiment)
    task_overrides = list(config.hydra.overrides.task)
    overrides = " ".join(task_overrides)
    identity = sweep_hash(task_overrides)
    run_id = tracking.latest_run_with(client, exp_id, SWEEP_HASH, identity) if config.resume else None
    command = typed_command()
    expected = os.environ.get(SIZE_ENV, "?")
    if run_id:
        tracking.reopen_run(client, run_id, {SWEEP_DIR: str(config.hydra.sweep.dir)})
        print(f"resuming sweep: parent run {run_id}", flush=True)
    else:
        tags = {RUN_KIND: "sweep", OVERRIDES: overrides, SWEEP_DIR: str(config.hydra.sweep.dir),
                SWEEP_HASH: identity, COMMAND: command}
        run_id = tracking.start_run(client, exp_id, f"sweep {overrides}".strip(), tags)
    tracking.describe_run(client, run_id, f"**Command:** `{command}`\n\n**Jobs:** {expected}, running.")
    os.environ[PARENT_ENV] = run_id  # inherited by jobs, local or in worker processes
    direction = OmegaConf.select(config, "hydra.sweeper.direction")  # Optuna's; a grid's objective is minimized
    _open.update(uri=uri, experiment_id=exp_id, run_id=run_id, command=command,
                 objective=str(OmegaConf.select(config, "objective") or W_ERROR),
                 maximize=str(direction).lower() == "maximize", folder=str(config.hydra.sweep.dir))
    print(f"sweep of {expected} jobs, parent run {run_id} in {uri}", flush=True)
    console.start_sweep(int(expected) if expected.isdigit() else None)


def finish_sweep(abandoned: str | None) -> None:
    """Print the summary of the open sweep and close its parent run.

    `abandoned` is None when Hydra finished the sweep, else the status to close it with
    (FAILED after a job raised, KILLED after a signal)."""
    if not _open:
        return
    uri, exp_id, run_id, command = _open["uri"], _open["experiment_id"], _open["run_id"], _open["command"]
    objective, maximize, folder = _open["objective"], _open["maximize"], Path(_open["folder"])
    _open.clear()
    client = tracking.connect(uri)
    with uninterrupted():  # a second signal waits until the parent is closed (a few seconds)
        close_sweep(client, uri, exp_id, run_id, command, objective, maximize, folder, abandoned)


def close_sweep(client, uri: str, exp_id: str, run_id: str, command: str, objective: str, maximize: bool,
                folder: Path, abandoned: str | None) -> None:
    """finish_sweep's work, once the open sweep's state is taken."""
    if abandoned == "KILLED":  # its jobs in flight end KILLED, whichever process ran them
        tracking.close_stopped_jobs(client, exp_id, run_id)
    tracking.reap_orphans(client, exp_id)  # a job whose worker process died (pool, joblib) ends FAILED now
    console.end_sweep()
    os.environ.pop(PARENT_ENV, None)
    rows = tracking.child_runs(client, exp_id, run_id)
    done = {r.get(f"tags.{CONFIG_HASH}") for r in rows if r["status"] == "FINISHED"}
    failed = [f"{r['run_name']} [{r.get(f'tags.{OVERRIDES}', '')}] {r['status']}" for r in rows
              if r["status"] != "FINISHED" and r.get(f"tags.{CONFIG_HASH}") not in done]  # a resume may redo it
    print_summary(rows)
    if failed:
        print("not finished:\n  " + "\n  ".join(failed), flush=True)
    best = describe.winner(rows, objective, maximize)
    if best is not None:
        print(describe.winner_line(best, objective, maximize), flush=True)
    serve = tracking.ui_command(uri)
    print(f"open the MLflow UI: {serve + ', then browse to ' if serve else ''}{tracking.ui_link(uri, exp_id)}\n"
          f"  (the sweep is one row there: its + shows the jobs; the sweep's own page: "
          f"{tracking.ui_link(uri, exp_id, run_id)})", flush=True)
    expected = os.environ.get(SIZE_ENV, "?")
    winner = describe.winner_line(best, objective, maximize, markdown=True) if best is not None else None
    tracking.describe_run(client, run_id, describe.sweep_note(command, rows, expected, report_hint(run_id), winner))
    finals = describe.scaling_metrics(rows)
    if best is not None:
        finals[BEST_OBJECTIVE.format(objective=objective)] = float(best[f"metrics.{objective}"])
    if finals or best is not None:
        tracking.log_metrics(client, run_id, {}, finals, {BEST_RUN_ID: best["run_id"]} if best is not None else None)
    if (folder / OPTIMIZATION_RESULTS).is_file():  # Optuna's own result
        tracking.log_artifact(client, run_id, folder / OPTIMIZATION_RESULTS)
    status = abandoned or ("FAILED" if failed else "FINISHED")
    error = f"jobs not finished: {', '.join(failed)}. " if failed else ""
    if abandoned:
        error += f"The sweep stopped early: {len(rows)} of {expected} jobs reached the store."
    tracking.end_run(client, run_id, status, error or None)


def print_summary(rows: list[dict]) -> None:
    """One line per job, aligned: settings (in the name), status, final loss, w/b errors, time."""
    if not rows:
        print("no job of this sweep reached the store", flush=True)
        return
    rows = sorted(rows, key=lambda r: r["start_time"])
    print(describe.table([[r.get(key) for key in SUMMARY_COLUMNS] for r in rows], list(SUMMARY_COLUMNS.values())),
          flush=True)


def close_abandoned_sweep(status: str) -> None:
    """Called when the command exits: a sweep Hydra left open (a job raised, a signal) is closed."""
    if _open:
        print("the sweep stopped early; summary of what ran:", file=sys.stderr)
        finish_sweep(status)
