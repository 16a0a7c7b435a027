"""The wire models of snapshots: a session's files kept on its node, to fork new sessions from."""

from __future__ import annotations

from pydantic import Field

from toolserver.api.base import Reply
from toolserver.api.sessions import Session

__all__ = ["Forks", "Snapshot", "SnapshotList"]


class Snapshot(Reply):
    """One snapshot: the session it was taken of, its node, its size; `memory` is always false (files only)."""

    snapshot_id: str
    session_id: str
    node_id: str = Field(description="the node that keeps it: forks start there")
    size_bytes: int
    memory: bool
    created_at: float


class SnapshotList(Reply):
    """`GET /v1/snapshots`."""

    snapshots: list[Snapshot]


class Forks(Session):
    """`POST /v1/sessions {"from_snapshot", "count"}`: the first fork's session, and every fork in `forks`."""

    from_snapshot: str
    forks: list[Session]
