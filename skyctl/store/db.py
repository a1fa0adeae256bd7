"""Opening the SQLite file: permissions, pragmas and transaction control.

The state file holds service specs (which may carry secrets), so its parent
directory is created 0700 and the file 0600 before SQLite touches it; SQLite
gives the ``-wal`` and ``-shm`` files the same mode as the database.

Each connection runs in WAL mode (readers never block the writer, so the CLI
can read while the daemon writes), with ``synchronous=NORMAL`` (a process
crash loses nothing committed; a power cut may lose the last commits but never
corrupts), ``foreign_keys=ON`` and a ``busy_timeout``.

pysqlite's own transaction handling is switched off and SQLAlchemy emits the
``BEGIN`` itself: ``BEGIN IMMEDIATE`` for a write transaction (it takes the
write lock up front, so two writers queue on ``busy_timeout`` instead of
failing half-way), plain ``BEGIN`` for reads. That also makes SAVEPOINTs work.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, exc
from sqlalchemy.pool import NullPool

from skyctl.errors import StoreError

#: Key in ``Connection.info``: the next BEGIN should take the write lock.
WRITE_INTENT = "skyctl_write_intent"


def prepare_file(path: Path) -> None:
    """Create the parent directory (0700) and an empty database file (0600)."""
    parent = path.parent
    if not parent.exists():
        try:
            parent.mkdir(mode=0o700, parents=True)
            os.chmod(parent, 0o700)  # mkdir's mode is filtered by the umask
        except OSError as e:
            raise StoreError(f"cannot create state directory {parent}: {e.strerror}") from e
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as e:
        raise StoreError(f"cannot create state database {path}: {e.strerror}") from e
    os.close(fd)
    os.chmod(path, 0o600)


def make_engine(path: Path, busy_timeout: float) -> Engine:
    engine = create_engine(
        URL.create("sqlite", database=str(path)),
        poolclass=NullPool,
        connect_args={"timeout": busy_timeout},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get(WRITE_INTENT) else "BEGIN")

    return engine


def describe(error: BaseException) -> str:
    """The driver's one-line message for a database error."""
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        error = error.orig
    return " ".join(str(error).split()) or type(error).__name__


@contextlib.contextmanager
def translated(path: Path, doing: str) -> Iterator[None]:
    """Turn driver errors into a one-line :class:`StoreError` naming the file."""
    try:
        yield
    except (exc.DBAPIError, sqlite3.Error) as e:
        raise StoreError(f"state database {path}: {doing}: {describe(e)}") from e
