"""Composing job configs fast: once per distinct choice of config groups, then the swept values.

Hydra composes every job of a sweep from scratch, and the jobs of a sweep mostly differ in plain
values (lr=0.1, seed=3), which Hydra applies after composition with `OmegaConf.update`. So the
configs are composed once per distinct set of the other overrides (group choices, hydra keys, +/~
edits) and each job's plain values are applied to a copy, the same way. Used by the preflight check
and, through the `cached_basic` sweeper, by every launcher. Each distinct override string is parsed
once per process: a sweep repeats the same few strings in every job.

What Hydra derives from a job's overrides is not re-derived here: a command whose config refers to
`hydra.job.override_dirname` is composed job by job by Hydra's own loader, and otherwise a cached job
leaves that field unset (MISSING), so nothing can read a value Hydra did not compute.
"""

from __future__ import annotations

import copy
import itertools
import os
import pickle
import re
from collections.abc import Callable

from hydra.core.config_loader import ConfigLoader
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

GROUPS = ("data", "model", "optimizer", "experiment", "estimator")  # linreg_lab's config groups (conf/<group>/)


def is_plain(o: Override, groups=GROUPS) -> bool:
    """key=value on a config key, not on a config group in `groups`: Hydra applies it after composition,
    so it can be applied to a copy."""
    key = o.key_or_group
    return (key not in groups and key.replace(".", "/") not in groups and not o.is_hydra_override()
            and not o.is_sweep_override() and not (o.is_add() or o.is_delete() or o.is_force_add() or o.package))


def apply_plain(cfg: DictConfig, plain: list[Override]) -> None:
    """Hydra's own assignment of a plain override (merge=True), in command-line order."""
    for o in plain:
        OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)


_PARSED: dict[str, Override] = {}  # override string -> Hydra's parse of it, per process


def parse(overrides: list[str]) -> list[Override]:
    """Hydra's parse of each override (copies: a parse is never shared between jobs)."""
    missing = [line for line in dict.fromkeys(overrides) if line not in _PARSED]
    if missing:
        _PARSED.update(zip(missing, OverridesParser.create().parse_overrides(missing)))
    return [copy.deepcopy(_PARSED[line]) for line in overrides]


def pickle_copy(cfg: DictConfig) -> DictConfig:
    """A deep copy that skips deepcopy's per-node Python walk (pickle copies in C). Its structured-config
    classes are looked up again by name, which are not the objects Hydra's plugin scan left in a composed
    config: such a copy must never be pickled again (joblib sends its jobs' configs back to the launching
    process)."""
    return pickle.loads(pickle.dumps(cfg, pickle.HIGHEST_PROTOCOL))


class CachedComposer:
    """compose(overrides) by cache: `base_compose(rest)` runs once per distinct `rest`, the
    overrides that are not plain (on `groups`); each call applies its plain ones to a copy (deepcopy,
    or `pickle_copy` when `pickled`). Where applying them fails (a key the config lacks, a value of
    the wrong type), the job is composed whole by `base_compose`, which says so Hydra's way."""

    def __init__(self, base_compose: Callable[[list[str]], DictConfig], pickled: bool = False,
                 groups=GROUPS) -> None:
        self.base_compose = base_compose
        self.pickled = pickled
        self.groups = groups
        self.cache: dict[tuple[str, ...], DictConfig] = {}

    def __call__(self, overrides: list[str]) -> tuple[DictConfig, list[Override]]:
        parsed = parse(overrides)
        plain = [o for o in parsed if is_plain(o, self.groups)]
        rest = tuple(line for line, o in zip(overrides, parsed) if not is_plain(o, self.groups))
        if rest not in self.cache:
            self.cache[rest] = self.base_compose(list(rest))
        cfg = (pickle_copy if self.pickled else copy.deepcopy)(self.cache[rest])
        try:
            apply_plain(cfg, plain)
        except Exception:
            return self.base_compose(list(overrides)), parsed
        return cfg, parsed


_SWEEP_COMPOSERS: dict[tuple, CachedComposer] = {}  # per process: survives joblib's per-task unpickling
_last_command: tuple[DictConfig | None, tuple] = (None, ())  # the latest master config and its command_key


def command_key(master_config: DictConfig) -> tuple:
    """What every composition of one command shares: its config name, hydra overrides, sweep folder and
    whether it refers to override_dirname; worked out again only for another master config (joblib's
    workers unpickle a new master config for every job, the other launchers keep one, and resolving the
    sweep folder's ${now:} is not free)."""
    global _last_command
    if _last_command[0] is not master_config:
        _last_command = (master_config, (master_config.hydra.job.config_name,
                                         tuple(master_config.hydra.overrides.hydra),
                                         OmegaConf.select(master_config, "hydra.sweep.dir"),
                                         uses_override_dirname(master_config)))
    return _last_command[1]


def uses_override_dirname(master_config: DictConfig) -> bool:
    """Whether any value of the command's config interpolates hydra.job.override_dirname (a sweep's subdir,
    say): then only Hydra's own composition gives each job the right one."""
    text = OmegaConf.to_yaml(master_config, resolve=False)
    return re.search(r"\$\{[^}]*override_dirname", text) is not None


class LoaderGroups:
    """The config groups a loader knows, as a container: `path in groups` (nested ones as a/b) asks the
    loader for the groups under the path's parent, once per parent, not for its whole tree."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.listed: dict[str, set[str]] = {}

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str) or not path:
            return False
        parent, _, name = path.rpartition("/")
        if parent and parent not in self:
            return False
        if parent not in self.listed:
            self.listed[parent] = set(self.loader.list_groups(parent))
        return name in self.listed[parent]


class CachingConfigLoader(ConfigLoader):
    """Hydra's ConfigLoader, whose `load_sweep_config` composes once per distinct overrides that are not
    plain values (config group choices, hydra keys, +/~ edits, taken from the wrapped loader's own
    list of groups) and records the job's own overrides (hydra.overrides.task). A command that refers to
    hydra.job.override_dirname is composed job by job by the wrapped loader. Everything else is the
    wrapped loader's."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.groups = LoaderGroups(loader)

    def load_configuration(self, config_name, overrides, run_mode, from_shell=True, validate_sweep_overrides=True):
        return self.loader.load_configuration(config_name, overrides, run_mode, from_shell=from_shell,
                                              validate_sweep_overrides=validate_sweep_overrides)

    def get_search_path(self):
        return self.loader.get_search_path()

    def get_sources(self):
        return self.loader.get_sources()

    def list_groups(self, parent_name: str):
        return self.loader.list_groups(parent_name)

    def get_group_options(self, group_name, results_filter=ObjectType.CONFIG, config_name=None, overrides=None):
        return self.loader.get_group_options(group_name, results_filter, config_name, overrides)

    def compute_defaults_list(self, config_name, overrides, run_mode):
        return self.loader.compute_defaults_list(config_name, overrides, run_mode)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        command = command_key(master_config)
        if command[-1]:  # the config interpolates override_dirname: Hydra's composition, whole
            return self.loader.load_sweep_config(master_config, list(sweep_overrides))
        key = (*command, os.getcwd())
        if key not in _SWEEP_COMPOSERS:
            if len(_SWEEP_COMPOSERS) > 16:
                _SWEEP_COMPOSERS.clear()
            _SWEEP_COMPOSERS[key] = CachedComposer(lambda rest: self.loader.load_sweep_config(master_config, rest),
                                                   groups=self.groups)
        cfg, parsed = _SWEEP_COMPOSERS[key](list(sweep_overrides))
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in parsed if not o.is_hydra_override()]
            cfg.hydra.job.override_dirname = MISSING  # nothing refers to it; Hydra's value is not re-derived
        return cfg


GRID_SWEEPERS = ("cached_basic", "basic")  # hydra/sweeper options that run a grid the preflight can expand


def grid_sweeper(choice: str | None) -> bool:
    """Is the sweeper (the hydra/sweeper option chosen) one that runs a grid, whose jobs the preflight knows?"""
    return choice is None or choice in GRID_SWEEPERS


def grid_jobs(params: dict[str, str], arguments: list[str], parser: OverridesParser,
              extra_grids: list[dict[str, str]] = ()) -> list[list[str]]:
    """Every job of a grid sweep (Hydra's basic sweeper, cached_basic), as its override strings: the sweeper's
    `params` (hydra.sweeper.params), then the command line's task overrides (`arguments`), each key's values
    crossed; then, for each of cached_basic's `extra_grids`, the same grid with that entry's values in place of
    (or beside) the others, the command line's included (a preset's second arm: the tuned runs beside a
    learning-rate grid; `hydra.sweeper.extra_grids=[]` drops it). The one
    expansion of a sweep: the preflight counts and checks these very jobs."""
    jobs = []
    for grid in [{}, *extra_grids]:  # an extra grid's own keys win over the command line's too
        lines = ([f"{key}={value}" for key, value in params.items()] + list(arguments)
                 + [f"{key}={value}" for key, value in grid.items()])
        jobs += sweep_jobs(parser.parse_overrides(lines))
    return jobs


def sweep_jobs(parsed: list[Override]) -> list[list[str]]:
    """Every job of a sweep, as its override strings, in Hydra's basic sweeper's order: the cartesian
    product of each key's values, keys in their first order, a later override of a key replacing an
    earlier one (the command line over hydra.sweeper.params)."""
    choices: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():
            choices[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in o.sweep_string_iterator()]
        else:
            raise ValueError(f"{o.input_line}: the cached_basic sweeper takes lists and ranges "
                             "(choice(...), a,b, range(...)), not interval sweeps")
    return [list(job) for job in itertools.product(*choices.values())]
