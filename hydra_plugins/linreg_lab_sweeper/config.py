"""`hydra/sweeper=cached_basic` in Hydra's config store, for any Hydra app where Hydra's plugin scan finds
this package (an installed wheel; linreg_lab's own app reads conf/hydra/sweeper/cached_basic.yaml)."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional  # noqa: UP035  OmegaConf 2.3 reads typing's forms

from hydra.core.config_store import ConfigStore


@dataclass
class CachedBasicSweeperConf:
    """Hydra's basic sweeper's keys, composing each distinct choice of config groups once.
    hydra/sweeper=basic restores Hydra's own."""

    _target_: str = "hydra_plugins.linreg_lab_sweeper.CachedBasicSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045
    params: Optional[Dict[str, str]] = None  # noqa: UP006, UP045
    extra_grids: List[Dict[str, str]] = field(default_factory=list)  # noqa: UP006  more grids: see the sweeper


ConfigStore.instance().store(group="hydra/sweeper", name="cached_basic", node=CachedBasicSweeperConf,
                             provider="linreg_lab")
