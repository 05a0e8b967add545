"""Process life: SIGTERM/SIGINT become exceptions, never inside a store write, and every run records which
process owns it, so a run whose process died without a word (SIGKILL, power loss) can be recognised later."""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_WAIT_S = 10  # how long a stopped process has to close its run (a stopped sweep's workers; again after SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every `except KeyboardInterrupt` handles both."""


_writing = 0  # how deep this thread is in `uninterrupted` blocks (only the main thread receives signals)
_pending: int | None = None  # a stop signal that arrived inside one, taken once the outermost block is left


def interruption(signum: int) -> KeyboardInterrupt:
    """The exception a stop signal becomes: KeyboardInterrupt for SIGINT, Terminated for SIGTERM."""
    if signum == signal.SIGTERM:
        return Terminated(f"terminated by signal {signum}")
    return KeyboardInterrupt(f"interrupted by signal {signum}")


def _on_signal(signum, frame) -> None:
    global _pending
    if _writing:
        _pending = _pending or signum  # the first signal decides how the command ends
        return
    raise interruption(signum)


def install_signal_handlers() -> dict:
    """SIGINT raises KeyboardInterrupt and SIGTERM Terminated in the main thread, except inside `uninterrupted`,
    where the signal waits for the block's end. Returns the handlers it replaced (for restore_signal_handlers); a
    no-op outside the main thread (a thread cannot set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS}


def restore_signal_handlers(previous: dict) -> None:
    """Put back the handlers install_signal_handlers replaced (a launcher's worker between jobs is its own)."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """A store write (or read) that a stop signal must not cut in half: a signal that arrives inside takes effect
    when the outermost such block is left, after the write committed or rolled back whole. MLflow's and
    SQLAlchemy's code then never sees a KeyboardInterrupt, which its sessions do not roll back on (the
    interrupted connection kept SQLite's write lock and every later write failed with 'database is locked')."""
    global _writing, _pending
    _writing += 1
    try:
        yield
    finally:
        _writing -= 1
        if not _writing and _pending is not None:
            signum, _pending = _pending, None
            raise interruption(signum)


def quit_quietly_on_signals() -> None:
    """Until install_signal_handlers: a stop signal ends the process at once with 128 + its number and one line,
    no traceback (the command has only been importing; nothing is written yet)."""
    def stop(signum, frame) -> None:
        sys.stderr.write(f"linreg_lab: stopped ({'interrupted' if signum == signal.SIGINT else 'terminated'}) "
                         "before any work\n")
        os._exit(128 + signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)


_closers: list[Callable[[], None]] = []  # what skip_final_collections closes first (close_before_exit)


def close_before_exit(close: Callable[[], None]) -> None:
    """Have skip_final_collections call `close` first (once, however often this is asked): what a collection would
    have closed (a store's connections) is closed by it."""
    if close not in _closers:
        _closers.append(close)


def skip_final_collections() -> None:
    """Called as a command ends: close what was registered (close_before_exit), then freeze every object left
    (gc.freeze), so that the interpreter's last collections do not walk the millions of objects torch, MLflow and
    the configs made, only to free memory the OS takes back (measured: 1.0 s of a 4-job sweep's 7.9 s, 2.6 s
    after 1000 jobs). atexit handlers still run; what reference counts free is still freed."""
    for close in _closers:
        close()
    gc.freeze()


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


def other_live_process(owner: str) -> int | None:
    """The pid of `owner` when it is another process of this host, still running; else None."""
    try:
        host, pid, _ = owner.rsplit(":", 2)
    except ValueError:
        return None
    if host != socket.gethostname() or int(pid) == os.getpid() or not owner_alive(owner):
        return None
    return int(pid)


def stop_process(pid: int) -> None:
    """SIGTERM to `pid`, if it is still there."""
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
