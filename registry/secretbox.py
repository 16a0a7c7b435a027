"""Secret values at rest: AES-256-GCM under the server's key, each value bound to its namespace and name.

A stored value is `aesgcm1:` + base64url(nonce || ciphertext+tag). The namespace and name are the associated
data, so a sealed value copied into another tenant's row (or renamed) does not open. A value without the
prefix was written before encryption and is read as it is, until `SecretStore.seal_plaintext` rewrites it.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from registry.errors import RegistryError

__all__ = ["SecretBox", "SecretUnreadable"]

PREFIX = "aesgcm1:"
_NONCE = 12


class SecretUnreadable(RegistryError):
    """A stored secret does not open with this server's key."""

    type = "secret_unreadable"


class SecretBox:
    """Seals and opens secret values with one 256-bit key (base64url text, as `new_key` makes)."""

    def __init__(self, key: str) -> None:
        try:
            raw = base64.urlsafe_b64decode(key.strip().encode("ascii") + b"==")
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raw = b""
        if len(raw) != 32:
            raise ValueError("a secrets key is 32 bytes in base64url (make one: toolserver keys secrets-key)")
        self._aead = AESGCM(raw)

    @staticmethod
    def new_key() -> str:
        """A fresh random key, in the form `SecretBox(key)` takes."""
        return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii").rstrip("=")

    @staticmethod
    def is_sealed(stored: str) -> bool:
        """Whether a stored value was sealed (plain text from before sealing is not)."""
        return stored.startswith(PREFIX)

    def seal(self, namespace: str, name: str, value: str) -> str:
        """Encrypt `value`, bound to its namespace and name."""
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), _bound(namespace, name))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, namespace: str, name: str, stored: str) -> str:
        """Decrypt what `seal` made for the same namespace and name; plain text is returned as it is."""
        if not self.is_sealed(stored):
            return stored
        try:
            blob = base64.urlsafe_b64decode(stored[len(PREFIX) :].encode("ascii"))
            plain = self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], _bound(namespace, name))
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretUnreadable(
                f"the secret {name!r} does not open with this server's secrets key; was TOOLSERVER_SECRETS_KEY "
                "or the state directory's secrets.key changed? Set the secret again to replace it",
                secret=name,
            ) from exc
        return plain.decode("utf-8")


def _bound(namespace: str, name: str) -> bytes:
    return f"{len(namespace)}:{namespace}/{name}".encode()
