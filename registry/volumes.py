"""Volumes: a namespace's named, size-capped filesystems and the node that holds each."""

from __future__ import annotations

import builtins

from sqlmodel import col, select

from foundation.errors import Conflict
from registry._store import not_found
from registry.db import Database
from registry.errors import WriteConflict
from registry.models import VolumeRecord

__all__ = ["VolumeStore"]


class VolumeStore:
    """A namespace's volumes by name; another namespace's are NotFound, like missing ones."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self, namespace: str, *, volume_id: str, name: str, size_mb: int, node_id: str
    ) -> VolumeRecord:
        """Record a volume; Conflict when the namespace has one of that name."""
        record = VolumeRecord(id=volume_id, namespace=namespace, name=name, size_mb=size_mb, node_id=node_id)
        try:
            with self._db.session() as session:
                session.add(record)
        except WriteConflict as exc:
            raise Conflict(f"volume {name!r} already exists") from exc
        return record

    def get(self, namespace: str, name: str) -> VolumeRecord:
        """The namespace's volume of that name."""
        query = select(VolumeRecord).where(VolumeRecord.namespace == namespace, VolumeRecord.name == name)
        with self._db.session(write=False) as session:
            record = session.exec(query).first()
        if record is None:
            raise not_found("volume", name)
        return record

    def list(self, namespace: str) -> builtins.list[VolumeRecord]:
        """The namespace's volumes, oldest first."""
        query = select(VolumeRecord).where(VolumeRecord.namespace == namespace)
        with self._db.session(write=False) as session:
            return builtins.list(session.exec(query.order_by(col(VolumeRecord.created_at))).all())

    def count(self, namespace: str) -> int:
        """How many volumes the namespace has."""
        return len(self.list(namespace))

    def move(self, namespace: str, name: str, node_id: str) -> VolumeRecord:
        """Record that the volume now lives on `node_id`."""
        with self._db.session() as session:
            query = select(VolumeRecord).where(VolumeRecord.namespace == namespace, VolumeRecord.name == name)
            record = session.exec(query).first()
            if record is None:
                raise not_found("volume", name)
            record.node_id = node_id
            session.add(record)
        return self.get(namespace, name)

    def delete(self, namespace: str, name: str) -> None:
        """Forget the namespace's volume of that name (NotFound when there is none)."""
        with self._db.session() as session:
            query = select(VolumeRecord).where(VolumeRecord.namespace == namespace, VolumeRecord.name == name)
            record = session.exec(query).first()
            if record is None:
                raise not_found("volume", name)
            session.delete(record)
