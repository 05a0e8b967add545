"""The Hydra entry point: `python -m linreg_lab.run [-m] key=value ...`.

This is the only place that sees a DictConfig: it checks the composed config once,
turns it into typed dataclasses and hands plain values to `job.run_job`.
"""

from __future__ import annotations

from linreg_lab.lifecycle import (
    exit_code,
    install_signal_handlers,
    quit_quietly_on_signals,
    restore_signal_handlers,
    skip_final_collections,
)

if __name__ == "__main__":  # `python -m linreg_lab.run`; `linreg-lab` and `python -m linreg_lab`: __main__.cli
    quit_quietly_on_signals()  # before the imports below (a second or more): Ctrl-C meanwhile ends quietly

import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from linreg_lab.composing import grid_sweeper
from linreg_lab.config import check_config, config_hash, config_yaml, flatten, register_configs
from linreg_lab.contract import PARENT_ENV, SIZE_ENV
from linreg_lab.schema import ConfigError
from linreg_lab.store_check import StoreError
from linreg_lab.store_uri import resolve_tracking_uri

CONFIG_NAME = "config"  # conf/config.yaml: the primary config Hydra composes


def conf_dir() -> Path:
    """The config tree: shipped inside the package (wheel), or conf/ beside it (checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"linreg_lab: no conf/{CONFIG_NAME}.yaml beside {here}")


def job_label() -> str:
    """'[k/N] ' inside a sweep, '' for a single run."""
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return ""
    return f"[{hc.job.num + 1}/{os.environ.get(SIZE_ENV, '?')}] "


def job_context(cfg: DictConfig, tracking_uri: str, overrides: list[str], **extra):
    """The job.JobContext of a composed config: its params (flattened), YAML and hash."""
    from linreg_lab import job

    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    params = flatten(container)
    return job.JobContext(tracking_uri=tracking_uri, params=params, config_yaml=config_yaml(cfg),
                          overrides=overrides, config_hash=config_hash(params), **extra)


def task(cfg: DictConfig) -> float | None:
    """One Hydra job; returns its `objective` (default: the final |w - w_true|), what a sweeper optimizes. Under a
    sweeper of its own search (Optuna), a job that fails or whose objective is not finite (diverged) returns None,
    which such a sweeper records as a failed trial (NaN would crash hydra-optuna-sweeper 1.3): the search goes on."""
    previous = install_signal_handlers()  # in a launcher's own worker (joblib, Ray) too: signals end runs KILLED
    try:
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN and not grid_sweeper(hc.runtime.choices.get("hydra/sweeper")):
            try:
                value = run_task(cfg, hc)
            except Exception as err:  # the run (if one began) is FAILED already; Ctrl-C and SIGTERM still stop
                print(f"{job_label()}linreg_lab: error: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                return None
            return value if math.isfinite(value) else None
        return run_task(cfg, hc)
    finally:
        restore_signal_handlers(previous)  # between jobs a worker process is its launcher's again


def run_task(cfg: DictConfig, hc) -> float:
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        run_cfg = check_config(cfg)
    except ConfigError as err:
        if multirun:
            raise  # the sweep records this job as failed and goes on
        sys.exit(f"linreg_lab: error: {err}")
    from linreg_lab import tracking  # mlflow and torch load only once the config is known good

    uri = resolve_tracking_uri(run_cfg.mlflow.tracking_uri, hc.runtime.cwd)
    tracking.start_creating_store(uri)  # a new store is made while torch loads
    from linreg_lab import job

    ctx = job_context(cfg, uri, list(hc.overrides.task),
                      parent_run_id=os.environ.get(PARENT_ENV) if multirun else None, label=job_label(),
                      sweep_dir=str(hc.sweep.dir) if multirun else None)
    try:
        finals = job.run_job(run_cfg, ctx)
    except StoreError as err:
        if multirun:
            raise
        sys.exit(f"linreg_lab: error: {err}")
    return float(finals.get(run_cfg.objective, float("nan")))


def register_plugins() -> None:
    """Make `hydra/sweeper=cached_basic` (config.yaml's default) and `hydra/launcher=pool` known to Hydra.
    Hydra finds plugins by scanning the hydra_plugins package, which misses an editable install's,
    so they are registered here."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # scans (and re-executes) Hydra's core plugins: only then import ours
    from hydra_plugins.linreg_lab_launcher import PoolLauncher
    from hydra_plugins.linreg_lab_sweeper import CachedBasicSweeper

    plugins.register(CachedBasicSweeper)
    plugins.register(PoolLauncher)


def main() -> None:
    """Check the whole command, then let Hydra run the job(s); signals end runs as KILLED."""
    from linreg_lab.preflight import preflight

    register_configs()
    register_plugins()
    try:
        jobs = preflight(sys.argv[1:], conf_dir())
    except ConfigError as err:
        sys.exit(f"linreg_lab: error: {err}")
    if jobs:
        os.environ[SIZE_ENV] = str(jobs)
    install_signal_handlers()
    # our conf/hydra/launcher/*.yaml set defaults for the plugins' launchers and are checked against
    # their schemas of the same name; Hydra warns that this matching is deprecated, which is noise here
    warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema with the same name.*")
    hydra_main = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name=CONFIG_NAME)(task)
    from linreg_lab.sweep import close_abandoned_sweep  # mlflow loads only after the preflight passed

    try:
        hydra_main()
    except KeyboardInterrupt as err:
        close_abandoned_sweep("KILLED")
        print(f"linreg_lab: stopped ({str(err) or 'interrupted'})", file=sys.stderr)
        sys.exit(exit_code(err))
    finally:
        close_abandoned_sweep("FAILED")  # no-op when the sweep closed itself
        skip_final_collections()


if __name__ == "__main__":
    main()
