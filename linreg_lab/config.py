"""The harness's side of the config: Hydra's registration of the schemas, the check of a composed config,
and what a job records of it (its YAML, its hash, the sweep's hash).

The schemas themselves are plain dataclasses in `schema`; nothing below the entry point takes a DictConfig.
"""

from __future__ import annotations

import hashlib
import json

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from linreg_lab import limits
from linreg_lab.schema import (
    AdamConfig,
    ClosedFormConfig,
    Config,
    DataConfig,
    GradientModelConfig,
    GridConfig,
    RMSpropConfig,
    RunConfig,
    SGDConfig,
    check,
)

SCHEMAS: dict[str, dict[str, type]] = {
    "data": {"data_schema": DataConfig},
    "model": {
        "gradient_schema": GradientModelConfig,
        "closed_form_schema": ClosedFormConfig,
        "grid_schema": GridConfig,
    },
    "optimizer": {
        "sgd_schema": SGDConfig,
        "rmsprop_schema": RMSpropConfig,
        "adam_schema": AdamConfig,
    },
}


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (called once by the entry point)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, nodes in SCHEMAS.items():
        for name, node in nodes.items():
            cs.store(group=group, name=name, node=node)


def check_config(cfg: DictConfig) -> RunConfig:
    """Validate a composed config and return it as typed dataclasses (raises schema.ConfigError): the schema's
    check, then what this machine and MLflow can take (limits)."""
    config = OmegaConf.to_object(cfg)
    limits.check_keys(config)
    limits.check_seeds(config)
    limits.check_names(config)
    checked = check(config)
    limits.check_size(checked)
    return checked


def flatten(node: dict, prefix: str = "") -> dict[str, object]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay whole."""
    out: dict[str, object] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


HASH_EXCLUDED = ("resume", "mlflow.tracking_uri")  # where a run is stored is not what it computes


def config_hash(params: dict[str, object]) -> str:
    """sha256 (first 16 hex) of the flattened resolved config, seed included, output paths excluded."""
    kept = {k: v for k, v in sorted(params.items()) if k not in HASH_EXCLUDED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_yaml(cfg) -> str:
    """The resolved config's YAML, as OmegaConf writes it (strings that would read back as another type are
    quoted). Here, not in run.py: joblib pickles run.py's task by value when it runs as __main__."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def sweep_hash(overrides: list[str]) -> str:
    """Identity of a sweep command: its overrides, less resume and Hydra's own settings."""
    kept = sorted(o for o in overrides if not o.startswith(("resume=", "hydra.", "hydra/", "+hydra", "~hydra")))
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()[:16]
