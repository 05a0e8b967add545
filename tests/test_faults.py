"""Faults a user meets: two first commands at once, a store that cannot be made, is damaged or does not answer,
a stop signal that lands while the store is being written, a Ctrl-C before any work. Each case runs the real
commands in subprocesses, in a folder of its own; a signal's write window is made wide and certain by the test
holding the SQLite store's write lock while the jobs reach their writes."""

from __future__ import annotations

import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from linreg_lab import lifecycle, limits, tracking
from linreg_lab.store_check import STORE_WAIT_S
from tests.conftest import compose_config, job_runs

BOUND_S = 60  # every case ends within this (stores answer within STORE_WAIT_S, stopped workers within 10 s)


def command(args: list[str], cwd: Path, module: str = "linreg_lab.run", **popen) -> subprocess.Popen:
    """`python -m MODULE ARGS` in `cwd`, on the store ./mlflow.db there (no MLFLOW_TRACKING_URI)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LINREG_LAB_PARENT_RUN_ID")}
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def finished(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def one_error_line(err: str, prefix: str = "linreg_lab: error: ") -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), err[-3000:]
    return lines[0]


def test_two_first_commands_at_once_make_one_store_and_both_run(tmp_path: Path) -> None:
    for attempt in range(3):  # before the store was made under a lock, 2 of 5 such folders broke for good
        where = tmp_path / f"folder{attempt}"
        where.mkdir()
        first, second = (command(["steps=20", f"seed={seed}"], where) for seed in (1, 2))
        for proc in (first, second):
            code, _, err = finished(proc)
            assert code == 0 and "Traceback" not in err, err[-3000:]
        code, _, err = finished(command(["steps=20", "seed=3"], where))
        assert code == 0, err[-3000:]
        # no partial store, and no write-ahead log left once the commands ended (listed before this process reads)
        assert sorted(p.name for p in where.iterdir()) == ["mlflow.db", "mlruns", "outputs"]
        assert len(job_runs(f"sqlite:///{where / 'mlflow.db'}", "FINISHED")) == 3


def test_a_store_that_cannot_be_made_leaves_nothing_half_made(tmp_path: Path) -> None:
    def small_files() -> None:  # a full disk, as SQLite meets it: every write past 150 kB fails
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    for args in (["steps=20"], ["-m", "seed=0,1", "steps=20"]):
        code, _, err = finished(command(args, tmp_path, preexec_fn=small_files))
        assert code == 1
        assert "could not make the store" in one_error_line(err)
        assert not (tmp_path / "mlflow.db").exists()
        assert not [p for p in tmp_path.iterdir() if "making" in p.name]
    code, _, err = finished(command(["steps=20"], tmp_path))  # with room again, the same folder works
    assert code == 0, err[-3000:]


@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one finished run."""
    where = tmp_path_factory.mktemp("good")
    code, _, err = finished(command(["steps=20"], where))
    assert code == 0, err[-3000:]
    return where / "mlflow.db"


def silent_port() -> socket.socket:
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


STORE_FAULTS = ("a folder", "a damaged file", "a silent server", "a closed port")


def fault(case: str, where: Path, good_store: Path, keep: list) -> str:
    """Set up `case` in `where`; the tracking URI to use."""
    if case == "a folder":
        (where / "mlflow.db").mkdir()
    elif case == "a damaged file":
        (where / "mlflow.db").write_bytes(good_store.read_bytes()[:20000])
    elif case == "a silent server":
        keep.append(silent_port())
        return f"http://127.0.0.1:{keep[-1].getsockname()[1]}"
    else:
        return f"http://127.0.0.1:{closed_port()}"
    return f"sqlite:///{where / 'mlflow.db'}"


@pytest.mark.parametrize("case", STORE_FAULTS)
def test_a_bad_store_is_one_line_in_bounded_time_in_run_report_and_results(case: str, tmp_path: Path,
                                                                          good_store: Path) -> None:
    keep: list = []
    uri = fault(case, tmp_path, good_store, keep)
    before = sorted(p.name for p in tmp_path.iterdir())
    damaged = (tmp_path / "mlflow.db").read_bytes() if (tmp_path / "mlflow.db").is_file() else None
    probe = ("from linreg_lab import results\n"
             f"try:\n    results.runs(tracking_uri={uri!r})\n"
             "except ValueError as err:\n    print(f'ValueError: {err}')\n")
    for args, module, prefix in ((["steps=20", f"mlflow.tracking_uri={uri}"], "linreg_lab.run", "linreg_lab: error: "),
                                 (["-m", "seed=0,1", "steps=20", f"mlflow.tracking_uri={uri}"], "linreg_lab.run",
                                  "linreg_lab: error: "),
                                 (["--tracking-uri", uri], "linreg_lab.report", "linreg_lab report: error: ")):
        start = time.monotonic()
        code, _, err = finished(command(args, tmp_path, module), timeout=BOUND_S)
        assert time.monotonic() - start < STORE_WAIT_S + 15
        assert code == 1
        assert uri in one_error_line(err, prefix)
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=BOUND_S)
    assert time.monotonic() - start < STORE_WAIT_S + 15
    assert out.stdout.startswith("ValueError: ") and uri in out.stdout and "Traceback" not in out.stderr, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written: no store, no output folder
    if damaged is not None:
        assert (tmp_path / "mlflow.db").read_bytes() == damaged


@pytest.mark.parametrize("mode", ["wal", "delete"])
def test_a_store_whose_write_lock_stays_held_is_one_line_before_any_work(mode: str, tmp_path: Path,
                                                                       good_store: Path) -> None:
    """Another process holds the store's write lock (here: an open BEGIN EXCLUSIVE) for longer than the check
    waits: `run` says so in one line within STORE_WAIT_S and writes nothing; a reader (`results`) is not kept
    waiting in WAL mode (readers do not wait for a writer there)."""
    db = tmp_path / "mlflow.db"
    db.write_bytes(good_store.read_bytes())
    with sqlite3.connect(db) as con:
        assert con.execute(f"PRAGMA journal_mode={mode}").fetchone() == (mode,)
    con.close()
    uri = f"sqlite:///{db}"
    runs_before = len(job_runs(uri))
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        code, _, err = finished(command(["steps=20", f"mlflow.tracking_uri={uri}"], tmp_path), timeout=BOUND_S)
        assert STORE_WAIT_S - 1 < time.monotonic() - start < STORE_WAIT_S + 15
        assert code == 1 and "stayed locked" in one_error_line(err, "linreg_lab: error: ")
        if mode == "wal":
            assert len(job_runs(uri)) == runs_before  # read while the lock is held
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert len(job_runs(uri)) == runs_before and not (tmp_path / "outputs").exists()


def test_results_refuses_an_unknown_metric_and_a_malformed_uri(good_store: Path) -> None:
    from linreg_lab import results

    runs = results.runs(tracking_uri=f"sqlite:///{good_store}", sweep=None)
    with pytest.raises(ValueError, match="'no/such_metric' is not one these runs logged; histories: train/loss"):
        results.curves(runs, "no/such_metric")
    assert len(results.curves(runs, "train/loss"))
    with pytest.raises(ValueError, match="tracking URI 'foo://bar' is malformed; allowed: sqlite:///PATH"):
        results.runs(tracking_uri="foo://bar")


@pytest.mark.parametrize("module", ["linreg_lab.run", "linreg_lab"])
def test_ctrl_c_in_the_first_second_is_one_line_without_a_traceback(module: str, tmp_path: Path) -> None:
    proc = command(["steps=20"], tmp_path, module)
    time.sleep(0.3)  # still importing Hydra and the config
    proc.send_signal(signal.SIGINT)
    code, _, err = finished(proc, timeout=BOUND_S)
    assert code == 130
    assert "stopped (interrupted)" in one_error_line(err, "linreg_lab: stopped")
    assert not (tmp_path / "mlflow.db").exists()


def peak_memory(args: list[str], cwd: Path) -> int:
    """The most memory (resident, bytes) a single-run command `python -m linreg_lab.run ARGS` held."""
    probe = ("import resource, subprocess, sys\n"
             f"subprocess.run([sys.executable, '-m', 'linreg_lab.run', *{args!r}], check=True, capture_output=True)\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # its one child: the command
    out = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return int(out.stdout) * 1024  # kB on Linux


def test_the_size_checks_memory_estimate_is_near_a_jobs_measured_peak(tmp_path: Path) -> None:
    tracking.create_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    small, big = ["steps=1000", "replicates=8"], ["steps=1000", "replicates=4000"]
    grown = peak_memory(big, tmp_path) - peak_memory(small, tmp_path)  # the job's arrays, less imports and the rest
    estimate = limits.memory_bytes(compose_config(*big)) - limits.memory_bytes(compose_config(*small))
    assert 0.5 * grown <= estimate <= 2.5 * grown, (estimate, grown)


# ---- a stop signal while the store is being written ----

def test_a_stop_signal_inside_a_store_call_takes_effect_at_its_end() -> None:
    previous = {sig: signal.getsignal(sig) for sig in lifecycle.STOP_SIGNALS}
    lifecycle.install_signal_handlers()
    try:
        done = []
        with pytest.raises(lifecycle.Terminated):
            with lifecycle.uninterrupted():
                with lifecycle.uninterrupted():  # nested: only the outermost block's end raises
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.05)  # Python has run the handler by now
                    done.append("inner")
                os.kill(os.getpid(), signal.SIGINT)  # a second signal: the first decides
                time.sleep(0.05)
                done.append("outer")
        assert done == ["inner", "outer"]
        with pytest.raises(KeyboardInterrupt, match="interrupted by signal 2"):
            os.kill(os.getpid(), signal.SIGINT)  # outside any store call: at once
            time.sleep(1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


SWEEP = ["-m", "seed=range(4)", "steps=60000", "replicates=2"]  # each job trains about a second, then writes
TARGETS = {"basic": ("launcher", "group"), "pool": ("launcher", "group", "worker"),
           "joblib": ("launcher", "group", "worker")}
MATRIX = [(launcher, sig, target) for launcher, targets in TARGETS.items() for sig in ("SIGINT", "SIGTERM")
          for target in targets]


def sweep_args(launcher: str, *extra: str) -> list[str]:
    return [*SWEEP, *([] if launcher == "basic" else [f"hydra/launcher={launcher}"]), *extra]


@pytest.mark.parametrize(("launcher", "sig", "target"), MATRIX, ids=["-".join(case) for case in MATRIX])
def test_a_stop_signal_during_store_writes_ends_the_sweep_cleanly(launcher: str, sig: str, target: str,
                                                                 tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    tracking.create_store(uri)  # made before, so that the test's polling never meets its making
    proc = command(sweep_args(launcher), tmp_path, start_new_session=True)  # its own group: killpg reaches it all
    in_flight = 1 if launcher == "basic" else 2
    deadline = time.monotonic() + 300
    while len(running := job_runs(uri, "RUNNING")) < in_flight:  # polled closely: a job is short
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.02)
    owners = {int(r.data.tags["owner"].split(":")[1]) for r in running}
    lock = sqlite3.connect(db, timeout=30, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the slow store: every write now waits, the jobs' own included
    try:
        time.sleep(2.0)  # the jobs in flight end their training and wait inside their final write
        number = getattr(signal, sig)
        if target == "launcher":
            os.kill(proc.pid, number)
        elif target == "group":
            os.killpg(proc.pid, number)
        else:
            os.kill(min(owners - {proc.pid}), number)  # a worker that owns a run in flight
        signalled = time.monotonic()
        time.sleep(1.5)  # the signal lands while the writes still wait
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    code, out, err = finished(proc, timeout=BOUND_S)
    assert time.monotonic() - signalled < BOUND_S
    assert code == 128 + number, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert f"linreg_lab: stopped ({'interrupted' if sig == 'SIGINT' else 'terminated'} by signal {number})" in err
    assert not Path(f"{db}-journal").exists()  # no write was cut in half
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("linreg_lab").experiment_id
    statuses = [r.info.status for r in tracking.search_all(client, exp)]
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses
    code, _, err = finished(command(sweep_args(launcher, "resume=true"), tmp_path))
    assert code == 0, err[-3000:]
    done = job_runs(uri, "FINISHED")
    hashes = [r.data.tags["config_hash"] for r in done]
    assert len(hashes) == len(set(hashes)) == 4  # every job finished, once
