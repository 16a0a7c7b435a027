"""API keys: create, verify, revoke. Only the sha256 of a secret is stored.

Revocation across processes: a process may accept a key it verified for at most `KEY_TRUST_S` without asking
the registry again (toolserver.http.auth caches verifications that long), and `KeyStore.revoke` returns only once
that time has passed since the revocation was committed. So when a revoke has returned, no replica, on this
machine or another, accepts the key; nothing has to reach every process, and no request pays a registry read.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
import time

from sqlmodel import col, select

from foundation.errors import Conflict, ValidationFailed
from registry._store import not_found
from registry.db import Database
from registry.errors import WriteConflict
from registry.models import ApiKey

__all__ = ["KEY_PREFIX", "KEY_TRUST_S", "KeyStore", "hash_secret"]

KEY_PREFIX = "tsk_"
KEY_TRUST_S = 1.0
"""Longest a process accepts a key it verified without reading the registry again; revoke waits this out."""
# Clocks of two machines run at rates a few ppm apart; the margin covers that and a scheduling hiccup.
_TRUST_MARGIN_S = 0.05
_RECENT_S = 60.0  # longer than any commit takes (the busy timeout is 10 s)
_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def hash_secret(secret: str) -> str:
    """The sha256 (hex) of a key's secret: all that is stored of it."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _display_prefix(secret: str) -> str:
    # Enough to tell keys apart in a listing, never enough to matter for a short, user-chosen secret.
    return secret[: min(12, len(secret) // 4)]


class KeyStore:
    """API keys: create, verify, list, revoke."""

    def __init__(self, db: Database, *, trust_s: float = KEY_TRUST_S) -> None:
        """`trust_s`: how long processes may trust a verification (see KEY_TRUST_S); revoke waits it out."""
        self._db = db
        self.trust_s = trust_s

    def create(self, namespace: str, name: str = "", *, admin: bool = False) -> tuple[ApiKey, str]:
        """A new key for `namespace`; returns the record and the plaintext secret (shown once, never stored)."""
        if not _NAMESPACE.fullmatch(namespace):
            raise ValidationFailed(
                "namespace must be 1-63 characters of a-z, 0-9, '_', '.', '-' starting with a letter or digit",
                field="namespace",
            )
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(
            namespace=namespace,
            name=name,
            key_hash=hash_secret(secret),
            prefix=_display_prefix(secret),
            is_admin=admin,
        )
        with self._db.session() as session:
            session.add(record)
        return record, secret

    def verify(self, secret: str) -> ApiKey | None:
        """The live key with this secret, or None (unknown, revoked or empty)."""
        if not secret:
            return None
        digest = hash_secret(secret)
        with self._db.session(write=False) as session:
            record = session.exec(select(ApiKey).where(ApiKey.key_hash == digest)).first()
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            return None
        return None if record.revoked_at is not None else record

    def get(self, key_id: str) -> ApiKey:
        """The key with that id (any namespace: for admins)."""
        with self._db.session(write=False) as session:
            record = session.get(ApiKey, key_id)
        if record is None:
            raise not_found("api key", key_id)
        return record

    def list(self, namespace: str | None = None, *, include_revoked: bool = False) -> builtins.list[ApiKey]:
        """Keys of one namespace, or of all namespaces when `namespace` is None (admin listing)."""
        query = select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.id))
        if namespace is not None:
            query = query.where(ApiKey.namespace == namespace)
        if not include_revoked:
            query = query.where(col(ApiKey.revoked_at).is_(None))
        with self._db.session(write=False) as session:
            return builtins.list(session.exec(query).all())

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (idempotent); when this returns, no process of the server accepts it any more.

        Blocks for up to `trust_s` (plus a small margin) after the revocation is committed, the longest any
        process may still trust an earlier verification of the key.
        """
        revoked_here = False
        with self._db.session() as session:
            record = session.get(ApiKey, key_id)
            if record is None:
                raise not_found("api key", key_id)
            if record.revoked_at is None:
                record.revoked_at = time.time()
                session.add(record)
                revoked_here = True
        window = self.trust_s * 1.001 + _TRUST_MARGIN_S if self.trust_s > 0 else 0.0
        # The whole window, counted from now (after the commit). A key revoked before, but recently (maybe by
        # another replica whose commit just ended), waits it too: only long-revoked keys answer at once.
        assert record.revoked_at is not None
        if revoked_here or time.time() - record.revoked_at < window + _RECENT_S:
            time.sleep(window)
        return record

    def ensure_admin(self, secret: str, *, namespace: str = "default", name: str = "admin") -> ApiKey:
        """Store a given admin secret (from `TOOLSERVER_API_KEY` or the key file) if it is not stored yet."""
        if not secret:
            raise ValidationFailed("the admin key must not be empty", field="secret")
        digest = hash_secret(secret)
        for _ in range(2):
            with self._db.session(write=False) as session:
                existing = session.exec(select(ApiKey).where(ApiKey.key_hash == digest)).first()
            if existing is not None:
                if existing.revoked_at is not None or not existing.is_admin:
                    raise Conflict(
                        f"the configured admin key ({existing.prefix}...) was revoked or is not an admin key; "
                        "configure a new one"
                    )
                return existing
            try:
                record = ApiKey(
                    namespace=namespace,
                    name=name,
                    key_hash=digest,
                    prefix=_display_prefix(secret),
                    is_admin=True,
                )
                with self._db.session() as session:
                    session.add(record)
                return record
            except WriteConflict:
                continue  # another process stored it between our read and our write: read theirs
        raise Conflict("could not store the admin key")
