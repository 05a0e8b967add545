"""Every MLflow call of the harness: the store, runs, params, metrics, tags and artifacts.

Only `MlflowClient` with explicit run ids is used, never the fluent active-run state,
so nothing leaks from one job to the next in a reused worker process.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag

from linreg_lab.lifecycle import owner_alive, owner_id

METRICS_PER_CALL = 1000  # MLflow's log_batch limits
PARAMS_PER_CALL = 100
METRICS_WITH_TAGS = METRICS_PER_CALL - PARAMS_PER_CALL  # metrics in a call that also carries <= 100 tags
MAX_PARAM_LENGTH = 6000
PARENT_ENV = "LINREG_LAB_PARENT_RUN_ID"  # the sweep's parent run, handed to every job


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri}"


def connect(uri: str) -> MlflowClient:
    """A client on the store at `uri`."""
    return MlflowClient(tracking_uri=uri)


_opened: dict[tuple[str, str], tuple[MlflowClient, str]] = {}  # (uri, experiment) -> (client, id), per process


def open_experiment(uri: str, name: str) -> tuple[MlflowClient, str]:
    """Client on `uri` and the id of experiment `name`, created if missing. The first time a process
    opens it, runs orphaned by dead processes are reaped; later jobs of the process reuse both."""
    if (uri, name) in _opened:
        return _opened[uri, name]
    client = connect(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            exp_id = client.create_experiment(name)
        except Exception:  # another process created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp is not None:
        exp_id = exp.experiment_id
        reap_orphans(client, exp_id)
    _opened[uri, name] = client, exp_id
    return client, exp_id


def reap_orphans(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark FAILED every RUNNING run whose owning process on this host is gone (SIGKILL, crash)."""
    reaped = []
    for run in search_all(client, experiment_id, "attributes.status = 'RUNNING'"):
        owner = run.data.tags.get("owner", "")
        if owner and not owner_alive(owner):
            end_run(client, run.info.run_id, "FAILED",
                    f"orphaned: its process {owner} died without closing the run (killed, e.g. SIGKILL)")
            reaped.append(run.info.run_id)
    return reaped


def search_all(client: MlflowClient, experiment_id: str, filter_string: str = "") -> list:
    """Every run matching `filter_string`, all pages (search_runs stops at 1000 a page)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def finished_run_with(client: MlflowClient, experiment_id: str, tag: str, value: str) -> str | None:
    """Id of a FINISHED run whose `tag` equals `value`, if there is one."""
    runs = client.search_runs([experiment_id], f"tags.{tag} = '{value}' and attributes.status = 'FINISHED'",
                              max_results=1)
    return runs[0].info.run_id if runs else None


def latest_run_with(client: MlflowClient, experiment_id: str, tag: str, value: str) -> str | None:
    """Id of the most recent run whose `tag` equals `value`, if there is one."""
    runs = client.search_runs([experiment_id], f"tags.{tag} = '{value}'", max_results=1,
                              order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def reopen_run(client: MlflowClient, run_id: str) -> None:
    """Set a closed run RUNNING again, owned by this process (a resumed sweep's parent)."""
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    client.set_tag(run_id, "owner", owner_id())


def start_run(client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str],
              parent_id: str | None = None) -> str:
    """Create a RUNNING run (nested under `parent_id` when given) and return its id."""
    tags = {**tags, "owner": owner_id()}
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id


def end_run(client: MlflowClient, run_id: str, status: str, error: str | None = None) -> None:
    """Close a run as FINISHED, FAILED or KILLED, with the error message as a tag."""
    if error:
        client.set_tag(run_id, "error", error[:MAX_PARAM_LENGTH])
    client.set_terminated(run_id, status)


def log_params(client: MlflowClient, run_id: str, params: dict[str, object], artifact_dir: Path) -> None:
    """Log params in batches; a value too long for MLflow is stored as its hash, in full as an artifact."""
    values, too_long = {}, {}
    for key, value in params.items():
        text = str(value)
        if len(text) > MAX_PARAM_LENGTH:
            too_long[key] = text
            text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        values[key] = text
    if too_long:
        (artifact_dir / "long_params.json").write_text(json.dumps(too_long, indent=1))
    items = [Param(k, v) for k, v in values.items()]
    for i in range(0, len(items), PARAMS_PER_CALL):
        client.log_batch(run_id, params=items[i:i + PARAMS_PER_CALL])


def sql_store(client: MlflowClient):
    """The SQLAlchemy store behind a database URI (sqlite, postgresql, ...), or None (a server, a file store)."""
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError:
        return None
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return store if isinstance(store, SqlAlchemyStore) else None


def insert_points(store, run_id: str, points: list[tuple[str, float, int]], timestamp: int) -> None:
    """Insert metric points (key, value, step) into the store's metrics table in one statement.

    MLflow's log_batch builds one ORM object per point (~50 us each: 50 ms for a 1000-step
    curve); this is a single executemany into the same table, in one transaction."""
    from mlflow.store.tracking.dbmodels.models import SqlMetric
    from sqlalchemy import insert

    rows = [{"run_uuid": run_id, "key": k, "value": v, "timestamp": timestamp, "step": s, "is_nan": False}
            for k, v, s in points]
    with store.ManagedSessionMaker(read_only=False) as session:
        session.execute(insert(SqlMetric.__table__), rows)


def log_metrics(client: MlflowClient, run_id: str, histories: dict[str, tuple[np.ndarray, np.ndarray]],
                finals: dict[str, float], final_step: int, tags: dict[str, str] | None = None) -> None:
    """Log histories (key -> (steps, values)), final values and tags.

    On a database store the history points go in by one bulk insert, except each curve's
    last point, which goes through log_batch with the finals and tags, so that MLflow itself
    validates every key and records each metric's latest value. Elsewhere (a tracking
    server) everything goes through log_batch, <= 1000 metrics per call."""
    now = int(time.time() * 1000)
    points = [(key, float(v), int(s))  # NaN/inf never reach the store (inf would read 1.8e308)
              for key, (steps, values) in histories.items() for s, v in zip(steps, values) if np.isfinite(v)]
    store = sql_store(client)
    if store is not None and points:
        last = {key: i for i, (key, _, _) in enumerate(points)}  # each key's final point
        keep = set(last.values())
        bulk = [p for i, p in enumerate(points) if i not in keep]
        try:
            if bulk:
                insert_points(store, run_id, bulk, now)
            points = [points[i] for i in sorted(keep)]
        except Exception as err:  # an MLflow whose schema differs: the transaction rolled back, use log_batch
            print(f"linreg_lab: bulk metric insert failed ({type(err).__name__}); using log_batch", file=sys.stderr)
    metrics = [Metric(k, v, now, s) for k, v, s in points]
    metrics += [Metric(key, float(v), now, final_step) for key, v in finals.items() if np.isfinite(v)]
    run_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for i in range(0, max(len(metrics), 1), METRICS_WITH_TAGS):
        client.log_batch(run_id, metrics=metrics[i:i + METRICS_WITH_TAGS],
                         tags=run_tags if i == 0 else [])


def log_artifacts(client: MlflowClient, run_id: str, local_dir: Path) -> None:
    """Upload every file of `local_dir` as a run artifact."""
    client.log_artifacts(run_id, str(local_dir))


def child_runs(client: MlflowClient, experiment_id: str, parent_id: str | None) -> list[dict]:
    """Every job run nested under `parent_id`, or every job run of the experiment when it is None
    (all pages), as flat dicts of info, params, metrics and tags."""
    where = f"tags.`mlflow.parentRunId` = '{parent_id}'" if parent_id else "tags.run_kind = 'job'"
    rows = []
    for run in search_all(client, experiment_id, where):
        row = {"run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
               "start_time": run.info.start_time}
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        rows.append(row)
    return rows


def experiment_id(client: MlflowClient, name: str) -> str | None:
    """Id of experiment `name`, or None when the store has no such experiment."""
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else None


def latest_sweep(client: MlflowClient, experiment_id: str) -> str | None:
    """Id of the most recently started sweep parent run."""
    runs = client.search_runs([experiment_id], "tags.run_kind = 'sweep'", max_results=1,
                              order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def run_info(client: MlflowClient, run_id: str) -> tuple[str, str]:
    """(experiment id, run name) of a run."""
    run = client.get_run(run_id)
    return run.info.experiment_id, run.info.run_name


def metric_histories(client: MlflowClient, run_ids: list[str], keys: list[str]) -> list[tuple[str, str, int, float]]:
    """(run_id, key, step, value) for every point of `keys` in every run."""
    return [(run_id, key, m.step, m.value) for run_id in run_ids for key in keys
            for m in client.get_metric_history(run_id, key)]


def attach_report(client: MlflowClient, run_id: str, out_dir: Path) -> None:
    """Log the report files as artifacts of the sweep's parent run, under report/."""
    client.log_artifacts(run_id, str(out_dir), artifact_path="report")
