"""Async access to memory: `MemoryService` over a local store, and a Ray actor any node can reach by name.

service = MemoryService(SqlMemoryStore(db))              # in the server: one store per process
handle = start_memory_actor("postgresql://...")          # once per cluster: the named actor `memory`
memory = memory_client()                                 # on any node: the same async methods
await memory.add("team-a", "shared:notes", "the build cache lives in /srv/cache")
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from agent_core.memory.base import Embedder, MemoryItem, MemoryStore
from foundation.actors import find_actor, kill_named_actor, start_named_actor
from foundation.errors import Unavailable

__all__ = [
    "MEMORY_ACTOR_NAME",
    "AsyncMemory",
    "RAY_NAMESPACE",
    "MemoryActor",
    "MemoryService",
    "RayMemoryClient",
    "memory_client",
    "start_memory_actor",
    "stop_memory_actor",
]

MEMORY_ACTOR_NAME = "memory"
RAY_NAMESPACE = "toolserver"  # the same namespace as toolserver.nodes.ray_actors


class AsyncMemory(Protocol):
    """What agents and routes use: `MemoryService` (local store) and `RayMemoryClient` (the actor) both fit."""

    async def add(
        self, namespace: str, scope: str, text: str, metadata: dict[str, Any] | None = None
    ) -> MemoryItem:
        """Store a memory in `scope`; the item with its id."""
        ...

    async def search(self, namespace: str, scope: str, query: str, k: int = 5) -> list[MemoryItem]:
        """The `k` memories of `scope` closest to `query`."""
        ...

    async def recent(self, namespace: str, scope: str, k: int = 20) -> list[MemoryItem]:
        """The `k` newest memories of `scope`."""
        ...

    async def get(self, namespace: str, scope: str, id: str) -> MemoryItem:
        """One memory; NotFound when it is not in this namespace and scope."""
        ...

    async def delete(self, namespace: str, scope: str, id: str) -> None:
        """Remove one memory; NotFound when it is not in this namespace and scope."""
        ...

    async def clear(self, namespace: str, scope: str) -> int:
        """Remove every memory of `scope`; how many there were."""
        ...


class MemoryService:
    """The async face of a `MemoryStore`: every call runs in a worker thread, off the event loop."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def add(
        self, namespace: str, scope: str, text: str, metadata: dict[str, Any] | None = None
    ) -> MemoryItem:
        """`MemoryStore.add`, in a worker thread."""
        return await asyncio.to_thread(self.store.add, namespace, scope, text, metadata)

    async def search(self, namespace: str, scope: str, query: str, k: int = 5) -> list[MemoryItem]:
        """`MemoryStore.search`, in a worker thread."""
        return await asyncio.to_thread(self.store.search, namespace, scope, query, k)

    async def recent(self, namespace: str, scope: str, k: int = 20) -> list[MemoryItem]:
        """`MemoryStore.recent`, in a worker thread."""
        return await asyncio.to_thread(self.store.recent, namespace, scope, k)

    async def get(self, namespace: str, scope: str, id: str) -> MemoryItem:
        """`MemoryStore.get`, in a worker thread."""
        return await asyncio.to_thread(self.store.get, namespace, scope, id)

    async def delete(self, namespace: str, scope: str, id: str) -> None:
        """`MemoryStore.delete`, in a worker thread."""
        await asyncio.to_thread(self.store.delete, namespace, scope, id)

    async def clear(self, namespace: str, scope: str) -> int:
        """`MemoryStore.clear`, in a worker thread."""
        return await asyncio.to_thread(self.store.clear, namespace, scope)


class MemoryActor:
    """A `SqlMemoryStore` in a Ray actor; its methods are plain calls, run by the actor's thread pool."""

    def __init__(self, database_url: str, embedder: Embedder | None = None) -> None:
        from agent_core.memory.sql import SqlMemoryStore
        from registry import Database

        self._db = Database(database_url)
        self._store = SqlMemoryStore(self._db, embedder)

    def call(self, method: str, *args: Any) -> Any:
        """Run one memory method on the actor's store; any other name is refused."""
        if method not in _METHODS:
            raise ValueError(f"no memory method {method!r}")
        return getattr(self._store, method)(*args)

    def node_id(self) -> str:
        """The id of the node this actor runs on."""
        import ray

        return str(ray.get_runtime_context().get_node_id())


_METHODS = frozenset({"add", "search", "recent", "get", "delete", "clear"})


class RayMemoryClient:
    """`MemoryService`'s methods, forwarded to the `memory` actor; Ray failures become our errors."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def add(
        self, namespace: str, scope: str, text: str, metadata: dict[str, Any] | None = None
    ) -> MemoryItem:
        """`AsyncMemory.add`, on the memory actor."""
        result: MemoryItem = await self._call("add", namespace, scope, text, metadata)
        return result

    async def search(self, namespace: str, scope: str, query: str, k: int = 5) -> list[MemoryItem]:
        """`AsyncMemory.search`, on the memory actor."""
        result: list[MemoryItem] = await self._call("search", namespace, scope, query, k)
        return result

    async def recent(self, namespace: str, scope: str, k: int = 20) -> list[MemoryItem]:
        """`AsyncMemory.recent`, on the memory actor."""
        result: list[MemoryItem] = await self._call("recent", namespace, scope, k)
        return result

    async def get(self, namespace: str, scope: str, id: str) -> MemoryItem:
        """`AsyncMemory.get`, on the memory actor."""
        result: MemoryItem = await self._call("get", namespace, scope, id)
        return result

    async def delete(self, namespace: str, scope: str, id: str) -> None:
        """`AsyncMemory.delete`, on the memory actor."""
        await self._call("delete", namespace, scope, id)

    async def clear(self, namespace: str, scope: str) -> int:
        """`AsyncMemory.clear`, on the memory actor."""
        result: int = await self._call("clear", namespace, scope)
        return result

    async def _call(self, method: str, *args: Any) -> Any:
        from foundation.actors import call_actor

        return await call_actor(self._handle.call.remote(method, *args), "the memory service")


def start_memory_actor(
    database_url: str,
    embedder: Embedder | None = None,
    *,
    node_id: str | None = None,
    max_concurrency: int = 16,
) -> Any:
    """Start the detached actor `memory` (namespace `toolserver`), or return the running one.

    It is placed on `node_id` (default: the calling node) — strictly for a SQLite file, which only that
    machine can open; for a server database the placement is a preference and Ray may restart it elsewhere.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from sqlalchemy.engine import make_url

    is_file = make_url(database_url).get_backend_name() == "sqlite"
    target = node_id or ray.get_runtime_context().get_node_id()
    handle = start_named_actor(
        MemoryActor,
        MEMORY_ACTOR_NAME,
        RAY_NAMESPACE,
        database_url,
        embedder,
        max_concurrency=max_concurrency,
        max_restarts=-1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=target, soft=not is_file),
    )
    # Wait until it is up, so that a broken database URL fails here and not on the first call.
    ray.get(handle.node_id.remote())
    return handle


def memory_client() -> RayMemoryClient:
    """A client of the running `memory` actor, from any node of the cluster (driver, task or actor)."""
    handle = find_actor(MEMORY_ACTOR_NAME, RAY_NAMESPACE)
    if handle is None:
        raise Unavailable("the memory service is not running (start it with start_memory_actor)")
    return RayMemoryClient(handle)


def stop_memory_actor() -> bool:
    """Kill the `memory` actor if it runs; True if there was one."""
    return kill_named_actor(MEMORY_ACTOR_NAME, RAY_NAMESPACE)
