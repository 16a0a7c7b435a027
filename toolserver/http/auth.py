"""API keys: the admin key's bootstrap and per-request verification with a short cache."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from pathlib import Path

from foundation.errors import Forbidden, Unauthorized
from registry import Database, KeyStore, SecretBox, SecretStore
from toolserver.config import Settings
from toolserver.service.principal import Principal

__all__ = [
    "Authenticator",
    "ensure_admin_key",
    "ensure_secrets_key",
    "seal_secrets",
    "secrets_box",
    "with_secrets_key",
]

log = logging.getLogger(__name__)


def ensure_admin_key(keys: KeyStore, configured: str | None, key_file: Path) -> tuple[str, str]:
    """Make sure an admin key exists; returns (secret, where it came from).

    Priority: TOOLSERVER_API_KEY, else the key file in the state directory, else a new key written
    there with mode 0600.
    """
    if configured:
        keys.ensure_admin(configured)
        return configured, "TOOLSERVER_API_KEY"
    if key_file.exists():
        secret = key_file.read_text().strip()
    else:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        secret = "tsk_" + secrets.token_urlsafe(32)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
    keys.ensure_admin(secret)
    return secret, str(key_file)


def ensure_secrets_key(configured: str | None, key_file: Path) -> tuple[str, str]:
    """The key that seals secrets at rest; returns (key, where it came from).

    Priority: TOOLSERVER_SECRETS_KEY, else the key file in the state directory, else a new key written there
    with mode 0600. Every process of one server must use the same key: the server resolves it once at start
    and hands it to its replicas and actors.
    """
    if configured:
        SecretBox(configured)  # a malformed key stops the start, with the reason
        return configured, "TOOLSERVER_SECRETS_KEY"
    if key_file.exists():
        key = ""
        for _ in range(50):  # a file just created by another process of this server may not be written yet
            key = key_file.read_text().strip()
            if key:
                break
            time.sleep(0.02)
        SecretBox(key)
        if key_file.stat().st_mode & 0o077:
            log.warning("%s is readable by other users; it should be mode 0600", key_file)
        return key, str(key_file)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = SecretBox.new_key()
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this server wrote it first
        return ensure_secrets_key(None, key_file)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key, str(key_file)


def with_secrets_key(settings: Settings) -> tuple[Settings, str]:
    """(`settings` carrying the resolved secrets key, ready to hand to other processes; where the key came from)."""
    key, source = ensure_secrets_key(settings.secrets_key, settings.secrets_key_file)
    return settings.model_copy(update={"secrets_key": key}), source


def secrets_box(settings: Settings) -> SecretBox:
    """The box of the settings' key (the state directory's key when they carry none)."""
    return SecretBox(settings.secrets_key or ensure_secrets_key(None, settings.secrets_key_file)[0])


def seal_secrets(db: Database, settings: Settings) -> None:
    """At start: refuse a key the database's secrets do not open with; seal values stored before encryption."""
    store = SecretStore(db, secrets_box(settings))
    store.check_key()
    sealed = store.seal_plaintext()
    if sealed:
        log.info("sealed %d secrets stored before encryption", sealed)


class Authenticator:
    """Turns an `Authorization: Bearer <key>` header into a Principal.

    A verification is cached for `cache_s`, at most the key store's `trust_s` (registry.keys.KEY_TRUST_S, 1 s):
    `KeyStore.revoke` waits that long before it returns, so a revoked key is refused by every replica, on any
    machine, once its DELETE has answered.
    """

    def __init__(self, keys: KeyStore, cache_s: float | None = None) -> None:
        self.keys = keys
        self.cache_s = keys.trust_s if cache_s is None else cache_s
        if self.cache_s > keys.trust_s:
            raise ValueError(
                f"cache_s={self.cache_s} is longer than the key store's trust_s={keys.trust_s}: "
                "a revoked key would stay valid past its revocation"
            )
        self._cache: dict[str, tuple[float, Principal]] = {}

    def cached(self, authorization: str | None) -> Principal | None:
        """The caller from the cache, without touching the database; None on a miss."""
        if not authorization:
            return None
        secret = authorization.partition(" ")[2].strip()
        hit = self._cache.get(hashlib.sha256(secret.encode()).hexdigest())
        if hit is not None and time.monotonic() - hit[0] < self.cache_s:
            return hit[1]
        return None

    def principal(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized("malformed Authorization header: expected 'Bearer <key>'")
        digest = hashlib.sha256(secret.encode()).hexdigest()
        hit = self._cache.get(digest)
        now = time.monotonic()  # before the read: the cache may trust it only from when it could have begun
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        record = self.keys.verify(secret)
        if record is None:
            self._cache.pop(digest, None)
            raise Unauthorized("invalid or revoked API key")
        principal = Principal(namespace=record.namespace, key_id=record.id, is_admin=record.is_admin)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, principal)
        return principal

    @staticmethod
    def require_admin(principal: Principal) -> None:
        if not principal.is_admin:
            raise Forbidden("this needs an admin key")
