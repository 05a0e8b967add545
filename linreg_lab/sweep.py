"""The sweep's life in MLflow: one parent run per multirun, its jobs nested under it,
and the summary table at the end. Hydra calls `SweepCallback` in the launching process."""

from __future__ import annotations

import os
import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from linreg_lab import tracking
from linreg_lab.config import resolve_tracking_uri, sweep_hash
from linreg_lab.run import SIZE_ENV

SUMMARY_COLUMNS = {
    "run_name": "run",
    "status": "status",
    "tags.outcome": "outcome",
    "metrics.train/full_loss": "loss (train set)",
    "metrics.w_error/l2": "|w err|",
    "metrics.b_error": "b err",
    "metrics.time/total_s": "time s",
}
_open: dict[str, str] = {}  # the parent run this process opened: uri, experiment_id, run_id


class SweepCallback(Callback):
    """Opens the parent run before the first job, closes it with a summary after the last."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        uri = resolve_tracking_uri(OmegaConf.select(config, "mlflow.tracking_uri"), config.hydra.runtime.cwd)
        client, exp_id = tracking.open_experiment(uri, config.mlflow.experiment)
        task_overrides = list(config.hydra.overrides.task)
        overrides = " ".join(task_overrides)
        identity = sweep_hash(task_overrides)
        run_id = tracking.latest_run_with(client, exp_id, "sweep_hash", identity) if config.resume else None
        if run_id:
            tracking.reopen_run(client, run_id)
            print(f"resuming sweep: parent run {run_id}", flush=True)
        else:
            tags = {"run_kind": "sweep", "overrides": overrides, "sweep_dir": str(config.hydra.sweep.dir),
                    "sweep_hash": identity}
            run_id = tracking.start_run(client, exp_id, f"sweep {overrides}".strip(), tags)
        os.environ[tracking.PARENT_ENV] = run_id  # inherited by jobs, local or in worker processes
        _open.update(uri=uri, experiment_id=exp_id, run_id=run_id)
        print(f"sweep of {os.environ.get(SIZE_ENV, '?')} jobs, parent run {run_id} in {uri}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        finish_sweep(None)


def finish_sweep(abandoned: str | None) -> None:
    """Print the summary of the open sweep and close its parent run.

    `abandoned` is None when Hydra finished the sweep, else the status to close it with
    (FAILED after a job raised, KILLED after a signal)."""
    if not _open:
        return
    uri, exp_id, run_id = _open["uri"], _open["experiment_id"], _open["run_id"]
    _open.clear()
    os.environ.pop(tracking.PARENT_ENV, None)
    client = tracking.connect(uri)
    tracking.reap_orphans(client, exp_id)  # a job whose worker process died (pool, joblib) ends FAILED now
    rows = tracking.child_runs(client, exp_id, run_id)
    done = {r.get("tags.config_hash") for r in rows if r["status"] == "FINISHED"}
    failed = [f"{r['run_name']} [{r.get('tags.overrides', '')}] {r['status']}" for r in rows
              if r["status"] != "FINISHED" and r.get("tags.config_hash") not in done]  # a resume may redo it
    print_summary(rows)
    if failed:
        print("not finished:\n  " + "\n  ".join(failed), flush=True)
    print(f"open the MLflow UI: {tracking.ui_command(uri)}", flush=True)
    expected = os.environ.get(SIZE_ENV, "?")
    status = abandoned or ("FAILED" if failed else "FINISHED")
    error = f"jobs not finished: {', '.join(failed)}. " if failed else ""
    if abandoned:
        error += f"The sweep stopped early: {len(rows)} of {expected} jobs reached the store."
    tracking.end_run(client, run_id, status, error or None)


def print_summary(rows: list[dict]) -> None:
    """One line per job: settings (in the name), status, final loss, w/b errors, time."""
    import pandas as pd

    if not rows:
        print("no job of this sweep reached the store", flush=True)
        return
    rows = sorted(rows, key=lambda r: r["start_time"])
    table = pd.DataFrame(rows).reindex(columns=list(SUMMARY_COLUMNS)).rename(columns=SUMMARY_COLUMNS)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)


def close_abandoned_sweep(status: str) -> None:
    """Called when the command exits: a sweep Hydra left open (a job raised, a signal) is closed."""
    if _open:
        print("the sweep stopped early; summary of what ran:", file=sys.stderr)
        finish_sweep(status)
