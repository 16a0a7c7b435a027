"""Named secret values of a namespace (for http tools' headers). Values are stored as given: no encryption."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable

from sqlmodel import col, select

from registry._store import not_found, retry_write_conflicts
from registry.db import Database
from registry.models import Secret

__all__ = ["SecretStore"]


class SecretStore:
    """Listing returns names only; values leave the store only through `get` and `resolve`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def put(self, namespace: str, name: str, value: str) -> None:
        """Create or replace."""

        def write() -> None:
            with self._db.session() as session:
                secret = session.get(Secret, (namespace, name))
                if secret is None:
                    session.add(Secret(namespace=namespace, name=name, value=value))
                else:
                    secret.value = value
                    secret.updated_at = time.time()
                    session.add(secret)
                session.flush()

        retry_write_conflicts(write)

    def get(self, namespace: str, name: str) -> str:
        with self._db.session(write=False) as session:
            secret = session.get(Secret, (namespace, name))
        if secret is None:
            raise not_found("secret", name)
        return secret.value

    def resolve(self, namespace: str, names: Iterable[str]) -> dict[str, str]:
        """Values of several secrets at once; NotFound names the first missing one."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        with self._db.session(write=False) as session:
            rows = session.exec(
                select(Secret).where(Secret.namespace == namespace, col(Secret.name).in_(wanted))
            ).all()
        values = {secret.name: secret.value for secret in rows}
        for name in wanted:
            if name not in values:
                raise not_found("secret", name)
        return values

    def list(self, namespace: str) -> builtins.list[str]:
        """Names of the namespace's secrets, sorted."""
        with self._db.session(write=False) as session:
            return builtins.list(
                session.exec(
                    select(Secret.name).where(Secret.namespace == namespace).order_by(col(Secret.name))
                ).all()
            )

    def delete(self, namespace: str, name: str) -> None:
        with self._db.session() as session:
            secret = session.get(Secret, (namespace, name))
            if secret is None:
                raise not_found("secret", name)
            session.delete(secret)
