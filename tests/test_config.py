"""Every option of every config group composes and runs; bad configs fail early and clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf.errors import ConfigKeyError, ValidationError

from linreg_lab.run import conf_dir
from linreg_lab.schema import ConfigError
from tests.conftest import all_runs, compose_config, compose_raw, run_in_process

GROUPS = ["data", "model", "optimizer", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


TINY = {"data": ["steps=20"], "model": ["steps=20"], "optimizer": ["steps=20"],
        "experiment": ["steps=null", "epochs=1"]}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_runs(group: str, option: str, store: str) -> None:
    tiny = TINY[group]
    if group == "experiment":
        tiny = ["steps=20", "epochs=null"] if option == "manual_grad" else tiny
        tiny = ["samples=2048"] if option == "batch_size_scaling" else tiny  # a stream: a budget in rows
    finals = run_in_process(f"{group}={option}", "device=cpu", *tiny)
    runs = all_runs(store)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert "w_error/l2" in finals and "time/total_s" in runs[0].data.metrics
    assert runs[0].data.params[f"{group}" if group == "experiment" else f"{group}.name"]


def test_groups_have_the_options_the_issue_names() -> None:
    assert {"sgd", "momentum", "rmsprop", "adam"} <= set(options("optimizer"))
    assert {"linear", "scratch", "manual", "closed_form", "grid", "no_intercept"} <= set(options("model"))
    assert {"manual_grad", "d2l_scratch", "d2l_concise", "grid_search", "full_batch_1d",
            "optimizer_compare"} <= set(options("experiment"))


def test_defaults_count_steps() -> None:
    cfg = compose_config()
    assert (cfg.steps, cfg.epochs, cfg.mlflow.experiment) == (1000, None, "linreg_lab")
    assert compose_config("experiment=d2l_concise").steps == 300  # 3 epochs of 1000 / 10


@pytest.mark.parametrize("override,error", [
    ("optimizer.lrr=0.1", ConfigKeyError),  # misspelt key
    ("lr=fast", ValidationError),  # wrong type
    ("data.n_train=many", ValidationError),
    ("data.x_dist=cauchy", ValidationError),  # unknown enum value
    ("optimizer.alpha=0.5", ConfigKeyError),  # SGD has no alpha: hyperparameters belong to their optimizer
])
def test_schema_rejects_at_compose_time(override: str, error: type) -> None:
    with pytest.raises((ConfigCompositionException, HydraException, error)) as info:
        compose_raw(override)
    assert override.split("=")[0].split(".")[-1] in str(info.value) or "fast" in str(info.value)


def test_unknown_group_option_lists_what_exists() -> None:
    with pytest.raises(HydraException) as info:
        compose_raw("optimizer=adagrad")
    assert "adagrad" in str(info.value) and "adam" in str(info.value)


@pytest.mark.parametrize("overrides,message", [
    (["lr=0"], "lr must be a finite number > 0"),
    (["lr=-1"], "lr must be a finite number > 0"),
    (["noise=-0.1"], "noise must be a finite number >= 0"),
    (["batch_size=0"], "batch_size must be in 1..1000"),
    (["batch_size=5000"], "batch_size must be in 1..1000"),
    (["batch_size=half"], "batch_size must be a positive int or 'full'"),
    (["epochs=3"], "set exactly one of steps, epochs and samples"),
    (["steps=null"], "set exactly one of steps, epochs and samples"),
    (["steps=0"], "steps must be > 0"),
    (["data.n_train=0"], "data.n_train and data.n_test must be > 0"),
    (["device=tpu"], "device='tpu' is not known; allowed: auto, cpu, cuda, mps"),
    (["data.true_w=[]"], "data.true_w is empty; allowed: one weight per feature, or data.n_features to draw them"),
])
def test_check_config_errors_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        compose_config(*overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_batch_size_full_is_the_whole_training_set() -> None:
    assert compose_config("batch_size=full").batch_size is None


def test_conf_dir_is_the_checkout_tree() -> None:
    assert conf_dir() == Path(__file__).resolve().parent.parent / "conf"


def test_config_yaml_reads_back_as_the_config() -> None:
    """Each job's config.yaml reads back as the resolved config: every group option and preset, and
    strings that must be quoted to read back as strings, non-ASCII ones, and one long enough to wrap."""
    from omegaconf import OmegaConf

    from linreg_lab.config import config_yaml

    cases = [[f"{g}={o}"] for g in GROUPS for o in options(g)]
    cases += [["mlflow.experiment='1e3'"], ["mlflow.experiment='true'"], ["mlflow.experiment='007'"],
              ["mlflow.experiment='régression-ü'"], ["mlflow.experiment='" + "a long name " * 12 + "'"],
              ["mlflow.experiment='null'", "noise=0.5"]]
    for overrides in cases:
        cfg = compose_raw(*overrides)
        container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        assert OmegaConf.to_container(OmegaConf.create(config_yaml(cfg))) == container, overrides
