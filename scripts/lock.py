"""Write constraints.txt: the installed versions of linreg_lab[dev,optuna] and everything it needs.

Run after changing dependencies in pyproject.toml:  python scripts/lock.py
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str, extras: set[str]) -> dict[str, str]:
    """name -> version of root and every installed requirement it pulls in (markers evaluated here)."""
    seen: dict[str, str] = {}
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # a requirement whose marker did not apply here
        key = canonical(dist.metadata["Name"])
        first = key not in seen
        seen[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            env_extras = wanted or {""}
            if req.marker and not any(req.marker.evaluate({**default_environment(), "extra": e}) for e in env_extras):
                continue
            if first or wanted:
                todo.append((req.name, set(req.extras)))
    return seen


def main() -> None:
    pins = closure("linreg_lab", {"dev", "optuna"})
    pins.pop("linreg-lab", None)
    # a local label (torch 2.13.0+cpu) is dropped: ==2.13.0 matches it and the registry build alike
    lines = [f"{name}=={version.split('+')[0]}" for name, version in sorted(pins.items())]
    header = ("# Resolved versions of linreg_lab[dev,optuna]; written by scripts/lock.py. Install with -c "
              "constraints.txt.\n")
    Path(__file__).resolve().parent.parent.joinpath("constraints.txt").write_text(header + "\n".join(lines) + "\n")
    print(f"{len(lines)} pins written")


if __name__ == "__main__":
    main()
