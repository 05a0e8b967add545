"""Is the store there and healthy? Checked before any work by `run`, `report` and `results`, in bounded time,
without MLflow (which, given a folder, a damaged file or a silent server, retries for minutes and then prints
a traceback). Each problem is one line naming the store and what to do.

SQLite: the folder takes files; an existing database is a file, starts as SQLite does and passes SQLite's own
`PRAGMA quick_check` (an interrupted writer's journal is rolled back by SQLite on opening, as it always is); for a
command that writes, SQLite's write lock is taken (and given back) within STORE_WAIT_S.
A server: one request to MLflow's REST API answered within STORE_WAIT_S (any HTTP answer counts: auth and the
like are the server's to report). Other databases: their port takes a connection within STORE_WAIT_S.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import urllib.error
import urllib.parse
import urllib.request

from linreg_lab.contract import TRACKING_URI_ENV
from linreg_lab.store_uri import sqlite_path

STORE_WAIT_S = 10  # the longest a check waits on a store: a lock, a connection, an answer
SQLITE_MAGIC = b"SQLite format 3\x00"
DB_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
ALLOWED = "allowed: sqlite:///PATH, http(s)://HOST:PORT, postgresql://USER@HOST/DB, mysql://..., file:///PATH"


class StoreError(ValueError):
    """A store that cannot be used as it is; its message is one line."""


def check_store(uri: str, must_exist: bool = False) -> None:
    """Raise StoreError (one line) unless the store at `uri` can be used (`must_exist`: for reading, a SQLite
    file must be there already)."""
    parts = urllib.parse.urlparse(uri)
    scheme = parts.scheme.split("+")[0]  # postgresql+psycopg2 -> postgresql
    if scheme == "sqlite":
        check_sqlite(uri, must_exist)
    elif scheme in ("http", "https") and parts.hostname:
        check_server(uri)
    elif scheme in DB_PORTS and parts.hostname:
        check_port(uri, parts.hostname, parts.port or DB_PORTS[scheme])
    elif not (scheme in ("", "file") and uri):
        raise StoreError(f"tracking URI {uri!r} is malformed; {ALLOWED}")


def check_sqlite(uri: str, must_exist: bool) -> None:
    path = sqlite_path(uri)
    if path is None or not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise StoreError(f"tracking URI {uri}: no writable folder for the database; "
                         "allowed: sqlite:///PATH in an existing, writable folder")
    if path.is_dir():
        raise StoreError(f"tracking URI {uri}: {path} is a folder, not a database file; "
                         "move it away or point the URI at a file")
    if not path.exists() or path.stat().st_size == 0:
        if must_exist:
            raise StoreError(f"no store at {uri}: run a sweep first or pass its tracking URI")
        return  # made by the first command (tracking.create_store)
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise StoreError(f"tracking URI {uri}: {path} is not a SQLite database; move it away (a new store is "
                         "made in its place) or point the URI at the store")
    try:
        con = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=STORE_WAIT_S, isolation_level=None)
        try:
            verdict = con.execute("PRAGMA quick_check(1)").fetchone()[0]
            if verdict == "ok" and not must_exist:  # a command that writes: the write lock comes within the wait
                con.execute("BEGIN IMMEDIATE")  # (in WAL mode a held write lock does not stop the reading above)
                con.execute("ROLLBACK")
        finally:
            con.close()
    except sqlite3.OperationalError as err:
        if "locked" in str(err):
            raise StoreError(f"tracking URI {uri}: the database stayed locked by another process for "
                             f"{STORE_WAIT_S} s; wait for it or stop it") from None
        if "readonly" in str(err):
            raise StoreError(f"tracking URI {uri}: {path} cannot be written (read-only); allowed: a store this "
                             "user may write, or pass the URI of one") from None
        verdict = str(err)
    except sqlite3.DatabaseError as err:
        verdict = str(err)
    if verdict != "ok":
        raise StoreError(f"tracking URI {uri}: the database is damaged ({verdict}); restore it from a copy or "
                         "move it away (a new store is made in its place)")


def check_server(uri: str) -> None:
    """One GET to the REST API's experiment search: any HTTP answer within STORE_WAIT_S means a server."""
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=STORE_WAIT_S):
            return
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, TimeoutError | socket.timeout) or "timed out" in str(reason):
            raise StoreError(f"tracking URI {uri} did not answer within {STORE_WAIT_S} s; "
                             f"check the server (is it stuck?) or set {TRACKING_URI_ENV}") from None
        text = getattr(reason, "strerror", None) or str(reason)
        raise StoreError(f"tracking URI {uri} is unreachable ({text}); start the server or set "
                         f"{TRACKING_URI_ENV}") from None


def check_port(uri: str, host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=STORE_WAIT_S).close()
    except OSError as err:
        raise StoreError(f"tracking URI {uri} is unreachable ({err.strerror or err}); "
                         f"start the server or set {TRACKING_URI_ENV}") from None
