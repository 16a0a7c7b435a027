"""Short random identifiers such as `ses_k3j5q2m7x4ab` (lowercase base32, URL-safe)."""

from __future__ import annotations

import secrets

_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def new_id(prefix: str, length: int = 12) -> str:
    """`prefix_` and `length` random characters."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))
