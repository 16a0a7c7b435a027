"""The registry's migrations against a real PostgreSQL (started by `pg.py` unless one is given).

The test classes are the backend-neutral ones of `tests/unit/test_migrations.py`, re-run here with a
`db_url` (and `other_db_url`) that point at fresh PostgreSQL schemas.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import text

from registry import Database, RegistryUnavailable, ensure_schema
from registry.migrations import _PG_LOCK_KEY
from tests.integration import pg

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _load_shared_cases() -> ModuleType:
    # Imported by name so that pytest's assertion rewriting applies to it too.
    return importlib.import_module("tests.unit.test_migrations")


cases: Any = _load_shared_cases()


@pytest.fixture
def db_url(postgres_url: str) -> Iterator[str]:
    with pg.fresh_schema(postgres_url) as url:
        yield url


@pytest.fixture
def other_db_url(postgres_url: str) -> Iterator[str]:
    with pg.fresh_schema(postgres_url) as url:
        yield url


class TestSchemaVersionOnPostgres(cases.TestSchemaVersion):
    pass


class TestSchemaMatchesModelsOnPostgres(cases.TestSchemaMatchesModels):
    pass


class TestLegacyDatabaseOnPostgres(cases.TestLegacyDatabase):
    pass


def test_the_fresh_schema_has_the_stored_tsvector_and_its_gin_index(db: Database) -> None:
    with db.engine.connect() as conn:
        generated = conn.execute(
            text(
                "SELECT generation_expression FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'memory_items' "
                "AND column_name = 'text_search'"
            )
        ).scalar_one()
        index = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_memory_items_fts'")
        ).scalar_one()
    assert "to_tsvector" in generated and "gin" in index.lower()


def test_a_migration_lock_held_too_long_fails_the_opener_in_bounded_time(db: Database, db_url: str) -> None:
    """A replica stuck while migrating holds the lock; another one gives up after the lock timeout."""
    with db.engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK_KEY})
        try:
            with Database(db_url, ensure_schema=False) as other:
                started = time.monotonic()
                with pytest.raises(RegistryUnavailable, match="lock timeout"):
                    ensure_schema(other, lock_timeout_s=0.5)
                assert time.monotonic() - started < 10
        finally:
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
            holder.commit()
