"""Hydra plugin `hydra/launcher=pool`: jobs on workers forked from the launching process.

Hydra only instantiates plugins that live in the `hydra_plugins` package; the work is in
`linreg_lab.pool`.
"""

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext


class PoolLauncher(Launcher):
    """n_jobs workers forked once torch and MLflow are loaded; each takes the next job whenever it is free."""

    def __init__(self, n_jobs: int = 2) -> None:
        self.n_jobs = n_jobs
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context: HydraContext, task_function, config) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from linreg_lab import pool

        return pool.launch(self, job_overrides, initial_job_idx)
