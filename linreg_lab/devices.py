"""Which torch device a run uses; the preflight asks it before the job (and MLflow) loads."""

from __future__ import annotations

import torch

from linreg_lab.schema import ConfigError


def pick_device(name: str) -> torch.device:
    """auto -> cuda, then mps, then cpu; an explicit device that is missing is a ConfigError."""
    has = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if has[d]))
    if not has[name]:
        here = ", ".join(["auto"] + [d for d, ok in has.items() if ok])
        raise ConfigError(f"device={name} is not available on this machine; allowed here: {here}")
    return torch.device(name)
