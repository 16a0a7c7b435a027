"""Named secret values of a namespace (http and mcp tools' headers, agents' LLM keys), sealed at rest."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable

from sqlmodel import col, select

from foundation.errors import Conflict
from registry._store import not_found, retry_write_conflicts
from registry.db import Database
from registry.models import SHARED_NAMESPACE, Secret
from registry.secretbox import SecretBox, SecretUnreadable

__all__ = ["SecretStore"]

_KEY_CHECK = ".secrets-key-check"


class SecretStore:
    """Listing returns names only; values leave the store only through `get` and `resolve`."""

    def __init__(self, db: Database, box: SecretBox | None = None) -> None:
        """With a `box` values are sealed (the server always gives one); without, stored as given."""
        self._db = db
        self._box = box

    def _seal(self, namespace: str, name: str, value: str) -> str:
        return self._box.seal(namespace, name, value) if self._box else value

    def _open(self, secret: Secret) -> str:
        return self._box.open(secret.namespace, secret.name, secret.value) if self._box else secret.value

    def put(self, namespace: str, name: str, value: str) -> None:
        """Create or replace."""

        def write() -> None:
            with self._db.session() as session:
                secret = session.get(Secret, (namespace, name))
                stored = self._seal(namespace, name, value)
                if secret is None:
                    session.add(Secret(namespace=namespace, name=name, value=stored))
                else:
                    secret.value = stored
                    secret.updated_at = time.time()
                    session.add(secret)
                session.flush()

        retry_write_conflicts(write)

    def get(self, namespace: str, name: str) -> str:
        """The secret's value, opened."""
        with self._db.session(write=False) as session:
            secret = session.get(Secret, (namespace, name))
        if secret is None:
            raise not_found("secret", name)
        return self._open(secret)

    def resolve(self, namespace: str, names: Iterable[str]) -> dict[str, str]:
        """Values of several secrets at once; NotFound names the first missing one."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        with self._db.session(write=False) as session:
            rows = session.exec(
                select(Secret).where(Secret.namespace == namespace, col(Secret.name).in_(wanted))
            ).all()
        values = {secret.name: self._open(secret) for secret in rows}
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
        """Remove the secret."""
        with self._db.session() as session:
            secret = session.get(Secret, (namespace, name))
            if secret is None:
                raise not_found("secret", name)
            session.delete(secret)

    def check_key(self) -> None:
        """Refuse a key other than the one this database's secrets were sealed with (SecretUnreadable).

        The first server to run writes a sealed check value in the shared namespace, which no key can read.
        """
        if self._box is None:
            return
        try:  # insert only: of two first starts with different keys, the second must not replace the first's
            with self._db.session() as session:
                sealed = self._seal(SHARED_NAMESPACE, _KEY_CHECK, _KEY_CHECK)
                session.add(Secret(namespace=SHARED_NAMESPACE, name=_KEY_CHECK, value=sealed))
                session.flush()
            return
        except Conflict:  # written before (by this key or another): it must open
            pass
        with self._db.session(write=False) as session:
            check = session.get(Secret, (SHARED_NAMESPACE, _KEY_CHECK))
        if check is None:
            raise SecretUnreadable("the secrets key check vanished while it was read; start again")
        try:
            self._open(check)
        except SecretUnreadable:
            raise SecretUnreadable(
                "this database's secrets were sealed with another secrets key: give every server process the "
                "same TOOLSERVER_SECRETS_KEY (or the state directory's secrets.key it was first started with)",
                secret=_KEY_CHECK,
            ) from None

    def seal_plaintext(self) -> int:
        """Seal every value stored before encryption (all namespaces); returns how many were rewritten."""
        if self._box is None:
            return 0
        box = self._box
        with self._db.session() as session:
            rows = [r for r in session.exec(select(Secret)).all() if not box.is_sealed(r.value)]
            for row in rows:
                row.value = box.seal(row.namespace, row.name, row.value)
                session.add(row)
            session.flush()
        return len(rows)
