"""Sandbox managers as Ray actors: one per node, pinned there, found by name from any node."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Coroutine
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from foundation.actors import ActorClient
from foundation.errors import Unavailable
from toolserver.config import Settings
from toolserver.nodes.base import NodeClient, NodeDirectory

__all__ = [
    "KEY_ENV_VARS",
    "RAY_NAMESPACE",
    "RayNodes",
    "SandboxNodeActor",
    "node_actor_args",
    "start_missing_node_actors",
    "start_node_actors",
]

RAY_NAMESPACE = "toolserver"
_PREFIX = "sandbox-node-"
KEY_ENV_VARS = ("TOOLSERVER_API_KEY", "TOOLSERVER_SECRETS_KEY")
"""Blanked in a node manager's environment: a Ray worker inherits the one the cluster was started in."""
# Known only on the node itself: its own temporary directory, and its Ray node id.
_NODE_LOCAL = ("runtime_dir", "node_id")


def node_actor_args(settings: Settings, instance_id: str) -> tuple[dict[str, Any], str]:
    """What a node manager is given: its sandbox config (as fields) and the registry's url, nothing else.

    A node manager talks to sandboxed code; it needs neither the admin key nor the key that seals secrets, so
    neither is handed to it (nor anything else it does not use).
    """
    config = settings.sandbox_config(instance_id=instance_id, node_id="")
    fields = {
        f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in _NODE_LOCAL
    }
    return fields, settings.database


class SandboxNodeActor:
    """Wraps this node's SandboxManager; every method is async, so one actor serves many sessions.

    Built from `node_actor_args`: sandbox config fields and the registry's url (to mark expired sessions).
    """

    def __init__(self, sandbox: dict[str, Any], database: str) -> None:
        from sandbox.config import SandboxConfig
        from sandbox.manager import SandboxManager

        self.node_id = ray.get_runtime_context().get_node_id()
        self.database = database
        config = SandboxConfig(**sandbox, node_id=self.node_id)
        self.manager = SandboxManager(config, on_expired=self._expired)
        self._on_expired: Callable[[str], Coroutine[Any, Any, None]] | None = None

    async def start(self, live_sessions: dict[str, float], adopt_from: list[str]) -> dict[str, list[str]]:
        from toolserver.nodes.session_expiry import mark_expired_callback

        # model_construct reads no environment: these settings hold the registry's url and nothing else.
        self._on_expired = mark_expired_callback(Settings.model_construct(database_url=self.database))
        return await self.manager.start(live_sessions, set(adopt_from))

    async def _expired(self, session_id: str) -> None:
        if self._on_expired is not None:
            await self._on_expired(session_id)

    async def call(self, method: str, *args: Any) -> Any:
        return await getattr(self.manager, method)(*args)

    async def shutdown(self) -> None:
        await self.manager.shutdown()


class RayNodes(NodeDirectory):
    """Finds node actors by name in the `toolserver` Ray namespace."""

    def __init__(self, cache_s: float = 2.0) -> None:
        self._clients: dict[str, ActorClient] = {}
        self._ids: list[str] = []
        self._ids_at = 0.0
        self._cache_s = cache_s

    async def node(self, node_id: str) -> NodeClient:
        client = self._clients.get(node_id)
        if client is None:
            try:
                handle = ray.get_actor(_PREFIX + node_id, namespace=RAY_NAMESPACE)
            except ValueError:
                raise Unavailable(f"sandbox node {node_id[:12]} is not available", node_id=node_id) from None
            client = self._clients[node_id] = ActorClient(
                handle, f"sandbox node {node_id[:12]}", node_id=node_id
            )
        return client  # type: ignore[return-value]

    async def node_ids(self) -> list[str]:
        if time.monotonic() - self._ids_at > self._cache_s:
            alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
            names = ray.util.list_named_actors(all_namespaces=True)
            found = [
                entry["name"][len(_PREFIX) :]
                for entry in names
                if entry.get("namespace") == RAY_NAMESPACE and entry["name"].startswith(_PREFIX)
            ]
            self._ids = sorted(n for n in found if n in alive)
            self._ids_at = time.monotonic()
            for gone in set(self._clients) - set(self._ids):
                self._clients.pop(gone, None)
        return list(self._ids)


def start_node_actors(
    settings: Settings,
    instance_id: str,
    live_sessions: dict[str, dict[str, float]],
    adopt: dict[str, set[str]] | None = None,
    only: set[str] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Start (or find) the sandbox manager actor of every alive node and reconcile it.

    `live_sessions` maps node id -> {session id -> ttl} of sessions the registry holds as alive;
    `adopt` maps node id -> vanished nodes whose containers that node takes over; `only` limits
    the start to these nodes.
    """
    adopt = adopt or {}
    remote_cls = ray.remote(SandboxNodeActor)
    args = node_actor_args(settings, instance_id)
    handles = {}
    for node in ray.nodes():
        if not node.get("Alive") or (only is not None and node["NodeID"] not in only):
            continue
        node_id = node["NodeID"]
        handles[node_id] = remote_cls.options(  # type: ignore[attr-defined]
            name=_PREFIX + node_id,
            namespace=RAY_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_concurrency=1000,
            max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            runtime_env={"env_vars": dict.fromkeys(KEY_ENV_VARS, "")},
        ).remote(*args)  # type: ignore[attr-defined]
    reports = ray.get(
        [h.start.remote(live_sessions.get(n, {}), sorted(adopt.get(n, set()))) for n, h in handles.items()]  # type: ignore[attr-defined]
    )
    return dict(zip(handles, reports, strict=True))


def start_missing_node_actors(settings: Settings, instance_id: str) -> list[str]:
    """Start a manager on every alive node that has none (it joined later, or its manager died).

    Sessions the registry still holds as live on such a node are re-attached; returns the node ids.
    """
    from registry import Database, SessionStore

    have = {
        entry["name"][len(_PREFIX) :]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry.get("namespace") == RAY_NAMESPACE and entry["name"].startswith(_PREFIX)
    }
    missing = {n["NodeID"] for n in ray.nodes() if n.get("Alive")} - have
    if not missing:
        return []
    db = Database(settings.database)
    try:
        live = {
            node_id: {
                r.id: r.ttl_s or settings.session_ttl_s for r in SessionStore(db).list_all_live(node_id)
            }
            for node_id in missing
        }
    finally:
        db.close()
    start_node_actors(settings, instance_id, live, only=missing)
    return sorted(missing)


def stop_node_actors() -> None:
    """Shut every node manager down (removing its sandboxes) and kill the actors."""
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") != RAY_NAMESPACE or not entry["name"].startswith(_PREFIX):
            continue
        try:
            handle = ray.get_actor(entry["name"], namespace=RAY_NAMESPACE)
            ray.get(handle.shutdown.remote(), timeout=60)
            ray.kill(handle)
        except Exception:
            continue
