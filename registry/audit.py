"""The call audit: one row per tool call."""

from __future__ import annotations

import builtins

from sqlalchemy import delete
from sqlmodel import col, select

from registry.db import Database
from registry.models import CallAudit

__all__ = ["AuditStore"]


class AuditStore:
    """The call audit: one row per tool call."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self,
        namespace: str,
        tool: str,
        status: str,
        *,
        key_id: str | None = None,
        session_id: str | None = None,
        error_type: str | None = None,
        duration_ms: float = 0.0,
        request_bytes: int = 0,
        response_bytes: int = 0,
    ) -> CallAudit:
        """Append one call; `status` is "ok", "error", "waiting_human"... and `error_type` the error's type."""
        entry = CallAudit(
            namespace=namespace,
            tool=tool,
            status=status,
            key_id=key_id,
            session_id=session_id,
            error_type=error_type,
            duration_ms=duration_ms,
            request_bytes=request_bytes,
            response_bytes=response_bytes,
        )
        with self._db.session() as session:
            session.add(entry)
        return entry

    def list(self, namespace: str, *, limit: int = 100) -> builtins.list[CallAudit]:
        """The namespace's latest calls, newest first."""
        query = (
            select(CallAudit)
            .where(CallAudit.namespace == namespace)
            .order_by(col(CallAudit.created_at).desc(), col(CallAudit.id).desc())
            .limit(limit)
        )
        with self._db.session(write=False) as session:
            return builtins.list(session.exec(query).all())

    def prune(self, before: float) -> int:
        """Delete entries (of every namespace) created before `before`; returns how many went."""
        with self._db.session() as session:
            result = session.exec(delete(CallAudit).where(col(CallAudit.created_at) < before))
            return result.rowcount
