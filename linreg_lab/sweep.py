"""The sweep's life in MLflow: one parent run per multirun, its jobs nested under it,
and the summary table at the end. Hydra calls `SweepCallback` in the launching process."""

from __future__ import annotations

import math
import os
import sys

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from linreg_lab import tracking

SIZE_ENV = "LINREG_LAB_SWEEP_SIZE"
SUMMARY_COLUMNS = {
    "run_name": "run",
    "status": "status",
    "metrics.train/full_loss": "loss (train set)",
    "metrics.w_error/l2": "|w err|",
    "metrics.b_error": "b err",
    "metrics.time/total_s": "time s",
}
_open: dict[str, str] = {}  # the parent run this process opened: uri, experiment_id, run_id


def sweep_size(config: DictConfig) -> int:
    """Number of jobs: the product of the sweep lengths of every override and sweeper param."""
    overrides = list(config.hydra.overrides.task)
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    overrides += [f"{k}={v}" for k, v in params.items()]
    parsed = OverridesParser.create().parse_overrides(overrides)
    return math.prod(len(list(o.sweep_string_iterator())) for o in parsed if o.is_sweep_override())


class SweepCallback(Callback):
    """Opens the parent run before the first job, closes it with a summary after the last."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        uri = tracking.resolve_tracking_uri(OmegaConf.select(config, "mlflow.tracking_uri"),
                                            config.hydra.runtime.cwd)
        client, exp_id = tracking.open_experiment(uri, config.mlflow.experiment)
        overrides = " ".join(config.hydra.overrides.task)
        tags = {"run_kind": "sweep", "overrides": overrides, "sweep_dir": str(config.hydra.sweep.dir)}
        run_id = tracking.start_run(client, exp_id, f"sweep {overrides}".strip(), tags)
        os.environ[tracking.PARENT_ENV] = run_id  # inherited by jobs, local or in worker processes
        os.environ[SIZE_ENV] = str(sweep_size(config))
        _open.update(uri=uri, experiment_id=exp_id, run_id=run_id)
        print(f"sweep of {os.environ[SIZE_ENV]} jobs, parent run {run_id} in {uri}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        finish_sweep(ok_only=True)


def finish_sweep(ok_only: bool) -> None:
    """Print the summary of the open sweep, log it on the parent run and close that run."""
    if not _open:
        return
    uri, exp_id, run_id = _open["uri"], _open["experiment_id"], _open["run_id"]
    _open.clear()
    os.environ.pop(tracking.PARENT_ENV, None)
    client = tracking.connect(uri)
    rows = tracking.child_runs(client, exp_id, run_id)
    failed = [r["run_name"] for r in rows if r["status"] != "FINISHED"]
    print_summary(rows)
    print(f"open the MLflow UI: {tracking.ui_command(uri)}", flush=True)
    expected = os.environ.pop(SIZE_ENV, "?")
    status = "FINISHED" if ok_only and not failed else "FAILED"
    error = f"jobs not finished: {', '.join(failed)}. " if failed else ""
    if not ok_only:
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


def close_abandoned_sweep() -> None:
    """Called when the command exits: a sweep Hydra left open (a job raised) is closed as FAILED."""
    if _open:
        print("the sweep stopped early; summary of what ran:", file=sys.stderr)
        finish_sweep(ok_only=False)
