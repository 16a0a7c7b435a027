"""The database handle: one engine, every access a short transaction; SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session

from registry.errors import RegistryError, translate_errors
from registry.migrations import ensure_schema as _ensure_schema

__all__ = ["DATABASE_URL_ENV", "Database", "translate_errors"]

DATABASE_URL_ENV = "TOOLSERVER_DATABASE_URL"

# Execution option read by the SQLite "begin" hook: which kind of BEGIN a transaction starts with.
_BEGIN_MODE = "registry_sqlite_begin"


class Database:
    """An engine plus a transaction helper; `Database(url)` also brings the schema up to date (migrations)."""

    def __init__(
        self,
        url: str | URL,
        *,
        busy_timeout_s: float = 10.0,
        ensure_schema: bool = True,
        pool_size: int = 5,
        max_overflow: int = 10,
    ) -> None:
        """`pool_size` and `max_overflow` bound a server database's connections (SQLAlchemy's defaults)."""
        self.url = make_url(url)
        if self.url.get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(self.url, busy_timeout_s)
        else:
            self.url = _with_driver(self.url)
            try:
                # Server databases drop idle connections; pre-ping replaces them instead of failing a request.
                self.engine = create_engine(
                    self.url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow
                )
            except ModuleNotFoundError as exc:
                raise RegistryError(
                    f"the database driver for {self.url.drivername} is not installed ({exc.name}); "
                    "for PostgreSQL: pip install 'toolserver[postgres]'"
                ) from exc
        self._reader = self.engine.execution_options(**{_BEGIN_MODE: "DEFERRED"})
        if ensure_schema:
            try:
                _ensure_schema(self)
            except BaseException:
                self.close()
                raise

    @classmethod
    def from_env(cls, home: str | os.PathLike[str], **options: Any) -> Database:
        """`TOOLSERVER_DATABASE_URL` if set, else the SQLite file `<home>/toolserver.db`."""
        url = os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{Path(home).expanduser() / 'toolserver.db'}"
        return cls(url, **options)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        Rows loaded inside stay usable after the block (detached, attributes loaded). On SQLite a `write`
        transaction takes the write lock up front (BEGIN IMMEDIATE), so read-then-write blocks wait for
        each other under the busy timeout instead of failing on a stale snapshot.
        """
        bind = self.engine if write else self._reader
        with translate_errors(), Session(bind, expire_on_commit=False) as session:
            yield session
            session.commit()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        """The database itself; closed when the block ends."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"


def _with_driver(url: URL) -> URL:
    # A bare postgresql:// means psycopg (v3) to SQLAlchemy 2.1, but our extra installs psycopg2: use
    # whichever is installed.
    if url.drivername != "postgresql":
        return url
    for module in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(module) is not None:
            return url.set(drivername=f"postgresql+{module}")
    return url


def _sqlite_engine(url: URL, busy_timeout_s: float) -> Engine:
    path = url.database
    if not path or path == ":memory:" or url.query.get("mode") == "memory":
        raise ValueError(f"the registry needs a SQLite file, not an in-memory database: {url}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not issue BEGIN itself: the "begin" hook below does, so that transactions
        # (DDL included) start where SQLAlchemy says, with the mode we choose.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        _use_wal(cursor, busy_timeout_s)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(_BEGIN_MODE, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _use_wal(cursor: Any, busy_timeout_s: float) -> None:
    """Put the file in WAL mode (it stays so), waiting out other openers for up to the busy timeout.

    Switching the journal mode needs the file to itself and SQLite answers "database is locked" at once,
    without its busy handler, while another connection holds it: several servers opening a new file
    together would fail. A file already in WAL mode needs no switch.
    """
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
