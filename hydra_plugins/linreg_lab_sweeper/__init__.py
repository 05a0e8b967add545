"""Hydra plugin `hydra/sweeper=cached_basic`: the basic sweeper's sweeps, composing each job by cache.

Built on Hydra's public Sweeper interface, with the basic sweeper's keys (`max_batch_size`, `params`) and
one of its own, `extra_grids`: more grids, each the params with some keys' values replaced.
Hydra only instantiates plugins that live in the `hydra_plugins` package; the composing is in
`linreg_lab.composing`. linreg_lab's config.yaml makes this the default sweeper.
"""

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext
from omegaconf import OmegaConf


class CachedBasicSweeper(Sweeper):
    """Runs the cartesian product of the swept values in batches of `max_batch_size` (all at once when
    None), with a config loader (also the launcher's) that composes once per distinct choice of config
    groups and applies each job's plain values to a copy."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None,
                 extra_grids: list[dict[str, str]] | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.params = params or {}
        self.extra_grids = [dict(grid) for grid in extra_grids or []]
        self.config = self.hydra_context = self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function, config) -> None:
        from linreg_lab.composing import CachingConfigLoader

        self.config = config
        self.hydra_context = HydraContext(config_loader=CachingConfigLoader(hydra_context.config_loader),
                                          callbacks=hydra_context.callbacks)
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=self.hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> list:
        from linreg_lab.composing import grid_jobs

        jobs = grid_jobs(self.params, arguments, OverridesParser.create(config_loader=self.hydra_context.config_loader),
                         self.extra_grids)
        size = self.max_batch_size if self.max_batch_size and self.max_batch_size > 0 else max(len(jobs), 1)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns = []
        for start in range(0, len(jobs), size):
            results = self.launcher.launch(jobs[start:start + size], initial_job_idx=start)
            for result in results:
                result.return_value  # noqa: B018  a failed job raises its error here, as under Hydra's sweeper
            returns.append(results)
        return returns

    def validate_batch_is_legal(self, batch) -> None:
        """Hydra's basic sweeper composes every job once more to fail early; linreg_lab's preflight has
        already composed and checked every job of the command before Hydra started, so this is skipped."""
