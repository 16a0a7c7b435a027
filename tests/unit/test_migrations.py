"""The registry's schema under Alembic, on a real SQLite file.

The `Test*` classes are backend-neutral: `tests/integration/test_migrations_postgres.py` re-runs them on
PostgreSQL with its own `db_url` fixture. A database made before Alembic is built from the frozen DDL in
`tests/unit/legacy_schema.py`.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, text

from agent_core.environment.store import SqlEnvironmentStore
from agent_core.memory.sql import SqlMemoryStore
from registry import (
    SCHEMA_VERSION,
    Database,
    HumanRequestStore,
    KeyStore,
    RegistryError,
    RunStore,
    SchemaTooNew,
    SessionStore,
    ToolStore,
    alembic_config,
    ensure_schema,
    hash_secret,
    schema_version,
)
from registry.migrations import SCHEMA_DIRECTORY, context_options
from registry.models import TABLES
from tests.unit import legacy_schema

OpenDb = Callable[..., Database]

SECRET = "tsk_" + "s" * 40
# One row per table, as the code before Alembic wrote them (through the same models).
OLD_ROWS: dict[str, dict[str, Any]] = {
    "api_keys": dict(id="key_old", namespace="team-a", name="ci", key_hash=hash_secret(SECRET),
                     prefix=SECRET[:10], is_admin=False, created_at=1.0),
    "tools": dict(id="tool_old", namespace="team-a", name="add", version=1, kind="python", description="adds",
                  parameters={"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "integer"}}},
                  config={"source": "def add(a, b): return a + b"}, created_at=1.0, deleted=False),
    "secrets": dict(namespace="team-a", name="token", value="sealed", created_at=1.0, updated_at=1.0),
    "sessions": dict(id="ses_old", namespace="team-a", node_id="node-1", container_id="c1", image="img",
                     limits={"memory_mb": 256}, network="none", status="running", created_at=1.0,
                     last_used_at=1.0, ttl_s=None, expires_at=None),
    "call_audit": dict(id="aud_old", namespace="team-a", tool="add", status="ok", duration_ms=2.5,
                       request_bytes=10, response_bytes=20, created_at=1.0),
    "agents": dict(namespace="team-a", name="helper", config={"system_prompt": "be brief"}, created_at=1.0,
                   updated_at=1.0),
    "runs": dict(id="run_old", namespace="team-a", agent="helper", task="add 1 and 2", status="waiting_human",
                 state={"messages": [{"role": "user", "content": "add 1 and 2"}]}, created_at=1.0, updated_at=1.0),
    "steps": dict(run_id="run_old", index=0, kind="llm", content={"text": "asking"}, created_at=1.0),
    "human_requests": dict(id="hr_old", namespace="team-a", run_id="run_old", question="which numbers?",
                           context={"step": 0}, status="pending", created_at=1.0),
    "memory_items": dict(id="mem_old", namespace="team-a", scope="agent:x", created_at=1.0, meta={"k": "v"},
                         text="the zeppelin flew over the harbour"),
    "env_messages": dict(namespace="team-a", environment="room", position=1, id="msg_old", sender="alice",
                         seq=1, topic="general", recipients=["bob"], delivered_to=[], content="hello bob",
                         meta={}, created_at=1.0),
    "env_agents": dict(namespace="team-a", environment="room", name="bob", role="worker", status="idle",
                       config={"llm": {"provider": "scripted"}}, incarnation=3, last_heartbeat=0.0,
                       created_at=1.0, updated_at=1.0),
}  # fmt: skip
_TABLES = {table.name: table for table in TABLES}


def _build_legacy(url: str, *, agent_core: bool = True) -> None:
    with Database(url, ensure_schema=False) as old, old.engine.begin() as conn:
        legacy_schema.create(conn, agent_core=agent_core)
        for name, row in OLD_ROWS.items():
            if agent_core or not name.startswith(("memory_", "env_")):
                table = _TABLES[name]
                conn.execute(insert(table).values({table.c[key].key: value for key, value in _columns(row)}))


def _columns(row: dict[str, Any]) -> list[tuple[str, Any]]:
    return [("metadata" if key == "meta" and "scope" in row else key, value) for key, value in row.items()]


def _all_rows(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of the old tables, with the columns the database has (not the models': they may be newer)."""
    with db.engine.connect() as conn:
        return {
            name: [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {name}"))] for name in OLD_ROWS
        }


def _as_before(after: dict[str, list[dict[str, Any]]], before: dict[str, list[dict[str, Any]]]) -> Any:
    """`after` limited to the columns `before` had; a column added since must be empty (NULL) on old rows."""
    kept: dict[str, list[dict[str, Any]]] = {}
    for name, rows in after.items():
        old = set(before[name][0]) if before[name] else set()
        assert all(row[c] is None for row in rows for c in set(row) - old), name
        kept[name] = [{c: row[c] for c in row if c in old} for row in rows]
    return kept


def _snapshot(db: Database) -> dict[str, Any]:
    """Every table's columns, keys and indexes, as the database reports them."""
    with db.engine.connect() as conn:
        found = inspect(conn)
        tables = {}
        for name in sorted(found.get_table_names()):
            if name.startswith("memory_fts") or name == "alembic_version":
                continue
            tables[name] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c.get("default") is not None)
                    for c in found.get_columns(name)
                ],
                "pk": found.get_pk_constraint(name)["constrained_columns"],
                "unique": sorted(tuple(u["column_names"]) for u in found.get_unique_constraints(name)),
                "indexes": sorted((i["name"], tuple(i["column_names"])) for i in found.get_indexes(name)),
                "fks": [
                    (f["constrained_columns"], f["referred_table"]) for f in found.get_foreign_keys(name)
                ],
            }
        if conn.dialect.name == "sqlite":
            extra = conn.execute(text("SELECT type, name FROM sqlite_master WHERE name LIKE 'memory_%fts%'"))
            tables["full_text"] = sorted(tuple(row) for row in extra)
        return tables


def _model_differences(db: Database) -> list[Any]:
    with db.engine.connect() as conn:
        return list(
            compare_metadata(MigrationContext.configure(conn, opts=context_options()), TABLES[0].metadata)
        )


def _write_revision(directory: Path, rev: str, down: str, *body: str) -> None:
    lines = [f'"""Probe revision {rev}."""', "from alembic import op", f"revision = {rev!r}",
             f"down_revision = {down!r}", "branch_labels = None", "depends_on = None", "",
             "def upgrade() -> None:", *(f"    {line}" for line in body or ("pass",)), "",
             "def downgrade() -> None:", "    pass", ""]  # fmt: skip
    (directory / f"v{rev}.py").write_text("\n".join(lines))


@pytest.fixture
def other_db_url(tmp_path: Path) -> str:
    """A second, empty database beside `db_url`; PostgreSQL modules override it."""
    return f"sqlite:///{tmp_path / 'other.db'}"


class TestSchemaVersion:
    def test_fresh_database_is_at_the_head_revision(self, db: Database) -> None:
        assert schema_version(db) == SCHEMA_VERSION
        assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_VERSION
        assert (SCHEMA_DIRECTORY / "env.py").is_file() and (SCHEMA_DIRECTORY / "script.py.mako").is_file()

    def test_reopening_at_the_same_version_keeps_data(self, open_db: OpenDb) -> None:
        first = open_db()
        KeyStore(first).create("team-a")
        first.close()
        again = open_db()
        assert schema_version(again) == SCHEMA_VERSION and len(KeyStore(again).list("team-a")) == 1

    def test_revisions_run_in_order_then_newer_schema_is_refused(
        self, open_db: OpenDb, tmp_path: Path
    ) -> None:
        db = open_db()
        _write_revision(
            tmp_path,
            "probe_a",
            SCHEMA_VERSION,
            'op.execute("CREATE TABLE migration_probe (id INTEGER PRIMARY KEY, note VARCHAR)")',
        )
        _write_revision(tmp_path, "probe_b", "probe_a",
                        "op.execute(\"INSERT INTO migration_probe (id, note) VALUES (1, 'from b')\")")  # fmt: skip
        config = alembic_config(extra_versions=[tmp_path])
        assert ensure_schema(db, target="probe_b", config=config) == "probe_b"
        assert schema_version(db) == "probe_b"
        assert ensure_schema(db, target="probe_b", config=config) == "probe_b"  # nothing left to do
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT note FROM migration_probe")).scalars().all() == ["from b"]
        with pytest.raises(SchemaTooNew, match="upgrade toolserver"):
            ensure_schema(db, target="probe_a", config=config)
        with pytest.raises(SchemaTooNew, match="upgrade toolserver") as refused:
            open_db()
        assert (refused.value.found, refused.value.supported) == ("probe_b", SCHEMA_VERSION)
        assert refused.value.status == 500
        copy = pickle.loads(pickle.dumps(refused.value))
        assert (type(copy), copy.found, copy.message) == (SchemaTooNew, "probe_b", refused.value.message)

    def test_a_failing_or_missing_revision_leaves_the_old_schema(
        self, open_db: OpenDb, tmp_path: Path
    ) -> None:
        db = open_db()
        _write_revision(tmp_path, "broken", SCHEMA_VERSION,
                        'op.execute("CREATE TABLE half_done (id INTEGER PRIMARY KEY)")',
                        'raise RuntimeError("migration bug")')  # fmt: skip
        with pytest.raises(RuntimeError, match="migration bug"):
            ensure_schema(db, target="broken", config=alembic_config(extra_versions=[tmp_path]))
        with pytest.raises(RegistryError, match="no migration"):
            ensure_schema(db, target="nowhere")
        assert schema_version(db) == SCHEMA_VERSION
        with db.engine.connect() as conn:
            assert not inspect(conn).has_table("half_done")

    def test_openers_started_together_migrate_once(self, db_url: str, tmp_path: Path) -> None:
        _write_revision(tmp_path, "counted", SCHEMA_VERSION,
                        'op.execute("CREATE TABLE migration_runs (id INTEGER PRIMARY KEY)")',
                        'op.execute("INSERT INTO migration_runs (id) VALUES (1)")')  # fmt: skip
        config = alembic_config(extra_versions=[tmp_path])
        handles = [Database(db_url, ensure_schema=False) for _ in range(6)]
        barrier = threading.Barrier(len(handles))

        def open_(db: Database) -> str:
            barrier.wait()
            return ensure_schema(db, target="counted", config=config)

        try:
            with ThreadPoolExecutor(len(handles)) as pool:
                assert list(pool.map(open_, handles)) == ["counted"] * len(handles)
            with handles[0].engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM migration_runs")).scalar() == 1
        finally:
            for handle in handles:
                handle.close()

    def test_the_baseline_downgrades_to_an_empty_database_and_back(self, db: Database) -> None:
        fresh = _snapshot(db)
        with db.engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        with db.engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        assert schema_version(db) is None
        assert ensure_schema(db) == SCHEMA_VERSION and _snapshot(db) == fresh


class TestSchemaMatchesModels:
    def test_the_migrations_make_what_the_models_describe(self, db: Database) -> None:
        assert _model_differences(db) == []

    def test_every_table_is_under_migration(self, db: Database) -> None:
        with db.engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
        assert {table.name for table in TABLES} <= names
        assert {"memory_items", "env_messages", "env_agents", "alembic_version"} <= names


class TestLegacyDatabase:
    def test_a_database_from_before_alembic_is_adopted_with_its_rows(
        self, db_url: str, other_db_url: str, open_db: OpenDb
    ) -> None:
        _build_legacy(db_url)
        with Database(db_url, ensure_schema=False) as old:
            before = _all_rows(old)
        db = open_db()
        assert schema_version(db) == SCHEMA_VERSION
        assert _as_before(_all_rows(db), before) == before
        with Database(other_db_url) as fresh:
            assert _snapshot(db) == _snapshot(fresh)  # the same schema as a database made today
        assert _model_differences(db) == []
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version FROM schema_version")).scalars().all() == [2]

    def test_the_stores_read_and_write_the_old_rows(self, db_url: str, open_db: OpenDb) -> None:
        _build_legacy(db_url)
        db = open_db()
        verified = KeyStore(db).verify(SECRET)
        assert verified is not None and verified.id == "key_old"
        tool = ToolStore(db).get("team-a", "add")
        assert list(tool.parameters["properties"]) == ["b", "a"]  # JSON key order survived
        assert SessionStore(db).get("team-a", "ses_old").limits == {"memory_mb": 256}
        assert [step.content for step in RunStore(db).steps("team-a", "run_old")] == [{"text": "asking"}]
        assert HumanRequestStore(db).answer("team-a", "hr_old", "1 and 2").status == "answered"
        memory = SqlMemoryStore(db)
        assert [item.id for item in memory.search("team-a", "agent:x", "zeppelin")] == ["mem_old"]
        added = memory.add("team-a", "agent:x", "a new note about the harbour")
        assert {item.id for item in memory.search("team-a", "agent:x", "harbour")} == {"mem_old", added.id}
        environment = SqlEnvironmentStore(db)
        assert [m.content for m in environment.history("team-a", "room")] == ["hello bob"]
        assert [(a.name, a.incarnation) for a in environment.agents("team-a", "room")] == [("bob", 3)]

    def test_agent_core_tables_missing_from_an_old_database_are_created(
        self, db_url: str, open_db: OpenDb
    ) -> None:
        _build_legacy(db_url, agent_core=False)
        db = open_db()
        assert KeyStore(db).verify(SECRET) is not None
        assert _model_differences(db) == []
        memory = SqlMemoryStore(db)
        item = memory.add("team-a", "agent:x", "first memory after the upgrade")
        assert [found.id for found in memory.search("team-a", "agent:x", "upgrade")] == [item.id]

    def test_an_old_database_opened_by_replicas_together_is_adopted_once(self, db_url: str) -> None:
        _build_legacy(db_url)
        handles = [Database(db_url, ensure_schema=False) for _ in range(4)]
        barrier = threading.Barrier(len(handles))

        def open_(db: Database) -> str:
            barrier.wait()
            return ensure_schema(db)

        try:
            with ThreadPoolExecutor(len(handles)) as pool:
                assert list(pool.map(open_, handles)) == [SCHEMA_VERSION] * len(handles)
            assert _all_rows(handles[0])["memory_items"][0]["id"] == "mem_old"
        finally:
            for handle in handles:
                handle.close()

    def test_a_newer_integer_version_is_refused(self, db_url: str) -> None:
        with Database(db_url, ensure_schema=False) as old, old.engine.begin() as conn:
            legacy_schema.create(conn, agent_core=False)
            conn.execute(text("UPDATE schema_version SET version = 7"))
        with pytest.raises(SchemaTooNew, match="upgrade toolserver"):
            Database(db_url)


def test_the_fresh_schema_on_sqlite_has_its_full_text_index(db: Database) -> None:
    assert {
        ("table", "memory_fts"),
        ("trigger", "memory_items_fts_delete"),
        ("trigger", "memory_items_fts_insert"),
        ("trigger", "memory_items_fts_update"),
    } <= set(_snapshot(db)["full_text"])
