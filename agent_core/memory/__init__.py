"""Scoped memory for agents: a store interface, a SQL store with full-text search, async access over Ray.

    store = SqlMemoryStore(Database(url))                   # SQLite (FTS5) or PostgreSQL (tsvector)
    item = store.add("team-a", "agent:planner", "the user prefers metric units")
    store.search("team-a", "agent:planner", "which units?")  # ranked, best first

The namespace is the tenant boundary: nothing reads, finds or deletes across it. `start_memory_actor` and
`memory_client` let agents on different Ray nodes share one store.
"""

from __future__ import annotations

from agent_core.memory.base import (
    MAX_K,
    MAX_METADATA_BYTES,
    MAX_QUERY_CHARS,
    MAX_SCOPE_CHARS,
    MAX_TEXT_BYTES,
    SCOPE_PATTERN,
    Embedder,
    MemoryItem,
    MemoryStore,
    check_scope,
)
from agent_core.memory.service import (
    MEMORY_ACTOR_NAME,
    AsyncMemory,
    MemoryActor,
    MemoryService,
    RayMemoryClient,
    memory_client,
    start_memory_actor,
    stop_memory_actor,
)
from agent_core.memory.sql import MemoryRecord, SqlMemoryStore

__all__ = [
    "MAX_K",
    "MAX_METADATA_BYTES",
    "MAX_QUERY_CHARS",
    "MAX_SCOPE_CHARS",
    "MAX_TEXT_BYTES",
    "MEMORY_ACTOR_NAME",
    "SCOPE_PATTERN",
    "AsyncMemory",
    "Embedder",
    "MemoryActor",
    "MemoryItem",
    "MemoryRecord",
    "MemoryService",
    "MemoryStore",
    "RayMemoryClient",
    "SqlMemoryStore",
    "check_scope",
    "memory_client",
    "start_memory_actor",
    "stop_memory_actor",
]
