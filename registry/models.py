"""The registry's tables: the server's own, agent_core's memory and environments', and the schema stamp.

Every table here is created and changed only by the migrations in `registry/alembic/versions/`.
Conventions: timestamps are float epoch seconds (like `sandbox.SandboxInfo.created_at`); ids are short random
strings with a type prefix (`ses_...`, `run_...`); every tenant-owned row has a `namespace`; JSON columns use
the portable `JSON` type (not JSONB, which would reorder the keys of a tool's JSON Schema).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, cast

from sqlalchemy import JSON, Column, ForeignKey, Index, String, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from registry._ids import new_id

__all__ = [
    "SHARED_NAMESPACE",
    "TABLES",
    "AgentRecord",
    "ApiKey",
    "CallAudit",
    "ENV_TABLES",
    "EnvAgentRecord",
    "EnvMessageRecord",
    "HumanRequest",
    "MEMORY_TABLE",
    "MemoryRecord",
    "RunRecord",
    "SchemaVersion",
    "Secret",
    "SessionRecord",
    "StepRecord",
    "Tool",
]

SHARED_NAMESPACE = ""
"""Namespace of builtin and shared tools: visible to every tenant. Key namespaces are never empty."""


def _json(*, nullable: bool = False, default: Callable[[], Any] = dict) -> Any:
    # none_as_null: a Python None is stored as SQL NULL, not as the JSON text 'null'.
    column = Column(JSON(none_as_null=True), nullable=nullable)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=default, sa_column=column)


def _text(*, nullable: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_column=Column(Text, nullable=True))
    return Field(default="", sa_column=Column(Text, nullable=False))


class SchemaVersion(SQLModel, table=True):
    """One row: the integer schema version of the code before Alembic; now a guard that makes that code refuse.

    Alembic's `alembic_version` table holds the real revision. The baseline migration stamps this row with
    version 2, which code from before Alembic (that knows version 1 only) reports as "upgrade toolserver".
    """

    __tablename__ = "schema_version"

    id: int = Field(default=1, primary_key=True)
    version: int


class ApiKey(SQLModel, table=True):
    """An API key; only the sha256 of its secret is stored."""

    __tablename__ = "api_keys"

    id: str = Field(default_factory=partial(new_id, "key"), primary_key=True)
    namespace: str = Field(index=True)
    name: str = ""
    key_hash: str = Field(unique=True)
    prefix: str
    is_admin: bool = False
    created_at: float = Field(default_factory=time.time)
    revoked_at: float | None = None


class Tool(SQLModel, table=True):
    """One version of a tool; the latest non-deleted version of a (namespace, name) is the live one."""

    __tablename__ = "tools"
    __table_args__ = (
        UniqueConstraint("namespace", "name", "version", name="uq_tools_namespace_name_version"),
    )

    id: str = Field(default_factory=partial(new_id, "tool"), primary_key=True)
    namespace: str
    name: str
    version: int
    kind: str
    description: str = _text()
    parameters: dict[str, Any] = _json()
    config: dict[str, Any] = _json()
    created_at: float = Field(default_factory=time.time)
    deleted: bool = False


class Secret(SQLModel, table=True):
    """A named value a tenant's tools and agents may reference; `value` is sealed (registry.secretbox)."""

    __tablename__ = "secrets"

    namespace: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    value: str = _text()
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


class SessionRecord(SQLModel, table=True):
    """A sandbox session and where it lives."""

    __tablename__ = "sessions"

    id: str = Field(default_factory=partial(new_id, "ses"), primary_key=True)
    namespace: str = Field(index=True)
    node_id: str
    container_id: str = ""
    image: str = ""
    limits: dict[str, Any] = _json()
    network: str = "none"
    status: str = Field(default="creating", index=True)
    created_at: float = Field(default_factory=time.time)
    last_used_at: float = Field(default_factory=time.time)
    ttl_s: float | None = None
    expires_at: float | None = Field(default=None, index=True)
    runtime: str | None = None  # the container runtime (runc, runsc); None on rows from before revision 0002
    egress: list[str] | None = _json(nullable=True)  # network "egress": the allow-list (revision 0003)
    volumes: list[dict[str, Any]] | None = _json(nullable=True)  # [{name, path, read_only}] (revision 0004)
    pause: dict[str, Any] | None = _json(nullable=True)  # {paused_at, kept, resumed} (revision 0005)


class SnapshotRecord(SQLModel, table=True):
    """A namespace's snapshot of a session's files, kept on the node that made it (revision 0006)."""

    __tablename__ = "snapshots"

    id: str = Field(primary_key=True)  # snap_ and hex: the node's name for it
    namespace: str = Field(index=True)
    session_id: str  # the session it was taken of
    node_id: str
    size_bytes: int = 0
    memory: bool = False
    image: str = ""
    limits: dict[str, Any] = _json()
    runtime: str | None = None
    created_at: float = Field(default_factory=time.time)


class VolumeRecord(SQLModel, table=True):
    """A namespace's volume: a size-capped filesystem on one node that outlives sessions."""

    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_volumes_namespace_name"),)

    id: str = Field(primary_key=True)  # vol_ and hex: the node's name for it
    namespace: str = Field(index=True)
    name: str
    size_mb: int
    node_id: str
    created_at: float = Field(default_factory=time.time)


class CallAudit(SQLModel, table=True):
    """One tool call: who, what, how it ended, how long and how big."""

    __tablename__ = "call_audit"
    __table_args__ = (Index("ix_call_audit_namespace_created_at", "namespace", "created_at"),)

    id: str = Field(default_factory=partial(new_id, "aud"), primary_key=True)
    namespace: str
    key_id: str | None = None
    tool: str
    session_id: str | None = None
    status: str
    error_type: str | None = None
    duration_ms: float = 0.0
    request_bytes: int = 0
    response_bytes: int = 0
    created_at: float = Field(default_factory=time.time)


class AgentRecord(SQLModel, table=True):
    """An agent definition (system prompt, tools, LLM settings...) kept as JSON."""

    __tablename__ = "agents"

    namespace: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    config: dict[str, Any] = _json()
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


class RunRecord(SQLModel, table=True):
    """One run of an agent on a task; `state` is the checkpoint a waiting run resumes from."""

    __tablename__ = "runs"

    id: str = Field(default_factory=partial(new_id, "run"), primary_key=True)
    namespace: str = Field(index=True)
    agent: str
    task: str = _text()
    session_id: str | None = None
    status: str = "running"
    state: dict[str, Any] | None = _json(nullable=True)
    result: Any = _json(nullable=True)
    error: str | None = _text(nullable=True)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


class StepRecord(SQLModel, table=True):
    """One step of a run (an LLM message, a tool call, a tool result...), numbered from 0."""

    __tablename__ = "steps"

    run_id: str = Field(sa_column=Column(String, ForeignKey("runs.id"), primary_key=True))
    index: int = Field(primary_key=True)
    kind: str
    content: Any = _json(nullable=True)
    usage: dict[str, Any] | None = _json(nullable=True)
    created_at: float = Field(default_factory=time.time)


class HumanRequest(SQLModel, table=True):
    """A question an agent asked a human; answered at most once."""

    __tablename__ = "human_requests"

    id: str = Field(default_factory=partial(new_id, "hr"), primary_key=True)
    namespace: str = Field(index=True)
    run_id: str | None = Field(default=None, foreign_key="runs.id", index=True)
    question: str = _text()
    context: dict[str, Any] = _json()
    status: str = Field(default="pending", index=True)
    answer: str | None = _text(nullable=True)
    created_at: float = Field(default_factory=time.time)
    answered_at: float | None = None
    deadline: float | None = None


class MemoryRecord(SQLModel, table=True):
    """One memory of agent_core's memory store; `pk` is the full-text index's rowid, `id` the public identifier.

    Full-text search needs more than this model says, made by the migrations: on SQLite an FTS5 table
    `memory_fts` kept in sync by triggers, on PostgreSQL a stored `text_search` tsvector with a GIN index.
    """

    __tablename__ = "memory_items"
    __table_args__ = (
        Index("ix_memory_items_scope_created", "namespace", "scope", "created_at"),
        # Covers the vector scan (newest embedded items of a scope), which then never reads a row.
        Index("ix_memory_items_scope_vectors", "namespace", "scope", "dims", "created_at", "id"),
    )

    # Small columns first: SQLite reads a row's columns in order, and the large ones spill to overflow pages.
    pk: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    namespace: str
    scope: str
    created_at: float = Field(default_factory=time.time)
    dims: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    embedding: list[float] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )


class EnvMessageRecord(SQLModel, table=True):
    """One accepted message; `position` orders an environment's history, `seq` a sender's messages."""

    __tablename__ = "env_messages"
    __table_args__ = (
        UniqueConstraint("namespace", "environment", "sender", "seq", name="uq_env_messages_sender_seq"),
        UniqueConstraint("namespace", "environment", "id", name="uq_env_messages_id"),
    )

    namespace: str = Field(primary_key=True)
    environment: str = Field(primary_key=True)
    position: int = Field(primary_key=True)
    id: str
    sender: str
    seq: int
    topic: str
    recipients: list[str] = _json(default=list)
    delivered_to: list[str] = _json(default=list)
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    meta: dict[str, Any] = _json()
    created_at: float = Field(default_factory=time.time)


class EnvAgentRecord(SQLModel, table=True):
    """One agent of an environment; `config` is what `build_agent` rebuilds it from on another node."""

    __tablename__ = "env_agents"

    namespace: str = Field(primary_key=True)
    environment: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    role: str
    status: str = "idle"
    node_id: str | None = None
    config: dict[str, Any] = _json()
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    incarnation: int = 0
    last_heartbeat: float = 0.0
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


TABLES: list[Table] = [
    _table(model)
    for model in (
        SchemaVersion,
        ApiKey,
        Tool,
        Secret,
        SessionRecord,
        VolumeRecord,
        CallAudit,
        AgentRecord,
        RunRecord,
        StepRecord,
        HumanRequest,
        MemoryRecord,
        EnvMessageRecord,
        EnvAgentRecord,
    )
]
"""Every table of the registry's schema, in dependency order."""

MEMORY_TABLE = _table(MemoryRecord)
"""`memory_items`, for Core queries that skip the ORM."""

ENV_TABLES: list[Table] = [_table(EnvMessageRecord), _table(EnvAgentRecord)]
"""`env_messages` and `env_agents`: a multi-agent environment's history and agents."""
