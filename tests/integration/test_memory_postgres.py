"""The memory store's behaviours against a real PostgreSQL (started by `pg.py` unless one is given).

The test classes are the backend-neutral ones of `tests/unit/test_memory_store.py`, re-run here with a
`db_url` that points at a fresh PostgreSQL schema per test.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import text

from agent_core.memory import SqlMemoryStore
from registry import Database
from tests.integration import pg

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _load_shared_cases() -> ModuleType:
    # Imported by name so that pytest's assertion rewriting applies to it too.
    return importlib.import_module("tests.unit.test_memory_store")


cases: Any = _load_shared_cases()
store = cases.store


@pytest.fixture
def db_url(postgres_url: str) -> Iterator[str]:
    with pg.fresh_schema(postgres_url) as url:
        yield url


class TestAddAndReadOnPostgres(cases.TestAddAndRead):
    pass


class TestSearchOnPostgres(cases.TestSearch):
    pass


class TestHostileQueriesOnPostgres(cases.TestHostileQueries):
    pass


class TestIndexStaysInSyncOnPostgres(cases.TestIndexStaysInSync):
    pass


class TestEmbedderOnPostgres(cases.TestEmbedder):
    pass


def test_the_database_is_postgresql_with_a_gin_index(db: Database, store: SqlMemoryStore) -> None:
    assert db.dialect == "postgresql"
    with db.engine.connect() as conn:
        definition = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_memory_items_fts'")
        ).scalar_one()
    assert "gin" in definition.lower() and "text_search" in definition


def test_search_can_use_the_gin_index(db: Database, store: SqlMemoryStore) -> None:
    for i in range(300):
        store.add("team-a", "agent:x", f"filler note {i} about nothing in particular")
    store.add("team-a", "agent:x", "the one about zeppelins")
    assert [item.text for item in store.search("team-a", "agent:x", "zeppelins")] == [
        "the one about zeppelins"
    ]
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE memory_items")
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                text(
                    "EXPLAIN SELECT pk FROM memory_items "
                    "WHERE text_search @@ plainto_tsquery('simple'::regconfig, 'zeppelins')"
                )
            )
        )
    assert "ix_memory_items_fts" in plan
