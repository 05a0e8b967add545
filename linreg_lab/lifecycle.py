"""Process life: SIGTERM/SIGINT become exceptions, and every run records which process owns it,
so a run whose process died without a word (SIGKILL, power loss) can be recognised later."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every `except KeyboardInterrupt` handles both."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated(f"terminated by signal {signum}")


def install_signal_handlers() -> None:
    """SIGTERM raises Terminated in the main thread (SIGINT already raises KeyboardInterrupt)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def exit_code(err: KeyboardInterrupt) -> int:
    """128 + the signal number, as a shell reports it."""
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)


def _start_ticks(pid: int) -> str | None:
    """Start time of process `pid` in clock ticks since boot (Linux), None if it is gone or a zombie
    (dead, waiting for its parent to collect its exit status)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # counted after the command name: field 3 is fields[0]
    return None if fields[0] in ("Z", "X") else fields[19]  # state; start time (field 22)


def owner_id() -> str:
    """host:pid:start of this process; the start time tells a reused pid apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or '?'}"


def owner_alive(owner: str) -> bool:
    """False only when `owner` ran on this host and that very process is gone."""
    try:
        host, pid, start = owner.rsplit(":", 2)
    except ValueError:
        return True
    if host != socket.gethostname() or not Path("/proc/self/stat").exists():
        return True  # another machine's run: nothing here can tell
    return _start_ticks(int(pid)) == start if start != "?" else _start_ticks(int(pid)) is not None
