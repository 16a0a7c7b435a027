"""Health, API keys, secrets and the call audit."""

from __future__ import annotations

from toolserver.api.base import Reply

__all__ = ["ApiKey", "AuditEntry", "AuditList", "Health", "KeyList", "NewApiKey", "NodeStats", "SecretList"]


class NodeStats(Reply):
    """One node's sandboxes and warm pool."""

    node_id: str
    sandboxes_running: int
    pool_ready: int
    pool_size: int


class Health(Reply):
    """`GET /healthz`: `ok`, or `degraded` when no node answers."""

    status: str
    version: str
    ray_nodes: int
    sandboxes_running: int
    pool_size: int
    nodes: list[NodeStats]


class ApiKey(Reply):
    """An API key as listed: never its secret."""

    id: str
    namespace: str
    name: str
    prefix: str
    admin: bool
    revoked: bool


class NewApiKey(Reply):
    """A created key: `key` is shown this once."""

    id: str
    namespace: str
    name: str
    admin: bool
    key: str


class KeyList(Reply):
    """`GET /v1/keys`."""

    keys: list[ApiKey]


class SecretList(Reply):
    """`GET /v1/secrets`: names only."""

    secrets: list[str]


class AuditEntry(Reply):
    """One tool call as audited."""

    id: str
    namespace: str
    tool: str
    status: str
    key_id: str | None = None
    session_id: str | None = None
    error_type: str | None = None
    request_bytes: int | None = None
    response_bytes: int | None = None
    duration_ms: float | None = None
    created_at: float


class AuditList(Reply):
    """`GET /v1/audit`: the most recent calls first."""

    calls: list[AuditEntry]
