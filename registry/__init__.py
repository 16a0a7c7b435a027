"""The registry: SQLModel tables and small stores over them; a SQLite file by default, PostgreSQL by URL.

    db = Database.from_env("~/.toolserver")          # or Database("postgresql+psycopg2://...")
    record, secret = KeyStore(db).create("team-a", "ci")
    ToolStore(db).register("team-a", "add", kind="python", parameters={...}, config={"source": ...})

Every store method is one short transaction and returns detached rows (safe to use after it returns).
Tenant-owned reads and writes take the namespace first; another namespace's row is reported NotFound.
`Database(url)` brings the schema to this code's Alembic revision (`registry.migrations`).
"""

from __future__ import annotations

from registry.agents import AgentStore, HumanRequestStatus, HumanRequestStore, RunStatus, RunStore
from registry.audit import AuditStore
from registry.db import DATABASE_URL_ENV, Database
from registry.errors import RegistryError, RegistryUnavailable, SchemaTooNew, WriteConflict
from registry.keys import KEY_PREFIX, KeyStore, hash_secret
from registry.migrations import SCHEMA_VERSION, alembic_config, ensure_schema, schema_version
from registry.models import (
    SHARED_NAMESPACE,
    AgentRecord,
    ApiKey,
    CallAudit,
    EnvAgentRecord,
    EnvMessageRecord,
    HumanRequest,
    MemoryRecord,
    RunRecord,
    Secret,
    SessionRecord,
    StepRecord,
    Tool,
)
from registry.secretbox import SecretBox, SecretUnreadable
from registry.sessions import LIVE_SESSION_STATUSES, SessionStatus, SessionStore
from registry.tool_secrets import SecretStore
from registry.tools import ToolStore
from registry.volumes import VolumeStore

__all__ = [
    "DATABASE_URL_ENV",
    "KEY_PREFIX",
    "LIVE_SESSION_STATUSES",
    "SCHEMA_VERSION",
    "SHARED_NAMESPACE",
    "AgentRecord",
    "AgentStore",
    "ApiKey",
    "AuditStore",
    "CallAudit",
    "Database",
    "EnvAgentRecord",
    "EnvMessageRecord",
    "HumanRequest",
    "HumanRequestStatus",
    "HumanRequestStore",
    "KeyStore",
    "MemoryRecord",
    "RegistryError",
    "RegistryUnavailable",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "SchemaTooNew",
    "Secret",
    "SecretBox",
    "SecretStore",
    "SecretUnreadable",
    "SessionRecord",
    "SessionStatus",
    "SessionStore",
    "VolumeStore",
    "StepRecord",
    "Tool",
    "ToolStore",
    "WriteConflict",
    "alembic_config",
    "ensure_schema",
    "hash_secret",
    "schema_version",
]
