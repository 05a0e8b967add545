"""The cached composition gives every job exactly the config Hydra's own composition gives it."""

from __future__ import annotations

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from linreg_lab import composing
from linreg_lab.composing import CachingConfigLoader
from linreg_lab.run import conf_dir

JOBS = [
    ["optimizer=sgd", "lr=0.1"],
    ["optimizer=adam", "lr=0.01", "seed=3"],
    ["optimizer=adam", "lr=0.5", "seed=4", "optimizer.betas=[0.8,0.9]"],  # same groups, other values
    ["experiment=bias_variance", "batch_size=full", "data.n_train=40"],
    ["model=manual", "+extra_key=1", "lr=0.2"],  # +key is composed, not copied
    ["optimizer=momentum", "lr=0.3", "hydra.job.config.override_dirname.exclude_keys=[seed]", "seed=1"],
    ["optimizer=rmsprop", "optimizer.alpha=0.9", "data=linspace_1d", "data.n_train=30"],  # group, then its key
]


@pytest.fixture
def loaders():
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        master = hydra_loader.load_configuration("config", ["mlflow.experiment=m"], run_mode=RunMode.MULTIRUN)
        yield master, hydra_loader, CachingConfigLoader(hydra_loader)


def without_override_dirname(cfg) -> dict:
    container = OmegaConf.to_container(cfg)
    del container["hydra"]["job"]["override_dirname"]
    return container


def test_cached_composition_equals_hydras(loaders, monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal in everything but override_dirname, which a cached job leaves MISSING (nothing refers to it)."""
    master, hydra_loader, cached = loaders
    monkeypatch.setattr(composing, "_SWEEP_COMPOSERS", {})
    for overrides in JOBS + JOBS:  # the second pass comes from the cache
        expected = hydra_loader.load_sweep_config(master, list(overrides))
        got = cached.load_sweep_config(master, list(overrides))
        assert without_override_dirname(got) == without_override_dirname(expected), overrides
        assert list(got.hydra.overrides.task) == list(expected.hydra.overrides.task)
        assert OmegaConf.get_type(got, "optimizer") is OmegaConf.get_type(expected, "optimizer")
        assert OmegaConf.is_missing(got.hydra.job, "override_dirname")


def test_a_command_that_refers_to_override_dirname_is_composed_by_hydra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the config interpolates override_dirname the cache cannot prove it equal: Hydra composes each job."""
    monkeypatch.setattr(composing, "_SWEEP_COMPOSERS", {})
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        master = hydra_loader.load_configuration(
            "config", ["hydra.sweep.subdir=${hydra.job.override_dirname}"], run_mode=RunMode.MULTIRUN)
        cached = CachingConfigLoader(hydra_loader)
        assert composing.uses_override_dirname(master)
        for overrides in JOBS:
            expected = hydra_loader.load_sweep_config(master, list(overrides))
            got = cached.load_sweep_config(master, list(overrides))
            assert OmegaConf.to_container(got) == OmegaConf.to_container(expected), overrides
            assert got.hydra.job.override_dirname == expected.hydra.job.override_dirname != ""
    assert not composing._SWEEP_COMPOSERS
    assert "optimizer" in cached.groups and "hydra/launcher" in cached.groups  # from Hydra's own loader
    assert "lr" not in cached.groups and "hydra/launcher/nothing" not in cached.groups and "" not in cached.groups


def test_a_value_hydra_would_refuse_is_refused_as_hydra_refuses_it(loaders) -> None:
    """A plain override the cached copy cannot take is composed Hydra's way: Hydra's own error."""
    from hydra.errors import ConfigCompositionException

    master, hydra_loader, cached = loaders
    for bad in (["lr=0.1", "no_such_key=1"], ["optimizer=adam", "optimizer.no_such=2"]):
        with pytest.raises(ConfigCompositionException) as theirs:
            hydra_loader.load_sweep_config(master, bad)
        with pytest.raises(ConfigCompositionException) as ours:
            cached.load_sweep_config(master, bad)
        assert str(ours.value) == str(theirs.value)


def test_sweep_jobs_are_the_basic_sweepers_product() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(["lr=0.1,0.2", "seed=range(2)", "optimizer=sgd", "lr=0.3,0.4"])
    assert composing.sweep_jobs(parsed) == [[f"lr={lr}", f"seed={seed}", "optimizer=sgd"]
                                            for lr in ("0.3", "0.4") for seed in (0, 1)]
    grid = composing.grid_jobs({"seed": "range(2)", "lr": "0.9"}, ["lr=0.3,0.4", "optimizer=sgd"],
                               OverridesParser.create())
    assert grid == [[f"seed={seed}", f"lr={lr}", "optimizer=sgd"] for seed in (0, 1) for lr in ("0.3", "0.4")]
    with pytest.raises(ValueError, match="not interval sweeps"):
        composing.sweep_jobs(OverridesParser.create().parse_overrides(["lr=interval(0,1)"]))


def test_a_cached_config_is_a_copy(loaders) -> None:
    master, _, cached = loaders
    first = cached.load_sweep_config(master, ["lr=0.1"])
    first.lr = 123.0
    assert cached.load_sweep_config(master, ["lr=0.2"]).lr == 0.2
    assert cached.load_sweep_config(master, ["seed=2"]).lr == 0.03


def test_parsed_overrides_are_not_shared_between_jobs() -> None:
    first = composing.parse(["replicate_over=[data,init]", "lr=0.1"])
    first[0].value().append("order")
    again = composing.parse(["replicate_over=[data,init]", "lr=0.1"])
    assert again[0].value() == ["data", "init"] and again[1].value() == 0.1
    assert again[0] is not first[0] and again[0].input_line == "replicate_over=[data,init]"


def test_each_command_gets_its_own_compositions() -> None:
    """The cache is keyed per command (composing.command_key, worked out once per master config): a second
    command in the same process, with other hydra overrides (here its sweep folder), never gets the first
    one's compositions."""
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        cached = CachingConfigLoader(hydra_loader)
        for folder in ("sweep_a", "sweep_b", "sweep_a"):
            master = hydra_loader.load_configuration("config", [f"hydra.sweep.dir={folder}"],
                                                     run_mode=RunMode.MULTIRUN)
            for lr in ("0.1", "0.2"):
                got = cached.load_sweep_config(master, ["optimizer=adam", f"lr={lr}"])
                assert got.hydra.sweep.dir == folder and got.lr == float(lr)
            assert composing.command_key(master) is composing.command_key(master)
