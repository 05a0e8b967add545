"""Where the store is: the one rule that turns the config, the environment and the folder into a URI.

`MLFLOW_TRACKING_URI` if set, else the config's URI, else `sqlite:///mlflow.db` in the folder the
command runs from; a relative SQLite path is pinned to that folder. No MLflow here: the preflight
checks the URI before MLflow loads.
"""

from __future__ import annotations

import os
from pathlib import Path

from linreg_lab.contract import TRACKING_URI_ENV

SQLITE = "sqlite:///"
DEFAULT_DB = "mlflow.db"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:///PATH URI (absolute for sqlite:////PATH); None for other stores."""
    return Path(uri[len(SQLITE):]) if uri.startswith(SQLITE) else None


def resolve_tracking_uri(configured: str | None, cwd: str, env_first: bool = True) -> str:
    """MLFLOW_TRACKING_URI if set, else `configured`, else sqlite:///mlflow.db in `cwd` (with env_first=False,
    an explicit `configured` URI wins over the environment: the report's --tracking-uri)."""
    env = os.environ.get(TRACKING_URI_ENV)
    uri = (env or configured) if env_first else (configured or env)
    if not uri:
        return f"{SQLITE}{Path(cwd, DEFAULT_DB).resolve()}"
    path = sqlite_path(uri)
    if path is not None and not path.is_absolute():
        return f"{SQLITE}{Path(cwd, path).resolve()}"
    return uri
