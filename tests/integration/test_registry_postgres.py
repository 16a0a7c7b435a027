"""The registry's store behaviours against a real PostgreSQL (started by `pg.py` unless one is given).

The test classes are the backend-neutral ones of `tests/unit/test_registry.py`, loaded from that file and
re-run here with a `db_url` that points at a fresh PostgreSQL schema per test.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from registry import Database, KeyStore, RegistryUnavailable, SessionStore
from tests.integration import pg

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _load_shared_cases() -> ModuleType:
    # Imported by name so that pytest's assertion rewriting applies to it too; when pytest collects the
    # unit file in the same session, this is the very module it collected.
    return importlib.import_module("tests.unit.test_registry")


cases: Any = _load_shared_cases()  # a module of test classes, typed loosely on purpose


@pytest.fixture
def db_url(postgres_url: str) -> Iterator[str]:
    with pg.fresh_schema(postgres_url) as url:
        yield url


class TestKeyStoreOnPostgres(cases.TestKeyStore):
    pass


class TestToolStoreOnPostgres(cases.TestToolStore):
    pass


class TestSecretStoreOnPostgres(cases.TestSecretStore):
    pass


class TestSessionStoreOnPostgres(cases.TestSessionStore):
    pass


class TestAuditStoreOnPostgres(cases.TestAuditStore):
    pass


class TestAgentStoreOnPostgres(cases.TestAgentStore):
    pass


class TestRunStoreOnPostgres(cases.TestRunStore):
    pass


class TestHumanRequestStoreOnPostgres(cases.TestHumanRequestStore):
    pass


class TestTransactionsOnPostgres(cases.TestTransactions):
    pass


def test_the_database_is_postgresql(db: Database) -> None:
    assert db.dialect == "postgresql"


def test_two_handles_on_one_database_share_state(open_db: Callable[..., Database]) -> None:
    first, second = open_db(), open_db()
    record, secret = KeyStore(first).create("team-a")
    verified = KeyStore(second).verify(secret)
    assert verified is not None and verified.id == record.id
    session = SessionStore(second).create("team-a", node_id="node-2")
    assert SessionStore(first).get("team-a", session.id).node_id == "node-2"


def test_an_unreachable_server_is_reported_unavailable() -> None:
    with pytest.raises(RegistryUnavailable) as error:
        Database("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    assert error.value.status == 503 and "unavailable" in error.value.message


def test_a_hubs_database_handle_holds_at_most_three_connections(db_url: str) -> None:
    """An environment hub opens its own handle; its pool is bounded so hubs cannot exhaust the server."""
    import threading

    handle = Database(db_url, pool_size=1, max_overflow=2)
    try:
        held = [handle.engine.connect() for _ in range(3)]
        got_fourth = threading.Event()

        def fourth() -> None:
            with handle.engine.connect():
                got_fourth.set()

        thread = threading.Thread(target=fourth, daemon=True)
        thread.start()
        assert not got_fourth.wait(1.0)  # the fourth waits for one of the three
        held.pop().close()
        assert got_fourth.wait(30)
        for conn in held:
            conn.close()
        thread.join(timeout=30)
    finally:
        handle.close()
