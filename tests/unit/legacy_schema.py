"""The DDL the code before Alembic ran, frozen here to build such a database in tests.

The server made the registry's tables and stamped `schema_version` 1 at start; `SqlMemoryStore` made
`memory_items` and its full-text index on first use, `SqlEnvironmentStore` the `env_*` tables. Copied from
what that code emitted (SQLAlchemy's `create_all` and the stores' own statements), on each dialect.
"""

from __future__ import annotations

from sqlalchemy import Connection

REGISTRY = (
    "CREATE TABLE schema_version (id INTEGER NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (id))",
    "CREATE TABLE api_keys (id VARCHAR NOT NULL, namespace VARCHAR NOT NULL, name VARCHAR NOT NULL, "
    "key_hash VARCHAR NOT NULL, prefix VARCHAR NOT NULL, is_admin BOOLEAN NOT NULL, created_at FLOAT NOT NULL, "
    "revoked_at FLOAT, PRIMARY KEY (id), UNIQUE (key_hash))",
    "CREATE INDEX ix_api_keys_namespace ON api_keys (namespace)",
    "CREATE TABLE tools (id VARCHAR NOT NULL, namespace VARCHAR NOT NULL, name VARCHAR NOT NULL, "
    "version INTEGER NOT NULL, kind VARCHAR NOT NULL, description TEXT NOT NULL, parameters JSON NOT NULL, "
    "config JSON NOT NULL, created_at FLOAT NOT NULL, deleted BOOLEAN NOT NULL, PRIMARY KEY (id), "
    "CONSTRAINT uq_tools_namespace_name_version UNIQUE (namespace, name, version))",
    "CREATE TABLE secrets (namespace VARCHAR NOT NULL, name VARCHAR NOT NULL, value TEXT NOT NULL, "
    "created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL, PRIMARY KEY (namespace, name))",
    "CREATE TABLE sessions (id VARCHAR NOT NULL, namespace VARCHAR NOT NULL, node_id VARCHAR NOT NULL, "
    "container_id VARCHAR NOT NULL, image VARCHAR NOT NULL, limits JSON NOT NULL, network VARCHAR NOT NULL, "
    "status VARCHAR NOT NULL, created_at FLOAT NOT NULL, last_used_at FLOAT NOT NULL, ttl_s FLOAT, "
    "expires_at FLOAT, PRIMARY KEY (id))",
    "CREATE INDEX ix_sessions_namespace ON sessions (namespace)",
    "CREATE INDEX ix_sessions_status ON sessions (status)",
    "CREATE INDEX ix_sessions_expires_at ON sessions (expires_at)",
    "CREATE TABLE call_audit (id VARCHAR NOT NULL, namespace VARCHAR NOT NULL, key_id VARCHAR, "
    "tool VARCHAR NOT NULL, session_id VARCHAR, status VARCHAR NOT NULL, error_type VARCHAR, "
    "duration_ms FLOAT NOT NULL, request_bytes INTEGER NOT NULL, response_bytes INTEGER NOT NULL, "
    "created_at FLOAT NOT NULL, PRIMARY KEY (id))",
    "CREATE INDEX ix_call_audit_namespace_created_at ON call_audit (namespace, created_at)",
    "CREATE TABLE agents (namespace VARCHAR NOT NULL, name VARCHAR NOT NULL, config JSON NOT NULL, "
    "created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL, PRIMARY KEY (namespace, name))",
    "CREATE TABLE runs (id VARCHAR NOT NULL, namespace VARCHAR NOT NULL, agent VARCHAR NOT NULL, "
    "task TEXT NOT NULL, session_id VARCHAR, status VARCHAR NOT NULL, state JSON, result JSON, error TEXT, "
    "created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL, PRIMARY KEY (id))",
    "CREATE INDEX ix_runs_namespace ON runs (namespace)",
    'CREATE TABLE steps (run_id VARCHAR NOT NULL, "index" INTEGER NOT NULL, kind VARCHAR NOT NULL, '
    'content JSON, usage JSON, created_at FLOAT NOT NULL, PRIMARY KEY (run_id, "index"), '
    "FOREIGN KEY(run_id) REFERENCES runs (id))",
    "CREATE TABLE human_requests (id VARCHAR NOT NULL, namespace VARCHAR NOT NULL, run_id VARCHAR, "
    "question TEXT NOT NULL, context JSON NOT NULL, status VARCHAR NOT NULL, answer TEXT, "
    "created_at FLOAT NOT NULL, answered_at FLOAT, deadline FLOAT, PRIMARY KEY (id), "
    "FOREIGN KEY(run_id) REFERENCES runs (id))",
    "CREATE INDEX ix_human_requests_status ON human_requests (status)",
    "CREATE INDEX ix_human_requests_namespace ON human_requests (namespace)",
    "CREATE INDEX ix_human_requests_run_id ON human_requests (run_id)",
    "INSERT INTO schema_version (id, version) VALUES (1, 1)",
)

_MEMORY_ITEMS = (
    "CREATE TABLE memory_items (pk {pk_type} NOT NULL, id VARCHAR NOT NULL, namespace VARCHAR NOT NULL, "
    "scope VARCHAR NOT NULL, created_at FLOAT NOT NULL, dims INTEGER, metadata JSON NOT NULL, "
    "text TEXT NOT NULL, embedding JSON, PRIMARY KEY (pk), UNIQUE (id))"
)
_MEMORY_INDEXES = (
    "CREATE INDEX ix_memory_items_scope_created ON memory_items (namespace, scope, created_at)",
    "CREATE INDEX ix_memory_items_scope_vectors ON memory_items (namespace, scope, dims, created_at, id)",
)
MEMORY = {
    "sqlite": (
        _MEMORY_ITEMS.format(pk_type="INTEGER"),
        *_MEMORY_INDEXES,
        "CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5("
        "text, content='memory_items', content_rowid='pk', tokenize='unicode61 remove_diacritics 2')",
        "CREATE TRIGGER IF NOT EXISTS memory_items_fts_insert AFTER INSERT ON memory_items BEGIN "
        "INSERT INTO memory_fts(rowid, text) VALUES (new.pk, new.text); END",
        "CREATE TRIGGER IF NOT EXISTS memory_items_fts_delete AFTER DELETE ON memory_items BEGIN "
        "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.pk, old.text); END",
        "CREATE TRIGGER IF NOT EXISTS memory_items_fts_update AFTER UPDATE OF text ON memory_items BEGIN "
        "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.pk, old.text); "
        "INSERT INTO memory_fts(rowid, text) VALUES (new.pk, new.text); END",
    ),
    "postgresql": (
        _MEMORY_ITEMS.format(pk_type="SERIAL"),
        *_MEMORY_INDEXES,
        "ALTER TABLE memory_items ADD COLUMN IF NOT EXISTS text_search tsvector "
        "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) STORED",
        "CREATE INDEX IF NOT EXISTS ix_memory_items_fts ON memory_items USING GIN (text_search)",
    ),
}

ENVIRONMENT = (
    "CREATE TABLE env_messages (namespace VARCHAR NOT NULL, environment VARCHAR NOT NULL, "
    "position INTEGER NOT NULL, id VARCHAR NOT NULL, sender VARCHAR NOT NULL, seq INTEGER NOT NULL, "
    "topic VARCHAR NOT NULL, recipients JSON NOT NULL, delivered_to JSON NOT NULL, content TEXT NOT NULL, "
    "meta JSON NOT NULL, created_at FLOAT NOT NULL, PRIMARY KEY (namespace, environment, position), "
    "CONSTRAINT uq_env_messages_sender_seq UNIQUE (namespace, environment, sender, seq), "
    "CONSTRAINT uq_env_messages_id UNIQUE (namespace, environment, id))",
    "CREATE TABLE env_agents (namespace VARCHAR NOT NULL, environment VARCHAR NOT NULL, name VARCHAR NOT NULL, "
    "role VARCHAR NOT NULL, status VARCHAR NOT NULL, node_id VARCHAR, config JSON NOT NULL, error TEXT, "
    "incarnation INTEGER NOT NULL, last_heartbeat FLOAT NOT NULL, created_at FLOAT NOT NULL, "
    "updated_at FLOAT NOT NULL, PRIMARY KEY (namespace, environment, name))",
)


def create(conn: Connection, *, agent_core: bool = True) -> None:
    """Make what the old code made: the registry's tables, and agent_core's when it had been used."""
    statements = list(REGISTRY)
    if agent_core:
        statements += [*MEMORY[conn.dialect.name], *ENVIRONMENT]
    for statement in statements:
        conn.exec_driver_sql(statement)
