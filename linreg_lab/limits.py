"""What this machine and MLflow can take: the one-time check refuses, before any work, a job whose memory or time
is absurd here, a seed outside numpy's range, a name over MLflow's limits and a key the schema does not have
(`+foo=1`). The figures are estimates from the config alone (steps x replicates x features x batch), so that a
user hears what would fit instead of meeting an out-of-memory kill minutes later."""

from __future__ import annotations

import dataclasses
import os

from linreg_lab.schema import Config, ConfigError, RunConfig

SEED_MAX = 2**32 - 1  # numpy's seed range (RandomState's), the narrowest of the generators a seed reaches
EXPERIMENT_NAME_LENGTH = 500  # MLflow's limit on an experiment's name
TAG_VALUE_LENGTH = 8000  # MLflow's limit on a tag's value (a job's overrides, a sweep's command)
MEMORY_SHARE = 0.5  # the most of this machine's memory one job's arrays may take
TIME_LIMIT_S = 7 * 86400  # a job whose least possible time is longer is refused
STEP_FLOOR_S = 2e-6  # no step of the training loop takes less (it is a Python call per step)
ELEMENTS_PER_S = 1e10  # nor does a step touch its batch's numbers faster than this
LOSS_COPIES = 4  # the loss per step and replicate is held as a tensor, an array, a history and curves.npz's copy
SCORING_COPIES = 12  # float64 copies of every replicate's design the scoring holds at its peak (analysis, theory):
# calibrated on a measured peak (tests/test_faults.py checks the estimate against a job's peak memory)


def machine_memory() -> int:
    """This machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_bytes(rc: RunConfig) -> int:
    """The arrays a job holds at once, in bytes: each replicate's data (a stream: every row its steps draw) and the
    scoring's float64 copies of it, the batch indices of the whole run, the loss per step and replicate, the
    evaluated parameters, a d x d matrix per replicate."""
    R, d, data = rc.replicates, len(rc.data.true_w), rc.data
    item = 4 if rc.dtype == "float32" else 8
    batch = data.n_train if rc.batch_size is None else rc.batch_size
    rows = rc.steps * batch if data.streaming else data.n_train
    total = R * rows * (d + 1) * (item + SCORING_COPIES * 8) + data.n_test * (d + 1) * item
    total += R * (d + 1) ** 2 * 8  # a d x d matrix per replicate: the solver's, theory's Hessian
    if rc.is_solver:
        return total
    if data.streaming:
        total += rc.steps * batch * 8
    elif rc.batch_size is not None:
        total += rc.steps * R * batch * 8
    evals = rc.steps // rc.eval_every + 2
    return total + LOSS_COPIES * rc.steps * R * 8 + evals * R * (d + 1) * 8


def least_seconds(rc: RunConfig) -> float:
    """A floor under a gradient job's time: every step costs at least STEP_FLOOR_S and its numbers' share."""
    if rc.is_solver:
        return 0.0
    batch = rc.data.n_train if rc.batch_size is None else rc.batch_size
    return rc.steps * (STEP_FLOOR_S + rc.replicates * batch * (len(rc.data.true_w) + 1) / ELEMENTS_PER_S)


def largest(rc: RunConfig, key: str, fits) -> int:
    """The largest value of `key` (steps or replicates) at which `fits(config)` holds, 0 if not even at 1."""
    low, high = 0, getattr(rc, key)
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(dataclasses.replace(rc, **{key: mid})) else (low, mid - 1)
    return low


def check_size(rc: RunConfig, memory: int | None = None) -> None:
    """Refuse a job that cannot fit in MEMORY_SHARE of this machine's memory or needs more than TIME_LIMIT_S,
    saying how many steps (at these replicates) or replicates (at these steps) would."""
    memory = memory or machine_memory()
    sizes = f"steps={rc.steps}, replicates={rc.replicates}, {len(rc.data.true_w)} features"
    need, seconds = memory_bytes(rc), least_seconds(rc)
    if need > MEMORY_SHARE * memory:
        problem = (f"{sizes} need about {need / 2**30:.3g} GiB of memory; this machine has {memory / 2**30:.3g} GiB "
                   f"and a job may take {MEMORY_SHARE:.0%}")
    elif seconds > TIME_LIMIT_S:
        problem = f"{sizes} need at least {seconds / 86400:.3g} days here; a job may take {TIME_LIMIT_S // 86400}"
    else:
        return
    fits = lambda c: memory_bytes(c) <= MEMORY_SHARE * memory and least_seconds(c) <= TIME_LIMIT_S  # noqa: E731
    options = [f"{key}={n}" for key in ("steps", "replicates") if (n := largest(rc, key, fits))]
    allowed = f"{' or '.join(options)} at most, the rest as given" if options else "fewer features or rows"
    raise ConfigError(f"{problem}; allowed: {allowed}")


def check_seeds(c: Config) -> None:
    """Every seed a config gives is one numpy takes: 0 .. 2**32 - 1."""
    seeds = {"seed": c.seed, "data_seed": c.data_seed, "init_seed": c.init_seed, "order_seed": c.order_seed,
             "data.w_seed": getattr(c.data, "w_seed", None), "data.basis_seed": getattr(c.data, "basis_seed", None)}
    for key, value in seeds.items():
        if value is not None and not 0 <= value <= SEED_MAX:
            raise ConfigError(f"{key}={value} is outside numpy's seed range; allowed: 0 .. {SEED_MAX}")


def check_names(c: Config) -> None:
    name = c.mlflow.experiment
    if not name or len(name) > EXPERIMENT_NAME_LENGTH:
        raise ConfigError(f"mlflow.experiment has {len(name or '')} characters; allowed: 1 .. "
                          f"{EXPERIMENT_NAME_LENGTH} (MLflow's limit)")


def unknown_keys(node: object, prefix: str = "") -> list[str]:
    """Keys a config object holds that its dataclass does not declare (added with `+key=value`), dotted."""
    if not dataclasses.is_dataclass(node):
        return []
    declared = {f.name for f in dataclasses.fields(node)}
    out = [f"{prefix}{key}" for key in vars(node) if key not in declared]
    for f in dataclasses.fields(node):
        out += unknown_keys(getattr(node, f.name), f"{prefix}{f.name}.")
    return out


def check_keys(c: Config) -> None:
    extra = unknown_keys(c)
    if extra:
        first = extra[0]
        parent = first.rpartition(".")[0]
        node = c
        for part in filter(None, parent.split(".")):
            node = getattr(node, part)
        allowed = ", ".join(f.name for f in dataclasses.fields(node))
        raise ConfigError(f"{', '.join(extra)}: not a config key (added with +); allowed "
                          f"{'at ' + parent if parent else 'at the top'}: {allowed}")
