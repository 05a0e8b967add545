"""Every MLflow call of the harness: the store, runs, params, metrics, tags and artifacts.

Only `MlflowClient` with explicit run ids is used, never the fluent active-run state,
so nothing leaks from one job to the next in a reused worker process.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

from linreg_lab import curves
from linreg_lab.contract import (
    ARTIFACTS_PROGRESS_ENV,
    CURVES_NPZ,
    ERROR,
    EXPERIMENT_KIND,
    HTTP_TIMEOUT_ENV,
    LONG_PARAMS_JSON,
    MODEL_TRAINING,
    NOTE,
    OWNER,
    PARENT_RUN,
    REPORT_DIR,
    RUN_KIND,
)
from linreg_lab.lifecycle import (
    STOP_SIGNALS,
    STOP_WAIT_S,
    close_before_exit,
    other_live_process,
    owner_alive,
    owner_id,
    stop_process,
    uninterrupted,
)
from linreg_lab.limits import TAG_VALUE_LENGTH
from linreg_lab.store_check import StoreError
from linreg_lab.store_uri import sqlite_path

ENTITIES_PER_CALL = 1000  # MLflow's log_batch limits: entities (metrics, params, tags) in all, params, tags
PARAMS_PER_CALL = 100
TAGS_PER_CALL = 100
MAX_PARAM_LENGTH = 6000
RUN_NAME_LENGTH = 250  # MLflow's column for a run's name; a longer name (many overrides) is cut
# what the experiment is for: MLflow 3's UI then shows it as model training, not as a GenAI app
EXPERIMENT_TAGS = {EXPERIMENT_KIND: MODEL_TRAINING}
UI_VIEW = "workflowType=machine_learning"  # the UI's model-training view, not its GenAI one
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default
CREATE_WAIT_S = 60  # the longest a command waits for another to make a new store (it takes a few seconds)
HTTP_TIMEOUT_S = 20  # a try of a server's request gives up after this (MLflow's variable wins)
_artifact_uris: dict[str, str] = {}  # run id -> artifact URI, of runs this process opened


def ui_link(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """The experiment's runs (or one run's page) in the MLflow UI's model-training view: on the tracking
    server itself, or on `mlflow ui` started with its defaults for a local store."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    page = f"runs/{run_id}" if run_id else "runs"
    return f"{base}/#/experiments/{experiment_id}/{page}?{UI_VIEW}"


def ui_command(uri: str) -> str:
    """The command that serves the MLflow UI for this store ('' for a tracking server: it serves its own)."""
    return "" if uri.startswith(("http://", "https://")) else f"mlflow ui --backend-store-uri {uri}"


class GuardedClient:
    """MLflow's client with each call made whole: a stop signal that arrives during a call takes effect once it
    returned (lifecycle.uninterrupted), never inside MLflow's or SQLAlchemy's code."""

    def __init__(self, client: MlflowClient):
        self.client = client

    def __getattr__(self, name: str):
        if name == "client":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def whole(*args, **kwargs):
            with uninterrupted():
                return attr(*args, **kwargs)

        return whole


dropped_connections: list = []  # connections a forked process found in its pools: kept, never used nor closed there
opened_connections: set = set()  # the pool entries (ConnectionPoolEntry) of the connections this process opened


def keep_connections_per_process() -> None:
    """SQLAlchemy's recipe for pools and os.fork() ("Using Connection Pools with Multiprocessing or os.fork()"),
    for every engine of this process (MLflow's): a connection remembers the process that opened it, and a pool
    handing one to another process (a forked worker) drops it and opens a new one. The dropped connection is
    kept referenced, so that SQLite never closes, in the child, a file handle its parent still uses. Once per
    process; a pool class set in MLFLOW_SQLALCHEMYSTORE_POOLCLASS (NullPool: no idle connection) still wins."""
    if not event.contains(Engine, "checkout", in_its_process):
        event.listen(Engine, "connect", remember_process)
        event.listen(Engine, "checkout", in_its_process)
        close_before_exit(close_connections)


def remember_process(dbapi_connection, record) -> None:
    """A new connection: the process that opened it."""
    record.info["pid"] = os.getpid()
    opened_connections.add(record)


def close_connections() -> None:
    """Close every idle connection this process opened (ConnectionPoolEntry.invalidate: a pool asked again opens a
    new one), as the command ends (lifecycle.skip_final_collections, which skips the collections that would close
    them): SQLite then folds a store's write-ahead log back into the file and removes it."""
    for record in list(opened_connections):
        if record.info.get("pid") == os.getpid() and not record.in_use:
            record.invalidate()
    opened_connections.clear()


def in_its_process(dbapi_connection, record, proxy) -> None:
    """A connection taken from a pool in another process than its own: dropped (kept referenced), a new one made."""
    if record.info.get("pid") != os.getpid():
        dropped_connections.append(dbapi_connection)
        record.dbapi_connection = proxy.dbapi_connection = None
        raise DisconnectionError(f"opened by process {record.info.get('pid')}, not used in {os.getpid()}")


def connect(uri: str) -> GuardedClient:
    """A client on the store at `uri`, each call uninterrupted (GuardedClient). For a SQLite store, MLflow's engine
    keeps its connections open between calls (its pool), and no connection is ever used in a process other than
    the one that opened it (keep_connections_per_process): the pool launcher's workers are forked from a process
    that has used the store. For a server, a try gives up after HTTP_TIMEOUT_S unless MLFLOW_HTTP_REQUEST_TIMEOUT
    says otherwise (MLflow's default, 120 s, times its retries, was a quarter of an hour on a server that stopped
    answering); MLflow's retries (about two minutes of backoff) stay: a server restarted mid-sweep loses nothing."""
    if uri.startswith("sqlite:"):
        keep_connections_per_process()
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # its engine and migration notes
    if uri.startswith(("http:", "https:")):
        os.environ.setdefault(HTTP_TIMEOUT_ENV, str(HTTP_TIMEOUT_S))
    return GuardedClient(MlflowClient(tracking_uri=uri))


_opened: dict[tuple[str, str], tuple[MlflowClient, str]] = {}  # (uri, experiment) -> (client, id), per process
_creating: dict[str, multiprocessing.process.BaseProcess] = {}  # uri -> the process making that new store


def store_made(path: Path) -> bool:
    """A SQLite store file is there (made whole: create_store renames it into place only once MLflow made it)."""
    return path.is_file() and path.stat().st_size > 0


@contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """An exclusive flock on `folder` itself (no lock file left behind), waited for at most CREATE_WAIT_S."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        deadline = time.monotonic() + CREATE_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"{what}: another process held {folder} for {CREATE_WAIT_S} s; "
                                     "wait for it or stop it") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def create_store(uri: str) -> None:
    """Make the store's tables (MLflow runs its schema migrations on a new database) and return. A new SQLite
    store is made under a lock on its folder, in a file of its own that is renamed into place once MLflow made it
    whole: two first commands at once make it once (the second waits, then finds it), and a failure (disk full,
    a signal) leaves no half-made store: the partial file is removed and StoreError says why (one line). The new
    file is switched to SQLite's write-ahead log (write_ahead) before it is renamed into place."""
    path = sqlite_path(uri)
    if path is None:
        connect(uri).search_experiments(max_results=1)
        return
    with folder_lock(path.parent, f"making the store {uri}"):
        if store_made(path):
            return  # another command made it while this one waited
        partial = path.with_name(f".{path.name}.making-{os.getpid()}")
        try:
            connect(f"sqlite:///{partial}").search_experiments(max_results=1)
            write_ahead(partial)
            os.replace(partial, path)
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise StoreError(f"could not make the store {uri} ({first}); nothing was left behind: free the space "
                             "or fix the folder, then run again") from None
        finally:
            for suffix in ("", "-journal", "-wal", "-shm"):
                partial.with_name(partial.name + suffix).unlink(missing_ok=True)


def write_ahead(path: Path) -> None:
    """Switch a new SQLite store to write-ahead logging (SQLite's `PRAGMA journal_mode=WAL`, kept in the file):
    readers no longer wait for a writer's commit, nor a writer for readers, and a commit appends to one log. The
    parallel jobs of a sweep read and write the one file all the time. Only on a store being made (no connection
    in WAL mode is open on it, so the log is folded back and removed when this one closes); where the file system
    cannot share memory between processes, SQLite keeps its rollback journal."""
    con = sqlite3.connect(path, timeout=CREATE_WAIT_S)
    try:
        con.execute("PRAGMA journal_mode=WAL").fetchone()
    finally:
        con.close()


def _make_store_quietly(uri: str) -> None:
    """create_store in the forked maker: a failure exits 1 without a traceback (open_experiment then tries itself
    and reports the error in one line)."""
    try:
        create_store(uri)
    except BaseException:
        os._exit(1)


def start_creating_store(uri: str) -> multiprocessing.process.BaseProcess | None:
    """When `uri` is a SQLite file that does not exist yet, start making it in a forked process, so that
    MLflow's migrations run while this one does other work (loading torch); open_experiment waits for
    it. Returns that process; for any other store, None: nothing to do."""
    path = sqlite_path(uri)
    if path is None or uri in _creating or uri in {u for u, _ in _opened}:
        return None
    if store_made(path) or not path.parent.is_dir():
        return None  # an existing store, or a folder that is not there: MLflow's own error, when it is opened
    process = multiprocessing.get_context("fork").Process(target=_make_store_quietly, args=(uri,),
                                                          name="linreg_lab-store")
    # a stop signal meant for the sweep must not stop it halfway: it is forked ignoring SIGINT and SIGTERM, and it
    # is not a daemon (if this process stops early, the store is still finished): a store is made whole or not
    main = threading.current_thread() is threading.main_thread()
    previous = [signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS] if main else None
    try:
        process.start()
    finally:
        if main:
            for sig, handler in zip(STOP_SIGNALS, previous):
                signal.signal(sig, handler)
    _creating[uri] = process
    return process


def open_experiment(uri: str, name: str) -> tuple[MlflowClient, str]:
    """Client on `uri` and the id of experiment `name`, created if missing. The first time a process
    opens it, runs orphaned by dead processes are reaped; later jobs of the process reuse both."""
    if (uri, name) in _opened:
        return _opened[uri, name]
    if uri in _creating:  # its tables are being made (start_creating_store): wait for it, at most CREATE_WAIT_S
        _creating.pop(uri).join(CREATE_WAIT_S)
    path = sqlite_path(uri)
    if path is not None and not store_made(path):
        create_store(uri)  # the forked maker failed or is stuck: here, under the same lock, its error in one line
    client = connect(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            exp_id = client.create_experiment(name, tags=EXPERIMENT_TAGS)
        except Exception:  # another process created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp is not None:
        exp_id = exp.experiment_id
        for key, value in EXPERIMENT_TAGS.items():  # an experiment made before the tag, or by hand
            if key not in exp.tags:
                client.set_experiment_tag(exp_id, key, value)
        reap_orphans(client, exp_id)
    _opened[uri, name] = client, exp_id
    return client, exp_id


def reap_orphans(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark FAILED every RUNNING run whose owning process on this host is gone (SIGKILL, crash)."""
    reaped = []
    for run in search_all(client, experiment_id, "attributes.status = 'RUNNING'"):
        owner = run.data.tags.get(OWNER, "")
        if owner and not owner_alive(owner):
            end_run(client, run.info.run_id, "FAILED",
                    f"orphaned: its process {owner} died without closing the run (killed, e.g. SIGKILL)")
            reaped.append(run.info.run_id)
    return reaped


def close_stopped_jobs(client: MlflowClient, experiment_id: str, parent_id: str, wait_s: float = STOP_WAIT_S) -> int:
    """A sweep stopped by a signal: every job of it still RUNNING ends KILLED. Their processes (pool, joblib
    workers) got the signal too or are being stopped by their launcher: they have `wait_s` to close their own runs;
    one still alive then gets SIGTERM and `wait_s` more; what is still RUNNING after that is closed here. Returns
    how many runs were closed here."""
    where = f"attributes.status = 'RUNNING' and tags.`{PARENT_RUN}` = '{parent_id}'"
    deadline, nudged = time.monotonic() + wait_s, False
    while True:
        runs = search_all(client, experiment_id, where)
        alive = [pid for run in runs if (pid := other_live_process(run.data.tags.get(OWNER, ""))) is not None]
        if not alive:
            break
        if time.monotonic() > deadline:
            if nudged:
                break
            for pid in set(alive):
                stop_process(pid)
            deadline, nudged = time.monotonic() + wait_s, True
        time.sleep(0.2)
    for run in runs:
        end_run(client, run.info.run_id, "KILLED", "stopped with its sweep (a signal); its process did not close it")
    return len(runs)


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


def latest_run_with(client: MlflowClient, experiment_id: str, tag: str, value: str,
                    status: str | None = None) -> str | None:
    """Id of the most recent run whose `tag` equals `value` (and whose status is `status`, when given)."""
    where = f"tags.{tag} = '{value}'" + (f" and attributes.status = '{status}'" if status else "")
    runs = client.search_runs([experiment_id], where, max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def reopen_run(client: MlflowClient, run_id: str, tags: dict[str, str] | None = None) -> None:
    """Set a closed run RUNNING again, owned by this process, with `tags` updated (a resumed sweep's parent)."""
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in {**(tags or {}), OWNER: owner_id()}.items()])



def start_run(client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str],
              parent_id: str | None = None, params: dict[str, object] | None = None) -> str:
    """Create a RUNNING run (nested under `parent_id` when given) with its tags (and params, when given: a job
    logs its params with its metrics, in one write, log_metrics); return its id."""
    tags = {key: str(value)[:TAG_VALUE_LENGTH] for key, value in {**tags, OWNER: owner_id()}.items()}
    if parent_id:
        tags[PARENT_RUN] = parent_id
    run = client.create_run(experiment_id, run_name=name[:RUN_NAME_LENGTH], tags=tags)
    _artifact_uris[run.info.run_id] = run.info.artifact_uri
    if params:
        write_rows(client, run.info.run_id, params=params)
    return run.info.run_id


def write_rows(client: MlflowClient, run_id: str, metrics: Sequence[Metric] = (),
               params: dict[str, object] | None = None, tags: dict[str, str] | None = None,
               status: str | None = None) -> None:
    """Log metrics, params and tags in as few log_batch calls as MLflow's limits allow (1000 entities, 100 of
    them params, 100 tags), then end the run with `status` when given. A param value too long for MLflow is
    stored as its hash, in full in the artifact long_params.json."""
    values, too_long = param_values(params or {})
    metrics, items = list(metrics), [Param(k, v) for k, v in values.items()]
    labels = [RunTag(k, str(v)[:TAG_VALUE_LENGTH]) for k, v in (tags or {}).items()]
    with uninterrupted():  # the rows and the status go in together, whatever signal arrives meanwhile
        if too_long:
            client.log_text(run_id, json.dumps(too_long, indent=1), LONG_PARAMS_JSON)
        while metrics or items or labels:
            some, items = items[:PARAMS_PER_CALL], items[PARAMS_PER_CALL:]
            named, labels = labels[:TAGS_PER_CALL], labels[TAGS_PER_CALL:]
            room = ENTITIES_PER_CALL - len(some) - len(named)
            client.log_batch(run_id, metrics=metrics[:room], params=some, tags=named)
            metrics = metrics[room:]
        if status:
            client.set_terminated(run_id, status)


def describe_run(client: MlflowClient, run_id: str, markdown: str) -> None:
    """Set the run's description, shown on its page in the MLflow UI."""
    client.set_tag(run_id, NOTE, markdown)


def latest_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    """Every metric of a run at its latest value."""
    return dict(client.get_run(run_id).data.metrics)


def run_tags(client: MlflowClient, run_id: str) -> dict[str, str]:
    """Every tag of a run."""
    return client.get_run(run_id).data.tags


def end_run(client: MlflowClient, run_id: str, status: str, error: str | None = None,
            params: dict[str, object] | None = None) -> None:
    """Close a run as FINISHED, FAILED or KILLED, with the error message as a tag (and the run's params, when
    given: a job that fails before its metrics still says what it was)."""
    write_rows(client, run_id, params=params, tags={ERROR: error[:MAX_PARAM_LENGTH]} if error else None,
               status=status)


def param_values(params: dict[str, object]) -> tuple[dict[str, str], dict[str, str]]:
    """(values to log, values too long for MLflow): a too-long value is logged as its sha256."""
    values, too_long = {}, {}
    for key, value in params.items():
        text = str(value)
        if len(text) > MAX_PARAM_LENGTH:
            too_long[key] = text
            text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        values[key] = text
    return values, too_long


def log_metrics(client: MlflowClient, run_id: str, histories: dict[str, tuple[np.ndarray, np.ndarray]],
                finals: dict[str, float], tags: dict[str, str] | None = None, status: str | None = None,
                params: dict[str, object] | None = None) -> None:
    """Log histories (key -> (steps, values)) as curves.logged keeps them (finite points, at most
    curves.points_for(key) each: the run's curves.npz has them all), final values, tags and params, in as few
    log_batch calls as MLflow's limits allow, then end the run with `status` when given. NaN/inf never
    reach the store (inf would read 1.8e308). A final value is one point at step 0, which MLflow's UI
    draws as a bar per run, not as a one-point line chart."""
    series = {key: curves.logged(steps, values, curves.points_for(key)) for key, (steps, values) in histories.items()}
    series.update({key: curves.logged([0], [v]) for key, v in finals.items()})
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, s) for k, (steps, values) in series.items()
               for s, v in zip(steps.tolist(), values.tolist())]
    write_rows(client, run_id, metrics, params, tags, status)


def artifact_dir(client: MlflowClient, run_id: str) -> Path | None:
    """The run's artifact folder when it is on this machine (created), so artifacts are written in place;
    None for a remote artifact store (write elsewhere, then log_artifacts)."""
    uri = _artifact_uris.pop(run_id, None) or client.get_run(run_id).info.artifact_uri
    path = local_path(uri)
    if path is None:
        return None
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def log_artifact(client: MlflowClient, run_id: str, path: Path) -> None:
    """One file as an artifact of a run, at the top of its artifacts."""
    client.log_artifact(run_id, str(path))


def log_artifacts(client: MlflowClient, run_id: str, local_dir: Path) -> None:
    """Upload every file of `local_dir` as a run artifact."""
    client.log_artifacts(run_id, str(local_dir))


def child_runs(client: MlflowClient, experiment_id: str, parent_id: str | None) -> list[dict]:
    """Every job run nested under `parent_id`, or every job run of the experiment when it is None
    (all pages), as flat dicts of info (run_id, run_name, status, start_time, end_time, experiment_id,
    artifact_uri), params.*, metrics.* (latest values) and tags.*."""
    tag, value = (PARENT_RUN, parent_id) if parent_id else (RUN_KIND, "job")
    rows = []
    for run in search_all(client, experiment_id, f"tags.`{tag}` = '{value}'"):
        row = {"run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
               "start_time": run.info.start_time, "end_time": run.info.end_time,
               "experiment_id": run.info.experiment_id, "artifact_uri": run.info.artifact_uri}
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
    runs = client.search_runs([experiment_id], f"tags.{RUN_KIND} = 'sweep'", max_results=1,
                              order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def sweeps(client: MlflowClient, experiment_id: str) -> list[tuple[str, str]]:
    """(run id, run name) of every sweep parent run of the experiment, newest first."""
    runs = search_all(client, experiment_id, f"tags.{RUN_KIND} = 'sweep'")
    return [(r.info.run_id, r.info.run_name) for r in sorted(runs, key=lambda r: r.info.start_time, reverse=True)]


def experiment_names(client: MlflowClient) -> list[str]:
    """Names of the store's experiments (not deleted)."""
    names, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        names += [e.name for e in page]
        token = page.token
        if not token:
            return sorted(names)


def run_info(client: MlflowClient, run_id: str) -> tuple[str, str]:
    """(experiment id, run name) of a run."""
    run = client.get_run(run_id)
    return run.info.experiment_id, run.info.run_name


def metric_histories(client: MlflowClient, runs: list[tuple[str, str]], keys: list[str],
                     resolution: str = "logged") -> list[tuple[str, str, int, float]]:
    """(run_id, key, step, value) for every point of `keys` in every (run id, artifact URI): read from the
    run's curves.npz, all its points ("full") or those MLflow holds ("logged", curves.logged of them);
    a run without that artifact is read from MLflow (get_metric_history: what it holds)."""
    if resolution not in ("logged", "full"):
        raise ValueError(f"resolution={resolution!r}: allowed are 'logged' and 'full'")
    os.environ.setdefault(ARTIFACTS_PROGRESS_ENV, "false")  # not one bar per run downloaded
    out = []
    with tempfile.TemporaryDirectory(prefix="linreg_lab-curves-") as tmp:
        for run_id, artifact_uri in runs:
            found = read_curves(client, run_id, artifact_uri, keys, Path(tmp))
            if found is None:
                out += [(run_id, key, m.step, m.value) for key in keys for m in client.get_metric_history(run_id, key)]
                continue
            for key, (steps, values) in found.items():
                if resolution == "logged":
                    steps, values = curves.logged(steps, values, curves.points_for(key))
                out += zip([run_id] * len(steps), [key] * len(steps), steps.tolist(), values.tolist())
    return out


def read_curves(client: MlflowClient, run_id: str, artifact_uri: str, keys: list[str],
                tmp: Path) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """The run's curves.npz (in place when its artifacts are on this machine, else downloaded), or None."""
    path = artifact_file(client, run_id, artifact_uri, CURVES_NPZ, tmp)
    if path is None:
        return None
    try:
        return curves.load(path, keys)
    finally:
        if path.parent == tmp:
            path.unlink()


def artifact_file(client: MlflowClient, run_id: str, artifact_uri: str, name: str, tmp: Path) -> Path | None:
    """The run's artifact `name`: in place when its artifacts are on this machine, else downloaded into `tmp`;
    None when the run has no such artifact."""
    local = local_path(artifact_uri or "")
    if local is not None:
        path = Path(local) / name
        return path if path.is_file() else None
    try:
        return Path(client.download_artifacts(run_id, name, str(tmp)))
    except Exception:  # MlflowException or an OSError: the run has no such artifact
        return None


def run_arrays(client: MlflowClient, run_id: str, artifact_uri: str, name: str) -> dict[str, np.ndarray] | None:
    """The arrays of the run's .npz artifact `name`, or None when it has none."""
    with tempfile.TemporaryDirectory(prefix="linreg_lab-artifact-") as tmp:  # used only for a download
        path = artifact_file(client, run_id, artifact_uri, name, Path(tmp))
        if path is None:
            return None
        with np.load(path) as npz:
            return {key: npz[key] for key in npz.files}


def local_path(artifact_uri: str) -> str | None:
    """The folder of a local artifact URI (a plain path or file://), else None."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        return parsed.path
    return artifact_uri if parsed.scheme == "" and artifact_uri else None


def attach_report(client: MlflowClient, run_id: str, out_dir: Path) -> None:
    """Log the report files as artifacts of the sweep's parent run, under report/."""
    client.log_artifacts(run_id, str(out_dir), artifact_path=REPORT_DIR)
