"""Composing job configs fast: once per distinct choice of config groups, then the swept values.

Hydra composes every job of a sweep from scratch (~90 ms each, twice: once to validate the
batch, once to launch it). Jobs of a sweep mostly differ in plain values (lr=0.1, seed=3),
which Hydra applies after composition with `OmegaConf.update`; so the configs are composed
once per distinct set of the other overrides (group choices, hydra keys, +/~ edits) and each
job's plain values are applied to a copy, the same way. Used by the preflight check and,
through the `cached_basic` sweeper, by every launcher. Each distinct override string is
parsed once per process (Hydra's ANTLR parser takes ~0.4 ms an override).
"""

from __future__ import annotations

import copy
import io
import os
import pickle
from collections.abc import Callable

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

GROUPS = ("data", "model", "optimizer", "experiment")  # linreg_lab's config groups (conf/<group>/)


def is_plain(o: Override) -> bool:
    """key=value on a config key: applied after composition, so it can be applied to a copy."""
    return (o.key_or_group not in GROUPS and not o.is_hydra_override() and not o.is_sweep_override()
            and not (o.is_add() or o.is_delete() or o.is_force_add() or o.package))


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
    """A deep copy in a third of deepcopy's time. Its structured-config classes are looked up again by
    name, which are not the objects Hydra's plugin scan left in a composed config: such a copy must
    never be pickled again (joblib sends its jobs' configs back to the launching process)."""
    return pickle.loads(pickle.dumps(cfg, pickle.HIGHEST_PROTOCOL))


class _SharingPickler(pickle.Pickler):
    """Pickles every node but `shared`, which it writes as a reference (see copy_without)."""

    def __init__(self, file, shared) -> None:
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self.shared = shared

    def persistent_id(self, obj):
        return "shared" if obj is self.shared else None


class _SharingUnpickler(pickle.Unpickler):
    def __init__(self, file, shared) -> None:
        super().__init__(file)
        self.shared = shared

    def persistent_load(self, pid):
        return self.shared


def copy_without(cfg: DictConfig, key: str) -> DictConfig:
    """A `pickle_copy` of `cfg` less its node `key`, which is neither copied nor changed: a job's config
    less its hydra node (most of it) in ~2 ms, where deepcopy then delete takes ~10 (a 2-CPU machine)."""
    node = cfg._get_node(key)
    buf = io.BytesIO()
    _SharingPickler(buf, node).dump(cfg)
    buf.seek(0)
    out = _SharingUnpickler(buf, node).load()  # the copy holds `node` itself: only its entry is removed
    with read_write(out), open_dict(out):
        del out[key]
    return out


class CachedComposer:
    """compose(overrides) by cache: `base_compose(rest)` runs once per distinct `rest`, the
    overrides that are not plain; each call applies its plain ones to a copy (deepcopy, or
    `pickle_copy` where the configs stay in this process)."""

    def __init__(self, base_compose: Callable[[list[str]], DictConfig], pickled: bool = False) -> None:
        self.base_compose = base_compose
        self.pickled = pickled
        self.cache: dict[tuple[str, ...], DictConfig] = {}

    def __call__(self, overrides: list[str]) -> tuple[DictConfig, list[Override]]:
        parsed = parse(overrides)
        plain = [o for o in parsed if is_plain(o)]
        rest = tuple(line for line, o in zip(overrides, parsed) if not is_plain(o))
        if rest not in self.cache:
            self.cache[rest] = self.base_compose(list(rest))
        cfg = (pickle_copy if self.pickled else copy.deepcopy)(self.cache[rest])
        apply_plain(cfg, plain)
        return cfg, parsed


_SWEEP_COMPOSERS: dict[tuple, CachedComposer] = {}  # per process: survives joblib's per-task unpickling
_pickled_sweep_copies = False  # True in a process whose job configs are never pickled (a pool worker)


def sweep_configs_stay_here() -> None:
    """Called in a process that never pickles a job's config (a forked pool worker): from now on the
    sweep's compositions are copied with `pickle_copy`, and its jobs run without Hydra's copies (pool)."""
    global _pickled_sweep_copies
    _pickled_sweep_copies = True
    for composer in _SWEEP_COMPOSERS.values():
        composer.pickled = True


def sweep_configs_stay() -> bool:
    """Whether sweep_configs_stay_here was called in this process."""
    return _pickled_sweep_copies


_last_command: tuple[DictConfig | None, tuple] = (None, ())  # the latest master config and its command_key


def command_key(master_config: DictConfig) -> tuple:
    """What every composition of one command shares: its config name, hydra overrides and sweep folder,
    worked out again only for another master config (resolving the sweep folder's ${now:} takes ~3 ms;
    joblib's workers unpickle a new master config for every job, the other launchers keep one)."""
    global _last_command
    if _last_command[0] is not master_config:
        _last_command = (master_config, (master_config.hydra.job.config_name,
                                         tuple(master_config.hydra.overrides.hydra),
                                         OmegaConf.select(master_config, "hydra.sweep.dir")))
    return _last_command[1]


class CachingConfigLoader:
    """Wraps Hydra's ConfigLoader: `load_sweep_config` composes once per distinct non-plain
    overrides and fills in what Hydra derives from a job's overrides (hydra.overrides.task,
    hydra.job.override_dirname). Everything else is delegated to the wrapped loader."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __getattr__(self, name: str):
        if name == "loader":  # while unpickling, before __dict__ is set
            raise AttributeError(name)
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        from hydra._internal.config_loader_impl import get_overrides_dirname

        key = (*command_key(master_config), os.getcwd())
        if key not in _SWEEP_COMPOSERS:
            if len(_SWEEP_COMPOSERS) > 16:
                _SWEEP_COMPOSERS.clear()
            _SWEEP_COMPOSERS[key] = CachedComposer(lambda rest: self.loader.load_sweep_config(master_config, rest),
                                                   pickled=_pickled_sweep_copies)
        cfg, parsed = _SWEEP_COMPOSERS[key](list(sweep_overrides))
        task = [o for o in parsed if not o.is_hydra_override()]
        names = cfg.hydra.job.config.override_dirname
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in task]
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=task, kv_sep=names.kv_sep, item_sep=names.item_sep, exclude_keys=list(names.exclude_keys))
        return cfg
