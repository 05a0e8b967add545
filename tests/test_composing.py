"""The cached composition gives every job exactly the config Hydra's own composition gives it."""

from __future__ import annotations

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from linreg_lab.composing import CachingConfigLoader
from linreg_lab.run import conf_dir

JOBS = [
    ["optimizer=sgd", "lr=0.1"],
    ["optimizer=adam", "lr=0.01", "seed=3"],
    ["optimizer=adam", "lr=0.5", "seed=4", "optimizer.betas=[0.8,0.9]"],  # same groups, other values
    ["experiment=bias_variance", "batch_size=full", "data.n_train=40"],
    ["model=manual", "+extra_key=1", "lr=0.2"],  # +key is composed, not copied
    ["optimizer=momentum", "lr=0.3", "hydra.job.config.override_dirname.exclude_keys=[seed]", "seed=1"],
]


@pytest.fixture
def loaders():
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        master = hydra_loader.load_configuration("config", ["mlflow.experiment=m"], run_mode=RunMode.MULTIRUN)
        yield master, hydra_loader, CachingConfigLoader(hydra_loader)


def test_cached_composition_equals_hydras(loaders) -> None:
    master, hydra_loader, cached = loaders
    for overrides in JOBS + JOBS:  # the second pass comes from the cache
        expected = hydra_loader.load_sweep_config(master, list(overrides))
        got = cached.load_sweep_config(master, list(overrides))
        assert OmegaConf.to_container(got) == OmegaConf.to_container(expected), overrides
        assert list(got.hydra.overrides.task) == [o for o in overrides if not o.startswith("hydra.")]


def test_a_cached_config_is_a_copy(loaders) -> None:
    master, _, cached = loaders
    first = cached.load_sweep_config(master, ["lr=0.1"])
    first.lr = 123.0
    assert cached.load_sweep_config(master, ["lr=0.2"]).lr == 0.2
    assert cached.load_sweep_config(master, ["seed=2"]).lr == 0.03
