"""Hydra's own test suites for launcher plugins (hydra.test_utils.launcher_common_tests), the ones Hydra's
joblib, submitit and ray launchers run against themselves: against `hydra/launcher=pool`, and
LauncherTestSuite again with `cached_basic` as the sweeper (under Hydra's basic launcher and under pool).

The in-process suite finds `hydra/launcher=pool` and `hydra/sweeper=cached_basic` through Hydra's plugin
scan (hydra_plugins/*/config.py): this repository's root is on sys.path under `python -m pytest`, and on
PYTHONPATH for the integration suite's apps, which run in their own processes in a temp folder.
(An editable install alone hides the package from the scan: setuptools' editable finder is not
walked by pkgutil; an installed wheel is.)"""

from __future__ import annotations

import copy

import pytest
from hydra.core.singleton import Singleton
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from tests.conftest import PRISTINE_HYDRA, ROOT


@pytest.fixture(autouse=True)
def plugins_on_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apps started in subprocesses import hydra_plugins.linreg_lab_* from this checkout."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


@pytest.fixture(autouse=True)
def pristine_hydra():
    """Each suite test starts from Hydra's state before any of our tests ran: our tests compose with
    version_base="1.3", which Hydra keeps process-wide (the suites' apps expect Hydra's own default)."""
    saved = Singleton.get_state()
    Singleton.set_state(copy.deepcopy(PRISTINE_HYDRA))
    yield
    Singleton.set_state(saved)


@pytest.mark.parametrize("launcher_name, overrides", [
    pytest.param("pool", [], id="pool"),
    pytest.param("basic", ["hydra/sweeper=cached_basic"], id="cached_basic-sweeper"),
    pytest.param("pool", ["hydra/sweeper=cached_basic"], id="cached_basic-sweeper+pool"),
])
class TestLauncherSuite(LauncherTestSuite):
    pass


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [
    pytest.param({}, ["-m", "hydra/launcher=pool"], id="pool"),
])
class TestIntegrationSuite(IntegrationTestSuite):
    pass
