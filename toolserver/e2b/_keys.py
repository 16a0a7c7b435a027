"""Tenant keys as E2B keys: `e2b_` + the hex of the key's bytes, an alias that needs no registry change.

E2B's SDKs and the frameworks built on them expect `e2b_[0-9a-f]+`; a key of ours (`tsk_...`) turns into
one reversibly, so the server verifies the very same key. A key sent as is works too (SDK 2.63 no longer
checks the format on the client).
"""

from __future__ import annotations

import re

__all__ = ["as_e2b_key", "from_e2b_key"]

_ALIAS = re.compile(r"^e2b_((?:[0-9a-f]{2})+)$")


def as_e2b_key(key: str) -> str:
    """The E2B form of one of our keys (an E2B-form key stays as it is)."""
    if _ALIAS.match(key):
        return key
    return "e2b_" + key.encode().hex()


def from_e2b_key(key: str) -> str:
    """Our key behind an E2B-form key; any other string is returned unchanged (it is verified as it is)."""
    match = _ALIAS.match(key.strip())
    if match is None:
        return key.strip()
    try:
        return bytes.fromhex(match.group(1)).decode()
    except UnicodeDecodeError:
        return key.strip()
