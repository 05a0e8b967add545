"""`hydra/launcher=pool` in Hydra's config store, for any Hydra app where Hydra's plugin scan finds this
package (an installed wheel; linreg_lab's own app reads conf/hydra/launcher/pool.yaml)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class PoolLauncherConf:
    """linreg_lab's parallel launcher: workers forked from the launching process once torch and MLflow are
    loaded (no per-worker imports, no launcher state pickled per job). n_jobs: workers; -1 = one per CPU."""

    _target_: str = "hydra_plugins.linreg_lab_launcher.PoolLauncher"
    n_jobs: int = 2


ConfigStore.instance().store(group="hydra/launcher", name="pool", node=PoolLauncherConf, provider="linreg_lab")
