"""The console: tqdm bars on a terminal only, and the sweep's summary as an aligned table."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

from linreg_lab.describe import table
from tests.conftest import run_cli

SLOW = ["model=manual", "batch_size=full", "steps=400000", "replicates=1"]  # ~5 s of training, well past 2 s


def on_terminal(args: list[str], cwd: Path, uri: str) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal, as in a shell; everything it wrote."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 40 rows of 160 columns
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("LINREG_LAB_PARENT_RUN_ID", None)
    proc = subprocess.Popen([sys.executable, "-m", "linreg_lab.run", *args], cwd=cwd, env=env, stdout=side,
                            stderr=side, stdin=subprocess.DEVNULL)
    os.close(side)
    out = b""
    while True:
        ready, _, _ = select.select([main], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=600)
    os.close(main)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    return out.decode(errors="replace")


def test_bars_are_drawn_on_a_terminal(tmp_path: Path) -> None:
    out = on_terminal(["-m", *SLOW, "seed=0,1"], tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert re.search(r"\d+%\|.*\| *\d+/400000 \[", out), out[-2000:]  # the job's bar: steps of 400000
    assert re.search(r"sweep: +\d+%\|.*\| *[012]/2 \[", out), out[-2000:]  # the sweep's bar: jobs of 2
    assert "[2/2] manual-sgd" in out


def test_bars_stay_quiet_in_a_pipe(tmp_path: Path) -> None:
    out = run_cli(["-m", *SLOW, "seed=0,1"], tmp_path, {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "\r" not in out.stderr + out.stdout and "%|" not in out.stderr + out.stdout
    lines = out.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("run "))
    header, rule, *rows = lines[head:head + 4]
    assert set(rule.replace(" ", "")) == {"-"} and len(rows) >= 2  # a header, its rule, a row per job
    starts = [m.start() for m in re.finditer(r"\S+", rule)]
    for row in rows[:2]:  # every column of a row lines up under its header
        assert row.startswith("manual-sgd") and all(row[s - 1] == " " for s in starts[1:]), (rule, row)


def test_table_rounds_to_four_digits_and_marks_missing_values() -> None:
    text = table([["a", 1 / 3, float("nan")], ["bb", 12345.678, 2.0]], ["run", "loss", "err"])
    assert "0.3333" in text and "1.235e+04" in text and "—" in text and "nan" not in text
    assert table([["a", 0.5]], ["x", "y"], markdown=True).splitlines()[1].startswith("|--")
