"""Schema versioning: stamp a fresh database, migrate an older one, refuse a newer one.

How to change the schema: see `registry/README.md`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from sqlalchemy import Connection, insert, inspect, select, text, update
from sqlmodel import SQLModel, col

from registry.db import translate_errors
from registry.errors import RegistryError, SchemaTooNew
from registry.models import TABLES, SchemaVersion

if TYPE_CHECKING:
    from registry.db import Database

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "ensure_schema", "schema_version"]

SCHEMA_VERSION = 1
"""The schema version this code writes and reads."""

Migration = Callable[[Connection], None]
"""Brings a database from version `target - 1` to `target`, inside the caller's transaction."""

MIGRATIONS: dict[int, Migration] = {}
"""Migration functions keyed by the version they migrate *to* (2, 3, ...)."""

# Any constant works; it only has to be the same in every process that opens the database.
_PG_LOCK_KEY = 0x7473_7265_6701


def ensure_schema(
    db: Database, *, target: int = SCHEMA_VERSION, migrations: Mapping[int, Migration] | None = None
) -> int:
    """Bring `db` to schema version `target` and return it.

    Empty database: create every table and stamp `target`. Same version: nothing. Older: run
    `migrations[v]` for each version v after the stored one, in order, each followed by a new stamp, all
    in one transaction (so a failing migration leaves the old schema). Newer: raise `SchemaTooNew`.
    Concurrent openers are serialized (SQLite's write lock, a PostgreSQL advisory lock).
    """
    steps = MIGRATIONS if migrations is None else migrations
    with translate_errors(), db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        current = _read_version(conn)
        if current is None:
            SQLModel.metadata.create_all(conn, tables=TABLES)
            conn.execute(insert(SchemaVersion).values(id=1, version=target))
            return target
        if current > target:
            raise SchemaTooNew(found=current, supported=target)
        for version in range(current + 1, target + 1):
            migrate = steps.get(version)
            if migrate is None:
                raise RegistryError(f"no migration registered from schema version {version - 1} to {version}")
            migrate(conn)
            conn.execute(update(SchemaVersion).where(col(SchemaVersion.id) == 1).values(version=version))
        return target


def schema_version(db: Database) -> int | None:
    """The version stamped in the database, or None if it was never stamped."""
    with translate_errors(), db.engine.connect() as conn:
        return _read_version(conn)


def _read_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table("schema_version"):
        return None
    version = conn.execute(select(col(SchemaVersion.version)).where(col(SchemaVersion.id) == 1)).scalar()
    return None if version is None else int(version)
