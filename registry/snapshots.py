"""Snapshots: a namespace's copies of a session's files and the node that keeps each."""

from __future__ import annotations

import builtins
from typing import Any

from sqlmodel import col, select

from registry._store import not_found
from registry.db import Database
from registry.models import SnapshotRecord

__all__ = ["SnapshotStore"]


class SnapshotStore:
    """A namespace's snapshots by id; another namespace's are NotFound, like missing ones."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, namespace: str, **fields: Any) -> SnapshotRecord:
        """Record a snapshot the node has made."""
        record = SnapshotRecord(namespace=namespace, **fields)
        with self._db.session() as session:
            session.add(record)
        return record

    def get(self, namespace: str, snapshot_id: str) -> SnapshotRecord:
        """The namespace's snapshot."""
        with self._db.session(write=False) as session:
            record = session.get(SnapshotRecord, snapshot_id)
        if record is None or record.namespace != namespace:
            raise not_found("snapshot", snapshot_id)
        return record

    def list(self, namespace: str) -> builtins.list[SnapshotRecord]:
        """The namespace's snapshots, oldest first."""
        query = (
            select(SnapshotRecord)
            .where(SnapshotRecord.namespace == namespace)
            .order_by(col(SnapshotRecord.created_at))
        )
        with self._db.session(write=False) as session:
            return builtins.list(session.exec(query).all())

    def delete(self, namespace: str, snapshot_id: str) -> None:
        """Forget the namespace's snapshot."""
        with self._db.session() as session:
            record = session.get(SnapshotRecord, snapshot_id)
            if record is None or record.namespace != namespace:
                raise not_found("snapshot", snapshot_id)
            session.delete(record)
