"""Hydra plugin `hydra/sweeper=cached_basic`: Hydra's basic sweeper, composing each job by cache.

Hydra only instantiates plugins that live in the `hydra_plugins` package; the work is in
`linreg_lab.composing`. linreg_lab's config.yaml makes this the default sweeper.
"""

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext


class CachedBasicSweeper(BasicSweeper):
    """BasicSweeper whose config loader (also handed to the launcher) composes once per distinct
    choice of config groups and applies each job's plain values to a copy."""

    def setup(self, *, hydra_context: HydraContext, task_function, config) -> None:
        from linreg_lab.composing import CachingConfigLoader

        cached = HydraContext(config_loader=CachingConfigLoader(hydra_context.config_loader),
                              callbacks=hydra_context.callbacks)
        BasicSweeper.setup(self, hydra_context=cached, task_function=task_function, config=config)

    def validate_batch_is_legal(self, batch) -> None:
        """Hydra composes every job once more here to fail early; linreg_lab's preflight has already
        composed and checked every job of the command before Hydra started, so this is skipped."""
