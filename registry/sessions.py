"""Sandbox sessions: which node and container serve them, their state and their expiry."""

from __future__ import annotations

import builtins
import time
from typing import Any, Literal, get_args

from sqlmodel import Session, col, select

from foundation.errors import Conflict
from registry._store import not_found
from registry.db import Database
from registry.errors import WriteConflict
from registry.models import SessionRecord

__all__ = ["LIVE_SESSION_STATUSES", "SessionStatus", "SessionStore"]

SessionStatus = Literal["creating", "running", "paused", "lost", "deleted", "expired"]
# paused: kept on its node without a running container
LIVE_SESSION_STATUSES: tuple[SessionStatus, ...] = ("creating", "running", "paused")


class SessionStore:
    """Sandbox sessions: where each lives, its status, and when it expires."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        namespace: str,
        *,
        node_id: str,
        image: str = "",
        session_id: str | None = None,
        container_id: str = "",
        limits: dict[str, Any] | None = None,
        network: str = "none",
        ttl_s: float | None = None,
        status: SessionStatus = "creating",
        now: float | None = None,
        runtime: str | None = None,
        egress: list[str] | None = None,
        volumes: list[dict[str, Any]] | None = None,
    ) -> SessionRecord:
        """Record a session; `session_id` is the sandbox's id when it already has one."""
        _check_status(status)
        now = time.time() if now is None else now
        record = SessionRecord(
            namespace=namespace,
            node_id=node_id,
            container_id=container_id,
            image=image,
            limits=limits or {},
            network=network,
            status=status,
            created_at=now,
            last_used_at=now,
            ttl_s=ttl_s,
            expires_at=None if ttl_s is None else now + ttl_s,
            runtime=runtime,
            egress=egress,
            volumes=volumes,
        )
        if session_id is not None:
            record.id = session_id
        try:
            with self._db.session() as session:
                session.add(record)
        except WriteConflict as exc:
            raise Conflict(f"session {record.id!r} already exists") from exc
        return record

    def get(self, namespace: str, session_id: str) -> SessionRecord:
        """The namespace's session in any state; another namespace's session is NotFound, like a missing one."""
        with self._db.session(write=False) as session:
            return _owned(session, namespace, session_id)

    def list(self, namespace: str, *, include_ended: bool = False) -> builtins.list[SessionRecord]:
        """The namespace's sessions, oldest first; only live ones (creating, running) unless `include_ended`."""
        query = select(SessionRecord).where(SessionRecord.namespace == namespace)
        if not include_ended:
            query = query.where(col(SessionRecord.status).in_(LIVE_SESSION_STATUSES))
        with self._db.session(write=False) as session:
            return builtins.list(session.exec(query.order_by(col(SessionRecord.created_at))).all())

    def list_all_live(self, node_id: str | None = None) -> builtins.list[SessionRecord]:
        """Live sessions of every namespace (for reconciliation), optionally of one node only."""
        query = select(SessionRecord).where(col(SessionRecord.status).in_(LIVE_SESSION_STATUSES))
        if node_id is not None:
            query = query.where(SessionRecord.node_id == node_id)
        with self._db.session(write=False) as session:
            return builtins.list(session.exec(query.order_by(col(SessionRecord.created_at))).all())

    def update_status(
        self,
        namespace: str,
        session_id: str,
        status: SessionStatus,
        *,
        container_id: str | None = None,
        node_id: str | None = None,
    ) -> SessionRecord:
        """Set the session's status (and where its container now is, when given)."""
        _check_status(status)
        with self._db.session() as session:
            record = _owned(session, namespace, session_id)
            record.status = status
            if container_id is not None:
                record.container_id = container_id
            if node_id is not None:
                record.node_id = node_id
            session.add(record)
        return record

    def set_pause_state(
        self, session_id: str, status: SessionStatus, pause: dict[str, Any]
    ) -> SessionRecord | None:
        """Record a live session's pause or resume (any namespace: its node reports it); None when it is not live."""
        _check_status(status)
        with self._db.session() as session:
            record = session.get(SessionRecord, session_id)
            if record is None or record.status not in LIVE_SESSION_STATUSES:
                return None
            record.status = status
            record.pause = {**(record.pause or {}), **pause}
            session.add(record)
        return record

    def touch(self, namespace: str, session_id: str, *, now: float | None = None) -> SessionRecord:
        """Mark the session used now; its expiry moves to now + ttl_s."""
        now = time.time() if now is None else now
        with self._db.session() as session:
            record = _owned(session, namespace, session_id)
            record.last_used_at = now
            if record.ttl_s is not None:
                record.expires_at = now + record.ttl_s
            session.add(record)
        return record

    def expired(self, now: float | None = None) -> builtins.list[SessionRecord]:
        """Live sessions of every namespace whose expiry has passed, soonest-expired first."""
        now = time.time() if now is None else now
        query = (
            select(SessionRecord)
            .where(
                col(SessionRecord.status).in_(LIVE_SESSION_STATUSES),
                col(SessionRecord.expires_at).is_not(None),
                col(SessionRecord.expires_at) <= now,
            )
            .order_by(col(SessionRecord.expires_at))
        )
        with self._db.session(write=False) as session:
            return builtins.list(session.exec(query).all())


def _owned(session: Session, namespace: str, session_id: str) -> SessionRecord:
    record = session.get(SessionRecord, session_id)
    if record is None or record.namespace != namespace:
        raise not_found("session", session_id)
    return record


def _check_status(status: str) -> None:
    if status not in get_args(SessionStatus):
        raise ValueError(f"unknown session status {status!r}")
