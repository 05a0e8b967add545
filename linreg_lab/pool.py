"""`hydra/launcher=pool`: a sweep's jobs on worker processes forked from the launching process.

Hydra's joblib launcher pickles the launcher's whole state (Hydra's singletons with the
config store, the config loader, the primary config) for every job, and its workers import
torch and MLflow again, which takes seconds. Here torch and MLflow are loaded once in the
launching process, which then forks `n_jobs` workers: they start in milliseconds, inherit
everything (the config cache included), and each takes the next job not yet taken whenever it
is free, so a sweep whose jobs differ in cost (steps, replicates, batch sizes) keeps every
worker busy whatever the jobs' order. Each job runs as under the basic launcher, through Hydra's
own `run_job`, and its whole JobReturn (config, hydra config, folder, status, value) comes back to
the launching process. No database connection is used across the fork: a worker opens its own
(tracking.keep_connections_per_process), and a server is reached over HTTP.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import queue
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from omegaconf import open_dict

from linreg_lab import console
from linreg_lab.lifecycle import STOP_WAIT_S, interruption

STOPPED_EXITS = (128 + signal.SIGINT, 128 + signal.SIGTERM)  # a worker's exit after a stop signal (_worker)


def run_one(launcher, idx: int, overrides: list[str]) -> JobReturn:
    """Job `idx` as Hydra's basic launcher runs it: Hydra's own `run_job`."""
    cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
    with open_dict(cfg):
        cfg.hydra.job.id = idx
        cfg.hydra.job.num = idx
    return run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=cfg,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def portable(ret: JobReturn) -> bytes:
    """The JobReturn pickled to cross the process boundary; when it does not pickle (a return value or an
    exception that cannot), a copy whose value is a RuntimeError saying what it was."""
    try:
        return pickle.dumps(ret, pickle.HIGHEST_PROTOCOL)
    except Exception as err:
        out = JobReturn(overrides=ret.overrides, working_dir=ret.working_dir, task_name=ret.task_name,
                        status=ret.status)
        out.return_value = RuntimeError(f"the job's result could not be sent back ({type(err).__name__}: {err})")
        return pickle.dumps(out, pickle.HIGHEST_PROTOCOL)


def take(taken, count: int) -> int | None:
    """The position of the next job no worker has taken yet (None when there is none), from the shared counter."""
    with taken.get_lock():
        i = taken.value
        taken.value = i + 1
    return i if i < count else None


def _worker(launcher, jobs: list[tuple[int, list[str]]], taken, results, threads: int) -> None:
    """A forked worker: run jobs until none is left, reporting each job's JobReturn by its index."""
    import torch

    from linreg_lab.lifecycle import exit_code

    torch.set_num_threads(threads)
    try:
        while (i := take(taken, len(jobs))) is not None:
            idx, overrides = jobs[i]
            ret = run_one(launcher, idx, overrides)
            results.put((idx, portable(ret)))
    except KeyboardInterrupt as err:  # SIGTERM from the launching process, or Ctrl-C: the job ended its run KILLED
        os._exit(exit_code(err))


def workers(n_jobs: int, jobs: int) -> int:
    """n_jobs workers (-1: one per CPU), never more than jobs."""
    n = n_jobs if n_jobs > 0 else (os.cpu_count() or 1)
    return max(1, min(n, jobs))


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Run a batch of jobs on launcher.n_jobs forked workers (in this process when one is enough)."""
    setup_globals()
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    jobs = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
    n = workers(launcher.n_jobs, len(jobs))
    if n == 1:
        return [run_one(launcher, idx, overrides) for idx, overrides in jobs]
    import linreg_lab.job  # noqa: F401  torch and MLflow load here, once, for every worker

    ctx = multiprocessing.get_context("fork")
    results, taken = ctx.Queue(), ctx.Value("q", 0)  # taken: how many jobs workers have taken
    threads = max(1, (os.cpu_count() or 1) // n)
    procs = [ctx.Process(target=_worker, args=(launcher, jobs, taken, results, threads), daemon=True)
             for _ in range(n)]
    settle_heap()
    for p in procs:
        p.start()
    try:
        done = collect(results, procs, len(jobs))
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker's current job ends its run KILLED
        stop(procs)
        raise
    stop(procs)
    return [done.get(idx) or lost(idx, overrides) for idx, overrides in jobs]


def settle_heap() -> None:
    """Collect the garbage, then freeze what is left (Python's gc docs, for fork without exec): the modules and
    configs every worker inherits are then never walked by a worker's collections, which only see a job's
    own objects (measured: 8% of a 200-job sweep's jobs' time). This process keeps them frozen too: they
    live as long as it does; what a refcount frees is still freed."""
    gc.collect()
    gc.freeze()


def stop(procs, wait_s: float = STOP_WAIT_S) -> None:
    """Join the workers, each within `wait_s` (a worker closing its run KILLED takes well under a second); one
    still there then is killed (its run, if any, is reaped FAILED by the sweep's end)."""
    deadline = time.monotonic() + wait_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()


def collect(results, procs, count: int) -> dict[int, JobReturn]:
    """Every job's JobReturn by index, until all arrived or every worker is gone. A worker that a stop signal
    ended (exit 130 or 143: SIGINT or SIGTERM sent to it alone) stops the whole sweep as that signal would."""
    done: dict[int, JobReturn] = {}
    while len(done) < count:
        try:
            idx, ret = results.get(timeout=0.2)
        except queue.Empty:
            for p in procs:
                if p.exitcode in STOPPED_EXITS:
                    raise interruption(p.exitcode - 128) from None
            if not any(p.is_alive() for p in procs) and results.empty():
                break
            continue
        done[idx] = pickle.loads(ret)
        console.job_done()
    return done


def lost(idx: int, overrides: list[str]) -> JobReturn:
    """The result of a job whose worker died before reporting it."""
    ret = JobReturn(overrides=overrides, status=JobStatus.FAILED)
    ret.return_value = RuntimeError(f"job #{idx} ({' '.join(filter_overrides(overrides))}): its worker process died")
    return ret
