"""Check a whole command before any work: every job of a sweep, the store, the output folder.

`preflight(argv)` runs before Hydra launches anything and before torch or MLflow load
(torch only for device=cuda/mps, to ask whether the device exists). Each problem is one
line: what was wrong and what is allowed. The jobs are the sweeper's own expansion
(composing.grid_jobs); each is composed by cache (composing.CachedComposer), since a sweep's
jobs mostly share their config groups and a Hydra composition is the slow part of a check.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf

from linreg_lab.composing import GROUPS, CachedComposer, grid_jobs, grid_sweeper
from linreg_lab.config import check_config
from linreg_lab.schema import ConfigError
from linreg_lab.store_check import StoreError, check_store
from linreg_lab.store_uri import resolve_tracking_uri

HYDRA_FLAGS = ("-m", "--multirun")  # any other flag (--cfg, --help, ...) is left to Hydra alone


def group_options(conf: Path, group: str) -> list[str]:
    """The options of a config group: the YAML files in conf/<group>/."""
    return sorted(p.stem for p in (conf / group).glob("*.yaml"))


def check_group_choices(conf: Path, overrides: list[Override]) -> None:
    """Every value given to a config group names a file of that group."""
    for o in overrides:
        if o.key_or_group not in GROUPS:
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        allowed = group_options(conf, o.key_or_group)
        for value in values:
            if value not in allowed:
                raise ConfigError(f"{o.key_or_group}={value} is not known; allowed: {', '.join(allowed)}")


LAUNCHER_PLUGINS = {  # hydra/launcher option -> (plugin module, how to get it)
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "pip install hydra-joblib-launcher"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "pip install hydra-submitit-launcher"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "pip install hydra-submitit-launcher"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "pip install 'linreg_lab[ray]'"),
}


def check_launcher(overrides: list[Override]) -> None:
    """A launcher chosen on the command line must have its Hydra plugin installed."""
    for o in overrides:
        if o.key_or_group == "hydra/launcher" and o.value() in LAUNCHER_PLUGINS:
            module, fix = LAUNCHER_PLUGINS[o.value()]
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"hydra/launcher={o.value()} needs its Hydra plugin, which is not installed: {fix}")


def check_pool(primary) -> None:
    """The launcher composed for this command, if it is the pool: this platform can fork, and it
    takes n_jobs >= 1 workers, or -1 for one per CPU."""
    from hydra_plugins.linreg_lab_launcher import PoolLauncher

    launcher = OmegaConf.select(primary, "hydra.launcher")
    if launcher is None or launcher.get("_target_") != f"{PoolLauncher.__module__}.{PoolLauncher.__name__}":
        return
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        raise ConfigError("hydra/launcher=pool needs the fork start method (Linux, macOS); allowed here: "
                          "basic, joblib")
    n = launcher.get("n_jobs")
    if not isinstance(n, int) or isinstance(n, bool) or not (n >= 1 or n == -1):
        raise ConfigError(f"hydra.launcher.n_jobs={n!r} is not allowed; allowed: a number of workers >= 1, "
                          "or -1 for one per CPU")


def command_jobs(primary, task_args: list[str], multirun: bool) -> tuple[list[list[str]], int | None]:
    """The jobs to check and how many the sweeper will launch (None: it does not say). One job for a single
    run; for a grid sweeper (cached_basic, basic), the grid of hydra.sweeper.params and the command line's task
    overrides (and cached_basic's extra_grids), every one of its jobs; for any other sweeper, search_checks."""
    if not multirun:
        return [task_args], 1
    params = dict(OmegaConf.select(primary, "hydra.sweeper.params") or {})
    if not grid_sweeper(OmegaConf.select(primary, "hydra.runtime.choices").get("hydra/sweeper")):
        lines = [f"{key}={value}" for key, value in params.items()] + list(task_args)
        trials = OmegaConf.select(primary, "hydra.sweeper.n_trials")
        return search_checks(OverridesParser.create().parse_overrides(lines)), \
            trials if isinstance(trials, int) and not isinstance(trials, bool) else None
    extra = [dict(grid) for grid in OmegaConf.select(primary, "hydra.sweeper.extra_grids") or []]
    try:
        jobs = grid_jobs(params, task_args, OverridesParser.create(), extra)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return jobs, len(jobs)


def search_checks(parsed: list[Override]) -> list[list[str]]:
    """What can be checked of a search (Optuna's, or any sweeper's own) before it runs: every fixed value,
    and each value of every enumerable sweep (choice, range) with the others at their first value; intervals,
    tags and distributions are the sweeper's to draw, checked as each trial's job starts."""
    fixed, options = {}, {}
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():
            fixed[key] = f"{key}={o.get_value_element_as_str()}"
        elif o.is_discrete_sweep():
            options[key] = [f"{key}={value}" for value in o.sweep_string_iterator()]
        else:
            fixed.pop(key, None)
            options.pop(key, None)
    first = {key: values[0] for key, values in options.items()}
    jobs = [list({**fixed, **first}.values())]
    for key, values in options.items():
        jobs += [list({**fixed, **first, key: value}.values()) for value in values[1:]]
    return jobs


def one_line(err: BaseException) -> str:
    """First line of an OmegaConf/Hydra error and of its cause, with the key it concerns."""
    lines = [str(e).strip().splitlines()[0] for e in (err, err.__cause__) if e is not None and str(e).strip()]
    text = ": ".join(dict.fromkeys(lines)) or type(err).__name__
    key = getattr(err.__cause__, "full_key", None) or getattr(err, "full_key", None)
    text = f"{text} (key: {key})" if key and key not in text else text
    schema = getattr(err.__cause__, "object_type", None) or getattr(err, "object_type", None)
    if isinstance(err.__cause__ or err, (KeyError, AttributeError)) and dataclasses.is_dataclass(schema):
        text += f"; allowed keys: {', '.join(f.name for f in dataclasses.fields(schema))}"
    return text


def check_jobs(jobs: list[list[str]], multirun: bool) -> list:
    """Compose and check every job; returns the checked configs."""
    composer, checked = CachedComposer(lambda rest: compose("config", rest), pickled=True), []  # checked, dropped
    for overrides in jobs:
        where = f"job {' '.join(overrides)}: " if multirun and len(jobs) > 1 else ""
        try:
            checked.append(check_config(composer(overrides)[0]))
        except ConfigError as err:
            raise ConfigError(f"{where}{err}") from None
        except Exception as err:  # Hydra/OmegaConf: misspelt key, wrong type
            raise ConfigError(f"{where}{one_line(err)}") from None
    return checked


def check_devices(names: set[str]) -> None:
    """An explicit cuda or mps must exist here; only then are torch (and the job module) imported."""
    wanted = names & {"cuda", "mps"}
    if wanted:
        # torch asks NVML, so CUDA stays uninitialised in this process and workers forked from it
        # (hydra/launcher=pool) can still initialise it; torch falls back to the runtime if NVML fails
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
        from linreg_lab.devices import pick_device

        for name in sorted(wanted):
            pick_device(name)


def check_output_dir(path: str) -> None:
    """Hydra's output folder (or its nearest existing parent) must take a file (tried, then removed)."""
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    try:
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError:
        raise ConfigError(f"output folder {path} cannot be written ({p} is not a writable folder); "
                          "set hydra.run.dir / hydra.sweep.dir to a writable place") from None


def preflight(argv: list[str], conf: Path) -> int | None:
    """Check the command line; returns the number of jobs, or None when Hydra handles a flag itself or the
    sweeper does not say how many it will run."""
    if any(a.startswith("-") and a not in HYDRA_FLAGS for a in argv):
        return None
    multirun = any(a in HYDRA_FLAGS for a in argv)
    args = [a for a in argv if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as err:
        raise ConfigError(f"cannot parse the overrides: {one_line(err)}") from None
    check_group_choices(conf, parsed)
    check_launcher(parsed)
    task_args = [a for a, o in zip(args, parsed) if not o.key_or_group.startswith("hydra")]
    with initialize_config_dir(str(conf), version_base="1.3"):
        try:
            primary = compose("config", [a for a, o in zip(args, parsed) if not o.is_sweep_override()],
                              return_hydra_config=True)
        except Exception as err:
            raise ConfigError(one_line(err)) from None
        check_pool(primary)
        jobs, count = command_jobs(primary, task_args, multirun)
        lines = list(dict.fromkeys(line for job in jobs for line in job))  # hydra.sweeper.params' choices too
        check_group_choices(conf, OverridesParser.create().parse_overrides(lines))
        checked = check_jobs(jobs, multirun)
        out_dir = primary.hydra.sweep.dir if multirun else primary.hydra.run.dir
    check_devices({c.device for c in checked})
    for uri in sorted({resolve_tracking_uri(c.mlflow.tracking_uri, os.getcwd()) for c in checked}):
        try:
            check_store(uri)
        except StoreError as err:
            raise ConfigError(str(err)) from None
    check_output_dir(str(out_dir))
    return count
