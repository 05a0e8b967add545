"""Real services for the tests: an `mlflow server` or `mlflow ui` on a free loopback port, PostgreSQL, and
Debian's Chromium for the browser tests.

They are started by the fixtures themselves (PostgreSQL and Chromium are installed from Debian's packages
when the machine has none), on 127.0.0.1 only, and stopped at the end.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f} s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class MlflowServer:
    """scripts/mlflow_server.sh as a child process; stop() and start() again on the same port and store."""

    def __init__(self, workdir: Path, backend_uri: str, port: int | None = None):
        self.workdir, self.backend_uri, self.port = workdir, backend_uri, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.workdir / f"server-{self.port}.log", "a")
        self.proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "mlflow_server.sh"), "--port", str(self.port), "--backend-store-uri",
             self.backend_uri, "--artifacts-destination", str(self.workdir / "served-artifacts"), "--workers", "1"],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        def up() -> bool:
            if self.proc.poll() is not None:
                log = (self.workdir / f"server-{self.port}.log").read_text()
                raise RuntimeError(f"mlflow server exited: {log[-2000:]}")
            return http_ok(f"{self.url}/health")

        wait_until(up, 120, "mlflow server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def get(self, endpoint: str, **query) -> dict:
        url = f"{self.url}{endpoint}?" + "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in query.items())
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read())

    def post(self, endpoint: str, body: dict) -> dict:
        req = urllib.request.Request(f"{self.url}{endpoint}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


@contextmanager
def mlflow_server(workdir: Path, backend_uri: str):
    server = MlflowServer(workdir, backend_uri)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def debian_program(pattern: str, package: str) -> Path:
    """The newest program matching `pattern`, installing Debian's `package` when there is none."""
    found = sorted(glob.glob(pattern))
    if not found and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", package], check=True, capture_output=True, env=env)
        found = sorted(glob.glob(pattern))
    if not found:
        raise RuntimeError(f"{pattern} is not installed and apt-get could not install Debian's {package}")
    return Path(found[-1])


def postgres_bin() -> Path:
    """Folder of PostgreSQL's server programs, installing Debian's postgresql when there is none."""
    return debian_program("/usr/lib/postgresql/*/bin/initdb", "postgresql").parent


def chromium_bin() -> Path:
    """Debian's Chromium, installed when the machine has none (Playwright's own download is not used)."""
    return debian_program("/usr/bin/chromium", "chromium")


@contextmanager
def mlflow_ui(workdir: Path, command: str, port: int):
    """`command` (an `mlflow ui ...` line as the harness prints it) on 127.0.0.1:`port`, until the block ends."""
    log = open(workdir / f"ui-{port}.log", "a")
    proc = subprocess.Popen([*command.split(), "--host", "127.0.0.1", "--port", str(port)], cwd=workdir,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow ui exited: {(workdir / f'ui-{port}.log').read_text()[-2000:]}")
            return http_ok(f"http://127.0.0.1:{port}/health")

        wait_until(up, 120, "mlflow ui")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def postgres_database(name: str = "mlflow"):
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>, run as the postgres user; yields its URI."""
    bindir, port = postgres_bin(), free_port()
    base = Path(tempfile.mkdtemp(prefix="linreg_lab-pg-", dir="/tmp"))
    base.chmod(0o755)
    data, sockets = base / "data", base / "sockets"
    for folder in (data, sockets):
        folder.mkdir()
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    proc = subprocess.Popen([*as_pg, str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                             "-k", str(sockets)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c"]
        wait_until(lambda: subprocess.run([*psql, "select 1"], capture_output=True).returncode == 0, 60,
                   "postgres")
        subprocess.run([*psql, f"create database {name}"], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/{name}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(base, ignore_errors=True)
