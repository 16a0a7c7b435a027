"""Scoped memories."""

from __future__ import annotations

from typing import Any

from toolserver.api.base import Reply

__all__ = ["MemoryCleared", "MemoryItem", "MemoryItems"]


class MemoryItem(Reply):
    """One remembered text; `score` is set by search (higher is better)."""

    id: str
    namespace: str
    scope: str
    text: str
    metadata: dict[str, Any] = {}
    created_at: float
    score: float | None = None


class MemoryItems(Reply):
    """Search results or the most recent memories of a scope."""

    items: list[MemoryItem]


class MemoryCleared(Reply):
    """`DELETE /v1/memory/{scope}`: how many memories went."""

    deleted: int
