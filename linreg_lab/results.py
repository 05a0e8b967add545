"""A sweep's runs as tidy pandas, for notebooks and for the report: three calls.

    from linreg_lab import results
    runs = results.runs("latest")                                   # one row per job run
    loss = results.curves(runs, "train/loss", columns=["optimizer.name", "lr"])
    reps = results.replicates(runs, columns=["optimizer.name", "lr"])

`runs` has the run's info columns (INFO), its config under the config's own names (`optimizer.name`,
`lr`, `batch_size`, `data.true_w`, ...: numbers as numbers, booleans as booleans, lists as lists),
every final metric under its metric name (NaN where never logged or where MLflow holds its stand-in for
±inf) and the remaining tags as `tags.<key>`. Where a curve's points come from is hidden here: MLflow
holds at most a hundred points of each history (curves.points_for), the run's curves.npz every one (`resolution`).
"""

from __future__ import annotations

import ast
import os

import numpy as np
import pandas as pd

from linreg_lab import tracking
from linreg_lab.contract import (
    DIVERGED_STEP,
    HISTORIES,
    OUTCOME,
    PARENT_RUN,
    REPLICATES_NPZ,
    TRAIN_LOSS,
    W_I,
    W_INIT_I,
    B,
)
from linreg_lab.store_check import check_store
from linreg_lab.store_uri import resolve_tracking_uri, sqlite_path

# info columns, in this order; `outcome` is the tag (completed, diverged, interrupted), `sweep_id` the parent run
INFO = ["run_id", "run_name", "status", "outcome", "sweep_id", "start_time", "end_time", "experiment_id",
        "artifact_uri"]
HUGE = 1e300  # MLflow stores +-inf as +-1.8e308: such a value is not a number anyone logged
CONFIG_ATTR = "config_columns"  # runs(...).attrs[CONFIG_ATTR]: the config columns, in the frame's order
URI_ATTR = "tracking_uri"  # runs(...).attrs[URI_ATTR]: the store they were read from


def typed(text: str) -> object:
    """A param as the config held it: int, float, bool, None, list or dict; other text stays text."""
    if text in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[text]
    if text.lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
        return float(text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return value if isinstance(value, int | float | list | dict) else text


def number(value: float) -> float:
    """A metric value, NaN where MLflow holds its stand-in for +-inf."""
    return float("nan") if abs(value) >= HUGE else value


def open_store(tracking_uri: str | None, experiment: str):
    """(client, experiment id, URI) for reading, by the CLI's rule for the URI; ValueError naming what exists."""
    uri = resolve_tracking_uri(tracking_uri, os.getcwd(), env_first=False)
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        folder = path.parent
        found = sorted(p.name for p in folder.glob("*.db")) if folder.is_dir() else []
        raise ValueError(f"no store at {uri}: run a sweep first or pass its tracking URI; "
                         f"SQLite files in {folder}: {', '.join(found) or 'none'}")
    check_store(uri, must_exist=True)  # a damaged file, a folder, a silent server: StoreError (a ValueError)
    client = tracking.connect(uri)
    exp_id = tracking.experiment_id(client, experiment)
    if exp_id is None:
        names = tracking.experiment_names(client)
        raise ValueError(f"experiment {experiment!r} is not in {uri}; it has: {', '.join(map(repr, names)) or 'none'}")
    return client, exp_id, uri


def pick_sweep(client, exp_id: str, sweep: str | None, experiment: str, uri: str) -> str | None:
    """The parent run id that `sweep` names (None: every job run of the experiment)."""
    if sweep is None:
        return None
    sweeps = tracking.sweeps(client, exp_id)  # newest first: (run id, name)
    if sweep == "latest":
        if not sweeps:
            raise ValueError(f"experiment {experiment!r} in {uri} has no sweep; pass sweep=None for its runs")
        return sweeps[0][0]
    if sweep not in {run_id for run_id, _ in sweeps}:
        listed = "; ".join(f"{run_id} ({name[:60]})" for run_id, name in sweeps[:5]) or "none"
        more = f" and {len(sweeps) - 5} more" if len(sweeps) > 5 else ""
        raise ValueError(f"{sweep!r} is not a sweep of experiment {experiment!r} in {uri}; "
                         f"sweeps, newest first: {listed}{more}")
    return sweep


def runs(sweep: str | None = None, experiment: str = "linreg_lab", tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per job run: of the sweep whose parent run id is `sweep`, of the most recent sweep
    ("latest"), or of the whole experiment (None). Deleted runs are left out; rows in start order.
    The store is `tracking_uri`, else MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here.
    Raises ValueError (one line, naming what exists) for a missing store, experiment or sweep."""
    client, exp_id, uri = open_store(tracking_uri, experiment)
    parent = pick_sweep(client, exp_id, sweep, experiment, uri)
    df = frame(tracking.child_runs(client, exp_id, parent))
    df.attrs[URI_ATTR] = uri
    return df


def frame(rows: list[dict]) -> pd.DataFrame:
    """tracking.child_runs' rows as runs() returns them."""
    config = list(dict.fromkeys(k[len("params."):] for row in rows for k in row if k.startswith("params.")))
    metrics = list(dict.fromkeys(k[len("metrics."):] for row in rows for k in row if k.startswith("metrics.")))
    moved = {f"tags.{OUTCOME}", f"tags.{PARENT_RUN}"}  # info columns outcome and sweep_id
    tags = sorted({k for row in rows for k in row if k.startswith("tags.")} - moved)
    records = []
    for row in rows:
        rec = {"run_id": row["run_id"], "run_name": row["run_name"], "status": row["status"],
               "outcome": row.get(f"tags.{OUTCOME}"), "sweep_id": row.get(f"tags.{PARENT_RUN}"),
               "start_time": row["start_time"], "end_time": row.get("end_time"),
               "experiment_id": row.get("experiment_id"), "artifact_uri": row["artifact_uri"]}
        rec.update({k: typed(row[f"params.{k}"]) if f"params.{k}" in row else None for k in config})
        rec.update({k: number(row[f"metrics.{k}"]) if f"metrics.{k}" in row else np.nan for k in metrics})
        rec.update({k: row.get(k) for k in tags})
        records.append(rec)
    df = pd.DataFrame(records, columns=INFO + config + metrics + tags)
    for col in ("start_time", "end_time"):
        df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
    for col in metrics:
        df[col] = df[col].astype(float)
    df = df.sort_values("start_time", kind="stable").reset_index(drop=True)
    df.attrs[CONFIG_ATTR] = config
    return df


def config_columns(runs_df: pd.DataFrame) -> list[str]:
    """The config columns of a runs() frame (those it had when made, still present)."""
    return [c for c in runs_df.attrs.get(CONFIG_ATTR, []) if c in runs_df]


def reader(runs_df: pd.DataFrame, tracking_uri: str | None):
    """A client on the store the runs came from: `tracking_uri`, else the one runs() read, else the CLI's rule."""
    uri = tracking_uri or runs_df.attrs.get(URI_ATTR)
    return tracking.connect(resolve_tracking_uri(uri, os.getcwd(), env_first=False))


def with_columns(long: pd.DataFrame, runs_df: pd.DataFrame, columns) -> pd.DataFrame:
    """`long` with the runs' `columns` joined on run_id (ValueError naming the columns a frame has)."""
    columns = [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in columns if c not in runs_df]
    if missing:
        raise ValueError(f"columns {missing} are not in the runs frame; it has: {', '.join(map(str, runs_df.columns))}")
    if not columns:
        return long
    return long.merge(runs_df[["run_id", *[c for c in columns if c != "run_id"]]], on="run_id", how="left")


def curves(runs_df: pd.DataFrame, metric: str | list[str] = TRAIN_LOSS, resolution: str = "logged",
           columns=(), tracking_uri: str | None = None) -> pd.DataFrame:
    """Long form of the runs' histories: run_id, metric, step, value, then `columns` of runs_df.
    "logged": the points MLflow holds (finite ones, curves.points_for(key) at most); "full": every point the job
    computed (its curves.npz). A run without curves.npz is read from MLflow. The store is the one runs()
    read (or `tracking_uri`). ValueError for a metric that is neither a history nor a metric of the runs."""
    if resolution not in ("logged", "full"):
        raise ValueError(f"resolution={resolution!r}: allowed are 'logged' and 'full'")
    keys = [metric] if isinstance(metric, str) else list(metric)
    unknown = [k for k in keys if k not in HISTORIES and k not in runs_df.columns]
    if unknown:
        raise ValueError(f"metric {', '.join(map(repr, unknown))} is not one these runs logged; histories: "
                         f"{', '.join(HISTORIES)}, or any metric column of the runs frame")
    located = list(zip(runs_df["run_id"], runs_df["artifact_uri"]))
    points = tracking.metric_histories(reader(runs_df, tracking_uri), located, keys, resolution) if located else []
    long = pd.DataFrame(points, columns=["run_id", "metric", "step", "value"]).astype(
        {"step": "int64", "value": "float64"})
    return with_columns(long, runs_df, columns)


def replicates(runs_df: pd.DataFrame, columns=(), tracking_uri: str | None = None) -> pd.DataFrame:
    """Long form, one row per replicate of every run that trained R > 1 (its replicates.npz): run_id,
    replicate, the learned w/<i> and b, the initial w_init/<i> and b_init, diverged_step (NaN: never),
    final_loss (its last training batch loss) and final_loss_pct (where that loss sits among its run's
    replicates, 0 = lowest, 100 = highest), then `columns` of runs_df. The replicates' loss percentiles
    per step are histories: curves(runs, ["train/loss_p10", "train/loss_p90"])."""
    reps = runs_df["replicates"] if "replicates" in runs_df else pd.Series(np.nan, index=runs_df.index)
    many = runs_df[pd.to_numeric(reps, errors="coerce") > 1]
    client = reader(runs_df, tracking_uri) if len(many) else None
    parts = []
    for run_id, artifact_uri in zip(many["run_id"], many["artifact_uri"]):
        arrays = tracking.run_arrays(client, run_id, artifact_uri, REPLICATES_NPZ)
        if arrays is not None:
            parts.append(replicate_columns(run_id, arrays))
    cols = ["run_id", "replicate", B, "b_init", DIVERGED_STEP, "final_loss", "final_loss_pct"]
    if not parts:
        return with_columns(pd.DataFrame(columns=cols), runs_df, columns)
    names = list(dict.fromkeys(k for part in parts for k in part))  # w/<i> of runs with more features last
    filled = {k: np.concatenate([part.get(k, np.full(len(part["replicate"]), np.nan)) for part in parts])
              for k in names}
    return with_columns(pd.DataFrame(filled), runs_df, columns)


def replicate_columns(run_id: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One run's replicates.npz as columns of its rows."""
    w, b = np.atleast_2d(arrays["w"]), np.ravel(arrays["b"]).astype(float)
    count = len(b)
    out = {"run_id": np.full(count, run_id, dtype=object), "replicate": np.arange(count)}
    out.update({W_I.format(i=i): w[:, i].astype(float) for i in range(w.shape[1])})
    out[B] = b
    w_init = np.atleast_2d(arrays.get("w_init", np.empty((0, 0))))
    if w_init.shape[0] == count:
        out.update({W_INIT_I.format(i=i): w_init[:, i].astype(float) for i in range(w_init.shape[1])})
    b_init = np.ravel(arrays.get("b_init", np.empty(0))).astype(float)
    out["b_init"] = b_init if len(b_init) == count else np.full(count, np.nan)
    diverged = np.ravel(arrays.get("diverged_at", np.zeros(count)))
    out[DIVERGED_STEP] = np.where(diverged > 0, diverged, np.nan)
    loss = np.asarray(arrays.get("train_loss", np.empty((0, count))), dtype=float)
    final = loss[-1] if len(loss) else np.full(count, np.nan)
    out["final_loss"] = final
    ranks = pd.Series(final).rank(method="average").to_numpy()  # NaN stays NaN
    out["final_loss_pct"] = 100 * (ranks - 1) / max(count - 1, 1)
    return out
