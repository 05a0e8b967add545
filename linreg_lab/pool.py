"""`hydra/launcher=pool`: a sweep's jobs on worker processes forked from the launching process.

Hydra's joblib launcher pickles the launcher's whole state (Hydra's singletons with the
config store, the config loader, the primary config) for every job, and its workers import
torch and MLflow again (~6 s on a small machine). Here torch and MLflow are loaded once in the
launching process, which then forks `n_jobs` workers: they start in milliseconds, inherit
everything (the config cache included), and each takes the next job not yet taken whenever it
is free, so a sweep whose jobs differ in cost (steps, replicates, batch sizes) keeps every
worker busy whatever the jobs' order. Each job runs as under the basic launcher, through the
steps of Hydra's `run_job` (`run_job_here`: the same steps without its copies of a config that
the worker owns); what comes back to the launching process is only the job's status and return
value. A worker opens its own database connections (tracking.after_fork), so none is shared
across the fork.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    JobStatus,
    _flush_loggers,
    _save_config,
    configure_log,
    env_override,
    filter_overrides,
    run_job,
    setup_globals,
)
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from linreg_lab import composing, console


def run_one(launcher, idx: int, overrides: list[str]) -> JobReturn:
    """Job `idx` as Hydra's basic launcher runs it; in a worker, whose configs stay there, without its copies."""
    cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
    with open_dict(cfg):
        cfg.hydra.job.id = idx
        cfg.hydra.job.num = idx
    if composing.sweep_configs_stay():
        return run_job_here(launcher.hydra_context, launcher.task_function, cfg)
    return run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=cfg,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def hydra_view(config: DictConfig) -> DictConfig:
    """What HydraConfig.set_config keeps: a root whose `hydra` is config's (now read-only) hydra node,
    still parented by `config` so that its interpolations see the whole config; the node itself
    instead of set_config's copy of it (~7 ms)."""
    OmegaConf.set_readonly(config.hydra, True)
    view = OmegaConf.create(flags={"no_deepcopy_set_nodes": True})
    view.hydra = config._get_node("hydra")
    view._get_node("hydra")._set_parent(config)
    return view


def run_job_here(hydra_context, task_function, config: DictConfig) -> JobReturn:
    """Hydra's `run_job` (hydra.core.utils, 1.3) step by step, for a job config that this process owns
    and never sends anywhere: Hydra copies it three times (~30 ms a job: the task's config, and the
    hydra node twice); here the hydra node is shared (hydra_view) and only the rest is copied
    (composing.copy_without). `hydra.job.chdir: null` counts as false, as under version_base 1.3."""
    callbacks, old_cwd, orig_hydra_cfg = hydra_context.callbacks, os.getcwd(), HydraConfig.instance().cfg
    view = HydraConfig.instance().cfg = hydra_view(config)  # the output folder may interpolate ${hydra:...}
    output_dir = os.path.join(str(OmegaConf.select(config, "hydra.sweep.dir")),
                              str(OmegaConf.select(config, "hydra.sweep.subdir")))
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = os.path.abspath(output_dir)
    chdir = bool(config.hydra.job.chdir)
    try:
        task_cfg = composing.copy_without(config, "hydra")
        ret = JobReturn(cfg=task_cfg, hydra_cfg=view, overrides=OmegaConf.to_container(config.hydra.overrides.task))
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        if chdir:
            os.chdir(output_dir)
        ret.working_dir = output_dir if chdir else os.getcwd()
        configure_log(config.hydra.job_logging, config.hydra.verbose)
        if config.hydra.output_subdir is not None:
            hydra_output = Path(config.hydra.runtime.output_dir) / config.hydra.output_subdir
            _save_config(task_cfg, "config.yaml", hydra_output)
            _save_config(view, "hydra.yaml", hydra_output)
            _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
        with env_override(config.hydra.job.env_set):
            callbacks.on_job_start(config=config, task_function=task_function)
            try:
                ret.return_value, ret.status = task_function(task_cfg), JobStatus.COMPLETED
            except Exception as err:
                ret.return_value, ret.status = err, JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        _flush_loggers()
        callbacks.on_job_end(config=config, job_return=ret)
        return ret
    finally:
        HydraConfig.instance().cfg = orig_hydra_cfg
        if chdir:
            os.chdir(old_cwd)


def _portable(value):
    """A job's return value or exception as it can cross a process boundary."""
    try:
        pickle.dumps(value)
        return value
    except Exception:
        return RuntimeError(f"{type(value).__name__}: {value}")


def take(taken, count: int) -> int | None:
    """The position of the next job no worker has taken yet (None when there is none), from the shared counter."""
    with taken.get_lock():
        i = taken.value
        taken.value = i + 1
    return i if i < count else None


def _worker(launcher, jobs: list[tuple[int, list[str]]], taken, results, threads: int) -> None:
    """A forked worker: run jobs until none is left, reporting each (index, status, value, folder, name)."""
    import torch

    from linreg_lab import tracking
    from linreg_lab.lifecycle import exit_code

    tracking.after_fork()
    composing.sweep_configs_stay_here()  # only status and value go back: configs are copied the fast way
    torch.set_num_threads(threads)
    try:
        while (i := take(taken, len(jobs))) is not None:
            idx, overrides = jobs[i]
            ret = run_one(launcher, idx, overrides)
            results.put((idx, ret.status.value, _portable(ret._return_value), ret.working_dir, ret.task_name))
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
    for p in procs:
        p.start()
    try:
        done = collect(results, procs, len(jobs))
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker's current job ends its run KILLED
        for p in procs:
            p.join()
        raise
    for p in procs:
        p.join()
    returns = []
    for idx, overrides in jobs:
        status, value, working_dir, task_name = done.get(idx) or lost(idx, overrides)
        returns.append(JobReturn(overrides=overrides, status=JobStatus(status), _return_value=value,
                                 working_dir=working_dir, task_name=task_name))
    return returns


def collect(results, procs, count: int) -> dict[int, tuple]:
    """Every job's (status, value, folder, name) by index, until all arrived or every worker is gone."""
    done: dict[int, tuple] = {}
    while len(done) < count:
        try:
            idx, *rest = results.get(timeout=0.2)
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and results.empty():
                break
            continue
        done[idx] = tuple(rest)
        console.job_done()
    return done


def lost(idx: int, overrides: list[str]) -> tuple:
    """The result of a job whose worker died before reporting it."""
    err = RuntimeError(f"job #{idx} ({' '.join(filter_overrides(overrides))}): its worker process died")
    return JobStatus.FAILED.value, err, None, None
