"""Who is calling: the namespace an API key belongs to."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Principal"]


@dataclass(frozen=True)
class Principal:
    """The caller of a request: its key's namespace, the key's id (for the audit) and whether it is an admin."""

    namespace: str
    key_id: str
    is_admin: bool = False
