"""What the harness shows on the console: progress bars (tqdm), lines printed past them, aligned tables.

Bars are drawn only when stderr is a terminal: in CI logs and pipes they stay silent.
The sweep's bar lives in the launching process; a job finishing there (the basic launcher) or
reported back to it (the pool launcher) moves it on.
"""

from __future__ import annotations

import os
import sys

from tqdm import tqdm

tqdm.monitor_interval = 0  # no monitor thread: pool workers are forked from a process with bars
_sweep: dict[str, object] = {}  # the sweep's bar and the process that owns it


def progress(total: int, unit: str, desc: str | None = None) -> tqdm:
    """A bar on stderr, drawn only on a terminal (tqdm's disable=None), gone when closed."""
    return tqdm(total=total, unit=unit, desc=desc, disable=None, leave=False, file=sys.stderr,
                dynamic_ncols=True, position=1 if _sweep else 0)


def say(line: str) -> None:
    """Print a line to stdout above any bar (a plain print would tear it)."""
    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def start_sweep(total: int | None) -> None:
    """The sweep's bar over its jobs, owned by this process."""
    end_sweep()
    _sweep.update(bar=tqdm(total=total, unit="job", desc="sweep", disable=None, leave=False, file=sys.stderr,
                           dynamic_ncols=True, position=0), pid=os.getpid())


def job_done() -> None:
    """One more job of the sweep finished; a no-op outside the process that owns the bar (a worker)."""
    if _sweep and _sweep["pid"] == os.getpid():
        _sweep["bar"].update()


def end_sweep() -> None:
    """Close the sweep's bar (in its own process)."""
    if _sweep and _sweep.pop("pid") == os.getpid():
        _sweep.pop("bar").close()
    _sweep.clear()
