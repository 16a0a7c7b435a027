"""Schema migrations with Alembic: a database is brought to this code's revision when it is opened.

The revisions live in `registry/alembic/versions/` and ship with the package; `registry/alembic/env.py` runs
them on the connection `ensure_schema` hands it (or on a URL, for Alembic's own commands). A database made
before Alembic (the integer `schema_version` table, agent_core's tables made on first use) is adopted by the
baseline revision, which creates only what is missing. How to add a revision: see `registry/README.md`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text
from sqlmodel import SQLModel

from registry.errors import RegistryError, SchemaTooNew, translate_errors

__all__ = [
    "LEGACY_SCHEMA_VERSION",
    "SCHEMA_DIRECTORY",
    "SCHEMA_VERSION",
    "alembic_config",
    "context_options",
    "ensure_schema",
    "is_mapped_object",
    "schema_version",
]

SCHEMA_VERSION = "0006"  # snapshots: revision 0006
"""The Alembic revision this code writes and reads: the head of `registry/alembic/versions/`."""

SCHEMA_DIRECTORY = Path(__file__).with_name("alembic")
"""Alembic's script directory: `env.py`, the revision template and `versions/`."""

LEGACY_SCHEMA_VERSION = 1
"""The one integer version the code before Alembic stamped in `schema_version`; such a database is adopted."""

# Any constant works; it only has to be the same in every process that opens the database.
_PG_LOCK_KEY = 0x7473_7265_6701
# Alembic's `op` and `context` are module-level proxies: one migration at a time in a process.
_RUN_LOCK = threading.Lock()
# What the migrations make that the models do not map: full-text search on each dialect.
_UNMAPPED = {("column", "text_search"), ("index", "ix_memory_items_fts")}


class _HasEngine(Protocol):
    engine: Engine


def ensure_schema(
    db: _HasEngine,
    *,
    target: str = SCHEMA_VERSION,
    config: Config | None = None,
    lock_timeout_s: float = 120.0,
) -> str:
    """Bring `db` to revision `target` and return it.

    Empty database: every revision runs. At `target`: nothing runs. Older (or made before Alembic): the
    revisions after its own run, in one transaction, so a failing one leaves the old schema. Newer or
    unknown: `SchemaTooNew`. Concurrent openers (replicas starting together) wait for each other under
    SQLite's write lock (its busy timeout) or a PostgreSQL advisory lock (at most `lock_timeout_s`, then
    `RegistryUnavailable`); the first migrates, the others find the database at `target`.
    """
    scripts = _scripts(config)
    with translate_errors(), db.engine.begin() as conn:
        _lock(conn, lock_timeout_s)
        current = MigrationContext.configure(conn).get_current_revision()
        if current == target:
            return target
        _check_upgradable(conn, scripts, current, target)
        run_config = config or alembic_config()
        run_config.attributes["connection"] = conn
        with _RUN_LOCK:
            command.upgrade(run_config, target)
    return target


def schema_version(db: _HasEngine) -> str | None:
    """The Alembic revision stamped in the database, or None if it has none (empty, or made before Alembic)."""
    with translate_errors(), db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def alembic_config(url: str | None = None, *, extra_versions: Sequence[str | Path] = ()) -> Config:
    """An Alembic configuration of the registry's scripts, for `alembic.command` (`revision`, `upgrade`...).

    `url` is for commands that open the database themselves; `extra_versions` adds directories of revisions
    (tests use it to stack revisions on the shipped ones).
    """
    config = Config()
    config.set_main_option("script_location", str(SCHEMA_DIRECTORY))
    config.set_main_option("path_separator", "os")
    locations = [str(SCHEMA_DIRECTORY / "versions"), *(str(path) for path in extra_versions)]
    config.set_main_option("version_locations", os.pathsep.join(locations))
    # Revision files are modules whose names must be identifiers (mypy and ruff check them).
    config.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def context_options() -> dict[str, Any]:
    """How Alembic compares and runs the registry's schema; `env.py` and the schema tests share it."""
    return {
        "target_metadata": SQLModel.metadata,
        "include_object": is_mapped_object,
        "compare_type": True,
        "render_as_batch": True,  # SQLite alters a table by copying it: Alembic's batch mode does that
        "transactional_ddl": True,  # on SQLite too: the registry's engine starts every transaction itself
    }


def is_mapped_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """False for what the migrations make beside the models: SQLite's `memory_fts*`, PostgreSQL's tsvector."""
    if type_ == "table" and name is not None and name.startswith("memory_fts"):
        return False
    return (type_, name) not in _UNMAPPED


@cache
def _packaged_scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _scripts(config: Config | None) -> ScriptDirectory:
    return _packaged_scripts() if config is None else ScriptDirectory.from_config(config)


def _lock(conn: Connection, timeout_s: float) -> None:
    # SQLite: the registry's engine began this transaction with BEGIN IMMEDIATE, the write lock.
    if conn.dialect.name == "postgresql":
        # Bounds the wait for the advisory lock and for every table lock the migration takes.
        conn.execute(text(f"SET LOCAL lock_timeout = '{max(1, int(timeout_s * 1000))}ms'"))
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _check_upgradable(conn: Connection, scripts: ScriptDirectory, current: str | None, target: str) -> None:
    if not _known(scripts, target):
        raise RegistryError(f"no migration leads to schema revision {target!r}")
    if current is None:
        legacy = _legacy_version(conn)
        if legacy is not None and legacy > LEGACY_SCHEMA_VERSION:
            raise SchemaTooNew(found=legacy, supported=target)
        return
    if not _known(scripts, current):
        raise SchemaTooNew(found=current, supported=target)
    if target in {script.revision for script in scripts.iterate_revisions(current, "base")}:
        raise SchemaTooNew(found=current, supported=target)


def _known(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


def _legacy_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table("schema_version"):
        return None
    version = conn.execute(text("SELECT version FROM schema_version WHERE id = 1")).scalar()
    return None if version is None else int(version)
