"""Sandbox managers as Ray actors: one per node, pinned there, found by name from any node.

The actor is the node's `SandboxManager` itself (`SandboxNodeActor`), and `RayNodeClient` calls it method by
method: both are `NodeClient`s, which mypy checks below.
"""

from __future__ import annotations

import asyncio  # stale-nodes
import dataclasses
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from foundation.actors import call_actor, find_actor, named_actor_names, start_named_actor
from foundation.errors import Unavailable
from registry import Database, SessionStore
from registry.models import SessionRecord
from sandbox.base import FileEntry, PythonResult, SandboxInfo, SandboxSpec, ShellResult
from sandbox.config import SandboxConfig
from sandbox.manager import ExpiredCallback, SandboxManager
from toolserver.config import Settings
from toolserver.nodes.base import NodeClient, NodeDirectory
from toolserver.nodes.egress_audit import egress_audit_callback
from toolserver.nodes.lane import LaneClient, LaneHandle, LaneHost, lane_methods, same_node
from toolserver.nodes.port_relay import RelayHost
from toolserver.nodes.ray_pause import RayPauseCalls  # pause: remote calls
from toolserver.nodes.ray_ports import RayPortCalls
from toolserver.nodes.ray_processes import RayProcessCalls
from toolserver.nodes.ray_streams import RayStreamCalls
from toolserver.nodes.ray_volumes import RayVolumeCalls
from toolserver.nodes.session_expiry import mark_expired_callback
from toolserver.nodes.session_pause import pause_state_callback  # pause: registry in step
from toolserver.outbound.egress import EgressPolicy

__all__ = [
    "KEY_ENV_VARS",
    "RAY_NAMESPACE",
    "RayNodeClient",
    "RayNodes",
    "SandboxNodeActor",
    "manager_node_ids",
    "node_actor_args",
    "reattach_sessions",
    "start_missing_node_actors",
    "start_node_actors",
    "stop_node_actors",
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


class SandboxNodeActor(LaneHost, RelayHost, SandboxManager):
    """This node's SandboxManager as a Ray actor: each manager method is a remote method of the same name.

    Every method is async, so one actor serves many sessions. Built from `node_actor_args`: sandbox config
    fields and the registry's url (where sessions it expires are marked).
    """

    def __init__(self, sandbox: dict[str, Any], database: str) -> None:
        config = SandboxConfig(**sandbox, node_id=ray.get_runtime_context().get_node_id())
        super().__init__(
            config,
            on_expired=self._mark_expired,
            egress_check=EgressPolicy.parse(config.egress.operator_allow),
            on_egress_denied=egress_audit_callback(database),
        )
        self._database = database
        self.pause_listener = pause_state_callback(database)  # pause: idle pauses and auto-resumes recorded
        self._registry_expired: ExpiredCallback | None = None

    LANE_METHODS = lane_methods(NodeClient)  # what a replica on this node calls over the node lane

    def _lane_node_id(self) -> str:
        return self.config.node_id

    async def start(
        self, live_sessions: dict[str, float] | None = None, adopt_from: set[str] | None = None
    ) -> dict[str, list[str]]:
        """Open the registry for expiry, then reconcile and fill the pool (see `SandboxManager.start`)."""
        # model_construct reads no environment: these settings hold the registry's url and nothing else.
        self._registry_expired = mark_expired_callback(Settings.model_construct(database_url=self._database))
        return await super().start(live_sessions, (adopt_from or set()) | await self._stale_nodes())

    async def _stale_nodes(self) -> set[str]:
        """Vanished nodes whose containers this engine holds and whose sessions are over (see stale_nodes)."""
        from toolserver.nodes.stale_nodes import orphaned_nodes

        client = getattr(self.backend, "client", None)
        if client is None:  # a backend without an engine of its own
            return set()
        instance_id, database = self.config.instance_id, self._database
        return await asyncio.to_thread(
            lambda: orphaned_nodes(client, instance_id, database, _alive_node_ids())
        )

    async def _mark_expired(self, session_id: str) -> None:
        if self._registry_expired is not None:
            await self._registry_expired(session_id)


class RayNodeClient(RayProcessCalls, RayStreamCalls, RayPortCalls, RayVolumeCalls, RayPauseCalls, NodeClient):
    """A node's manager actor as a NodeClient: one typed remote call per method; a lost actor is Unavailable."""

    def __init__(self, handle: Any, node_id: str) -> None:
        self._handle = handle
        self._node_id = node_id
        self._what = f"sandbox node {node_id[:12]}"

    async def create(self, spec: SandboxSpec, ttl_s: float | None = None) -> SandboxInfo:
        return await self._call(self._handle.create.remote(spec, ttl_s))

    async def get(self, session_id: str) -> SandboxInfo:
        return await self._call(self._handle.get.remote(session_id))

    async def shell(self, session_id: str, command: str, timeout_s: float = 30.0) -> ShellResult:
        return await self._call(self._handle.shell.remote(session_id, command, timeout_s))

    async def python(self, session_id: str, code: str, timeout_s: float = 30.0) -> PythonResult:
        return await self._call(self._handle.python.remote(session_id, code, timeout_s))

    async def restart_python(self, session_id: str) -> None:
        await self._call(self._handle.restart_python.remote(session_id))

    async def write_file(self, session_id: str, path: str, data: bytes) -> FileEntry:
        return await self._call(self._handle.write_file.remote(session_id, path, data))

    async def read_file(self, session_id: str, path: str) -> bytes:
        return await self._call(self._handle.read_file.remote(session_id, path))

    async def list_files(self, session_id: str, path: str = "") -> list[FileEntry]:
        return await self._call(self._handle.list_files.remote(session_id, path))

    async def destroy(self, session_id: str) -> None:
        await self._call(self._handle.destroy.remote(session_id))

    async def egress(self, session_id: str) -> dict[str, Any]:
        return await self._call(self._handle.egress.remote(session_id))

    async def sessions(self) -> list[SandboxInfo]:
        return await self._call(self._handle.sessions.remote())

    async def stats(self) -> dict[str, Any]:
        return await self._call(self._handle.stats.remote())

    async def _call(self, ref: Awaitable[Any]) -> Any:
        return await call_actor(ref, self._what, node_id=self._node_id)


# mypy proves both ends of the Ray hop are NodeClients: what RayNodeClient offers, the actor serves.
_CLIENT_IS_A_NODE_CLIENT: type[NodeClient] = RayNodeClient
_ACTOR_IS_A_NODE_CLIENT: type[NodeClient] = SandboxNodeActor


async def _over_lane(handle: Any, node_id: str) -> Any:
    """`handle`, or a LaneHandle when the manager runs on this process's node and its lane answers."""
    here = ray.get_runtime_context().get_node_id
    if node_id != here():
        return handle
    try:
        address = await call_actor(handle.lane_address.remote(), f"sandbox node {node_id[:12]}")
    except Exception:  # a manager without a lane: calls go through Ray
        return handle
    if not same_node(address, here):
        return handle
    lane = LaneClient(address, f"sandbox node {node_id[:12]}")
    return LaneHandle(handle, lane, SandboxNodeActor.LANE_METHODS)


def _alive_node_ids() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def manager_node_ids() -> set[str]:
    """Nodes with a live sandbox manager actor (alive or not: Ray keeps a dead node's names a while)."""
    return {name[len(_PREFIX) :] for name in named_actor_names(RAY_NAMESPACE, _PREFIX)}


class RayNodes(NodeDirectory):
    """Finds node actors by name in the `toolserver` Ray namespace."""

    def __init__(self, cache_s: float = 2.0, lane: bool = True) -> None:
        """`lane`: call the manager of this process's own node over its unix socket lane instead of Ray."""
        self._lane = lane
        self._clients: dict[str, RayNodeClient] = {}
        self._ids: list[str] = []
        self._ids_at = 0.0
        self._cache_s = cache_s

    async def node(self, node_id: str) -> NodeClient:
        """The manager actor of `node_id`; Unavailable when none lives."""
        client = self._clients.get(node_id)
        if client is None:
            handle = find_actor(_PREFIX + node_id, RAY_NAMESPACE)
            if handle is None:
                raise Unavailable(f"sandbox node {node_id[:12]} is not available", node_id=node_id)
            if self._lane:
                handle = await _over_lane(handle, node_id)
            client = self._clients[node_id] = RayNodeClient(handle, node_id)
        return client

    async def node_ids(self) -> list[str]:
        """Alive nodes with a manager (cached for `cache_s` seconds)."""
        if time.monotonic() - self._ids_at > self._cache_s:
            self._ids = sorted(manager_node_ids() & _alive_node_ids())
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
    args = node_actor_args(settings, instance_id)
    handles = {
        node_id: start_named_actor(
            SandboxNodeActor,
            _PREFIX + node_id,
            RAY_NAMESPACE,
            *args,
            blank_env=KEY_ENV_VARS,
            max_concurrency=1000,
            max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
        )
        for node_id in sorted(_alive_node_ids())
        if only is None or node_id in only
    }
    reports = ray.get(
        [h.start.remote(live_sessions.get(n, {}), adopt.get(n, set())) for n, h in handles.items()]
    )
    return dict(zip(handles, reports, strict=True))


def reattach_sessions(
    store: SessionStore,
    settings: Settings,
    instance_id: str,
    placed: Mapping[str, Sequence[SessionRecord]],
    adopt: dict[str, set[str]] | None = None,
    only: set[str] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Start the node managers (as `start_node_actors`), each re-attaching the live sessions `placed` on it.

    The registry follows: a session re-attached on another node than its record says now runs there, and one
    that no manager re-attached is lost. Returns each node's reconcile report.
    """
    live = {
        node_id: {r.id: r.ttl_s or settings.session_ttl_s for r in records}
        for node_id, records in placed.items()
    }
    reports = start_node_actors(settings, instance_id, live, adopt, only)
    attached = {sid: node_id for node_id, report in reports.items() for sid in report["attached"]}
    paused = {sid: node_id for node_id, report in reports.items() for sid in report.get("paused", [])}
    for records in placed.values():
        for record in records:
            if record.id in paused:  # pause: kept on its node's disk, still paused
                if paused[record.id] != record.node_id:
                    store.update_status(record.namespace, record.id, "paused", node_id=paused[record.id])
            elif record.id not in attached:
                store.update_status(record.namespace, record.id, "lost")
            elif attached[record.id] != record.node_id:
                store.update_status(record.namespace, record.id, "running", node_id=attached[record.id])
    return reports


def start_missing_node_actors(settings: Settings, instance_id: str) -> list[str]:
    """Start a manager on every alive node that has none (it joined later, or its manager died).

    Sessions the registry still holds as live on such a node are re-attached (or marked lost). A machine
    that comes back joins with a new node id: its new manager removes the containers its engine still
    holds of dead nodes (their sessions were lost with them). Returns the node ids.
    """
    missing = _alive_node_ids() - manager_node_ids()
    if not missing:
        return []
    dead = {n["NodeID"] for n in ray.nodes() if not n.get("Alive")}
    db = Database(settings.database)
    try:
        store = SessionStore(db)
        placed = {node_id: store.list_all_live(node_id) for node_id in missing}
        adopt = dict.fromkeys(missing, dead)
        reattach_sessions(store, settings, instance_id, placed, adopt, only=missing)
    finally:
        db.close()
    return sorted(missing)


def stop_node_actors() -> None:
    """Shut every node manager down (removing its sandboxes) and kill the actors."""
    for name in named_actor_names(RAY_NAMESPACE, _PREFIX):
        handle = find_actor(name, RAY_NAMESPACE)
        if handle is None:
            continue
        try:
            ray.get(handle.shutdown.remote(), timeout=60)
            ray.kill(handle)
        except Exception:
            continue
