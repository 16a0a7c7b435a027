"""The registry's tables.

Conventions: timestamps are float epoch seconds (like `sandbox.SandboxInfo.created_at`); ids are short random
strings with a type prefix (`ses_...`, `run_...`); every tenant-owned row has a `namespace`; JSON columns use
the portable `JSON` type (not JSONB, which would reorder the keys of a tool's JSON Schema).
"""

from __future__ import annotations

import time
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
    "HumanRequest",
    "RunRecord",
    "SchemaVersion",
    "Secret",
    "SessionRecord",
    "StepRecord",
    "Tool",
]

SHARED_NAMESPACE = ""
"""Namespace of builtin and shared tools: visible to every tenant. Key namespaces are never empty."""


def _json(*, nullable: bool = False) -> Any:
    # none_as_null: a Python None is stored as SQL NULL, not as the JSON text 'null'.
    column = Column(JSON(none_as_null=True), nullable=nullable)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=dict, sa_column=column)


def _text(*, nullable: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_column=Column(Text, nullable=True))
    return Field(default="", sa_column=Column(Text, nullable=False))


class SchemaVersion(SQLModel, table=True):
    """One row: the schema version this database was last migrated to."""

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
        CallAudit,
        AgentRecord,
        RunRecord,
        StepRecord,
        HumanRequest,
    )
]
"""Every table the registry owns, in dependency order (what `Database.create_all` creates)."""
