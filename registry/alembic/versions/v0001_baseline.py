"""Baseline: every table of the registry, agent_core's memory and environment tables included.

Each table (with its indexes) is created only if it is missing, which adopts a database made before Alembic:
that code stamped `schema_version` 1 and made these same tables (the server's at start, `memory_items` and
`env_*` on first use), so whatever it made is kept, rows included, and the rest is created. The DDL below is
frozen: it is what that code made, and later changes to `registry/models.py` need a new revision.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# `schema_version` keeps one row for the code from before Alembic, which knows version 1 only: 2 makes that
# code refuse this database ("upgrade toolserver") instead of writing a schema it no longer knows.
_LEGACY_GUARD_VERSION = 2

_SQLITE_FULL_TEXT = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5("
    "text, content='memory_items', content_rowid='pk', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS memory_items_fts_insert AFTER INSERT ON memory_items BEGIN "
    "INSERT INTO memory_fts(rowid, text) VALUES (new.pk, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS memory_items_fts_delete AFTER DELETE ON memory_items BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.pk, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS memory_items_fts_update AFTER UPDATE OF text ON memory_items BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.pk, old.text); "
    "INSERT INTO memory_fts(rowid, text) VALUES (new.pk, new.text); END",
)
# A stored tsvector (not only an expression index): ranking and any non-index plan read it instead of
# parsing every candidate's text again. PostgreSQL fills it on insert; the models do not map it.
_POSTGRES_FULL_TEXT = (
    "ALTER TABLE memory_items ADD COLUMN IF NOT EXISTS text_search tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) STORED",
    "CREATE INDEX IF NOT EXISTS ix_memory_items_fts ON memory_items USING GIN (text_search)",
)


def _str(name: str, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=nullable)


def _text(name: str, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _int(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _float(name: str, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, sa.Float(), nullable=nullable)


def _bool(name: str) -> sa.Column[bool]:
    return sa.Column(name, sa.Boolean(), nullable=False)


def _json(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.JSON(), nullable=nullable)


def _table(name: str, *elements: SchemaItem, indexes: dict[str, Sequence[str]] | None = None) -> None:
    """Create table `name` and its indexes, unless a database from before Alembic already has it."""
    if sa.inspect(op.get_bind()).has_table(name):
        return
    op.create_table(name, *elements)
    for index, columns in (indexes or {}).items():
        op.create_index(index, name, list(columns))


def _registry_tables() -> None:
    # The one row's id is always 1: no sequence behind it (the models say so with `default=1`).
    schema_id = sa.Column("id", sa.Integer(), nullable=False, autoincrement=False)
    _table("schema_version", schema_id, _int("version"), sa.PrimaryKeyConstraint("id"))
    _table(
        "api_keys",
        *(_str(column) for column in ("id", "namespace", "name", "key_hash", "prefix")),
        _bool("is_admin"),
        _float("created_at"),
        _float("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
        indexes={"ix_api_keys_namespace": ["namespace"]},
    )
    _table(
        "tools",
        *(_str(column) for column in ("id", "namespace", "name")),
        _int("version"),
        _str("kind"),
        _text("description"),
        _json("parameters"),
        _json("config"),
        _float("created_at"),
        _bool("deleted"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", "name", "version", name="uq_tools_namespace_name_version"),
    )
    _table(
        "secrets",
        _str("namespace"),
        _str("name"),
        _text("value"),
        _float("created_at"),
        _float("updated_at"),
        sa.PrimaryKeyConstraint("namespace", "name"),
    )
    _table(
        "sessions",
        *(_str(column) for column in ("id", "namespace", "node_id", "container_id", "image")),
        _json("limits"),
        _str("network"),
        _str("status"),
        _float("created_at"),
        _float("last_used_at"),
        _float("ttl_s", nullable=True),
        _float("expires_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        indexes={
            "ix_sessions_namespace": ["namespace"],
            "ix_sessions_status": ["status"],
            "ix_sessions_expires_at": ["expires_at"],
        },
    )
    _table(
        "call_audit",
        _str("id"),
        _str("namespace"),
        _str("key_id", nullable=True),
        _str("tool"),
        _str("session_id", nullable=True),
        _str("status"),
        _str("error_type", nullable=True),
        _float("duration_ms"),
        _int("request_bytes"),
        _int("response_bytes"),
        _float("created_at"),
        sa.PrimaryKeyConstraint("id"),
        indexes={"ix_call_audit_namespace_created_at": ["namespace", "created_at"]},
    )
    _table(
        "agents",
        _str("namespace"),
        _str("name"),
        _json("config"),
        _float("created_at"),
        _float("updated_at"),
        sa.PrimaryKeyConstraint("namespace", "name"),
    )


def _run_tables() -> None:
    _table(
        "runs",
        *(_str(column) for column in ("id", "namespace", "agent")),
        _text("task"),
        _str("session_id", nullable=True),
        _str("status"),
        _json("state", nullable=True),
        _json("result", nullable=True),
        _text("error", nullable=True),
        _float("created_at"),
        _float("updated_at"),
        sa.PrimaryKeyConstraint("id"),
        indexes={"ix_runs_namespace": ["namespace"]},
    )
    _table(
        "steps",
        _str("run_id"),
        _int("index"),
        _str("kind"),
        _json("content", nullable=True),
        _json("usage", nullable=True),
        _float("created_at"),
        sa.PrimaryKeyConstraint("run_id", "index"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
    )
    _table(
        "human_requests",
        _str("id"),
        _str("namespace"),
        _str("run_id", nullable=True),
        _text("question"),
        _json("context"),
        _str("status"),
        _text("answer", nullable=True),
        _float("created_at"),
        _float("answered_at", nullable=True),
        _float("deadline", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        indexes={
            "ix_human_requests_status": ["status"],
            "ix_human_requests_namespace": ["namespace"],
            "ix_human_requests_run_id": ["run_id"],
        },
    )


def _agent_core_tables() -> None:
    _table(
        "memory_items",
        _int("pk"),
        *(_str(column) for column in ("id", "namespace", "scope")),
        _float("created_at"),
        _int("dims", nullable=True),
        _json("metadata"),
        _text("text"),
        _json("embedding", nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("id"),
        indexes={
            "ix_memory_items_scope_created": ["namespace", "scope", "created_at"],
            "ix_memory_items_scope_vectors": ["namespace", "scope", "dims", "created_at", "id"],
        },
    )
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_FULL_TEXT if dialect == "sqlite" else _POSTGRES_FULL_TEXT:
        op.execute(statement)
    _table(
        "env_messages",
        _str("namespace"),
        _str("environment"),
        _int("position"),
        _str("id"),
        _str("sender"),
        _int("seq"),
        _str("topic"),
        _json("recipients"),
        _json("delivered_to"),
        _text("content"),
        _json("meta"),
        _float("created_at"),
        sa.PrimaryKeyConstraint("namespace", "environment", "position"),
        sa.UniqueConstraint("namespace", "environment", "sender", "seq", name="uq_env_messages_sender_seq"),
        sa.UniqueConstraint("namespace", "environment", "id", name="uq_env_messages_id"),
    )
    _table(
        "env_agents",
        *(_str(column) for column in ("namespace", "environment", "name", "role", "status")),
        _str("node_id", nullable=True),
        _json("config"),
        _text("error", nullable=True),
        _int("incarnation"),
        _float("last_heartbeat"),
        _float("created_at"),
        _float("updated_at"),
        sa.PrimaryKeyConstraint("namespace", "environment", "name"),
    )


def upgrade() -> None:
    """Create every missing table, then stamp the guard that keeps code from before Alembic out."""
    _registry_tables()
    _run_tables()
    _agent_core_tables()
    op.execute("DELETE FROM schema_version")
    op.execute(f"INSERT INTO schema_version (id, version) VALUES (1, {_LEGACY_GUARD_VERSION})")


def downgrade() -> None:
    """Drop every table (and the full-text index of memories): the database is empty again."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS memory_fts")  # its triggers go with memory_items
    for name in (
        "env_agents",
        "env_messages",
        "memory_items",
        "human_requests",
        "steps",
        "runs",
        "agents",
        "call_audit",
        "sessions",
        "secrets",
        "tools",
        "api_keys",
        "schema_version",
    ):
        op.drop_table(name)
