"""Sessions: registry record + sandbox on the node that owns it; every call is tenant-checked."""

from __future__ import annotations

import asyncio
import builtins
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from typing import Any, TypeVar

from foundation.errors import NotFound, QuotaExceeded, SessionLost, Unavailable, UserError  # snapshots
from registry import SessionStore
from registry.snapshots import SnapshotStore  # snapshots
from sandbox.base import FileEntry, Limits, PythonResult, SandboxInfo, SandboxSpec, ShellResult, VolumeMount
from sandbox.errors import SandboxGone, SandboxNotFound
from toolserver.api.requests import EgressNetwork, SessionCreate
from toolserver.nodes.base import NodeClient, NodeDirectory
from toolserver.service.pause import SessionPauses  # pause: the mixin
from toolserver.service.principal import Principal
from toolserver.service.session_cache import UseRecorder, VerifiedSessions
from toolserver.service.snapshots import SessionSnapshots  # snapshots: the mixin
from toolserver.service.volumes import VolumeService

__all__ = ["SessionService", "session_view"]

_LIVE = ("running", "paused")  # pause: a paused session is still the tenant's
Result = TypeVar("Result")


def _lost(session_id: str, node_id: str) -> SessionLost:
    return SessionLost(
        f"session {session_id} is lost: it lived on node {node_id[:12]}, which is gone",
        session_id=session_id,
        node_id=node_id,
    )


def session_view(record: Any, runtime: str | None = None) -> dict[str, Any]:
    """A session record as the API shows it, with its runtime (the record's, else `runtime` when known)."""
    return {
        "id": record.id,
        "node_id": record.node_id,
        "status": record.status,
        "created_at": record.created_at,
        "last_used_at": record.last_used_at,
        "image": record.image,
        "limits": record.limits,
        "network": {"egress": record.egress or []} if record.network == "egress" else record.network,
        "ttl_s": record.ttl_s,
        "expires_at": record.expires_at,
        "runtime": record.runtime or runtime,
        "volumes": [
            {"name": v["name"], "path": v["path"], "read_only": bool(v.get("read_only"))}
            for v in record.volumes or ()
        ],
        **_pause_view(record),
    }


def _pause_view(record: Any) -> dict[str, Any]:
    """pause: when it was paused, what its last pause kept and its last resume restored."""
    pause = getattr(record, "pause", None) or {}
    return {"paused_at": pause.get("paused_at"), "kept": pause.get("kept"), "resumed": pause.get("resumed")}


class SessionService(SessionPauses, SessionSnapshots):
    """Sessions for tenants: a registry record plus a sandbox on the node that owns it, every call tenant-checked."""

    def __init__(
        self,
        store: SessionStore,
        nodes: NodeDirectory,
        default_limits: Limits,
        default_ttl_s: float,
        max_per_namespace: int = 0,
        volumes: VolumeService | None = None,
        max_paused_per_namespace: int = 0,
        snapshots: SnapshotStore | None = None,
        max_snapshot_bytes: int = 0,
        max_paused_bytes: int = 0,
        max_snapshots: int = 0,
    ) -> None:
        """`max_per_namespace` caps a namespace's live sessions (0: no cap); `volumes` resolves what they mount."""
        self.volumes = volumes
        self.store = store
        self.nodes = nodes
        self.default_limits = default_limits
        self.default_ttl_s = default_ttl_s
        self.max_per_namespace = max_per_namespace
        self.max_paused_per_namespace = max_paused_per_namespace  # pause: its own, larger cap
        self.max_paused_bytes = max_paused_bytes  # pause: what the namespace's paused sessions keep in all
        self.max_snapshots = max_snapshots  # snapshots: how many a namespace keeps
        self.snapshots, self.max_snapshot_bytes = snapshots, max_snapshot_bytes  # snapshots: store and cap
        self._creating: Counter[str] = Counter()  # per namespace, in this process
        # Creates under way per node: a burst must not all pick the node that looked emptiest.
        self._placing: Counter[str] = Counter()
        self.verified = VerifiedSessions()
        self.uses = UseRecorder(self.store.touch)

    async def create(self, principal: Principal, body: SessionCreate) -> dict[str, Any]:
        """A new session on the least loaded node, within the namespace's cap."""
        namespace = principal.namespace
        if body.from_snapshot:  # snapshots: forks start on the snapshot's node
            return await self._forks(principal, body)
        if body.count != 1:
            raise UserError("count is for forks: it needs from_snapshot", field="count")
        if self.max_per_namespace and len(await self._live(namespace)) + self._creating[namespace] >= (
            self.max_per_namespace
        ):
            raise self._over_quota()
        self._creating[namespace] += 1
        try:
            view = await self._create(principal, body)
        finally:
            self._creating[namespace] -= 1
        if self.max_per_namespace:
            # Creates on other replicas may have raced past the cap: the newest give way.
            live = sorted(await self._live(namespace), key=lambda r: (r.created_at, r.id))
            if [r.id for r in live].index(view["id"]) >= self.max_per_namespace:
                await self.delete(principal, view["id"])
                raise self._over_quota()
        return view

    async def _live(self, namespace: str) -> builtins.list[Any]:
        records = await asyncio.to_thread(self.store.list, namespace)
        return [r for r in records if r.status == "running"]  # pause: paused ones have their own cap

    def _over_quota(self) -> QuotaExceeded:
        return QuotaExceeded(
            f"the namespace has {self.max_per_namespace} live sessions, its cap "
            "(TOOLSERVER_MAX_SESSIONS_PER_NAMESPACE); delete one first",
            limit=self.max_per_namespace,
        )

    async def _create(self, principal: Principal, body: SessionCreate) -> dict[str, Any]:
        egress = body.network if isinstance(body.network, EgressNetwork) else None
        spec = SandboxSpec(
            image=body.image,
            limits=self._limits(body),
            network="egress" if egress is not None else body.network,  # type: ignore[arg-type]
            owner=principal.namespace,
            runtime=body.runtime,
            egress=tuple(egress.egress) if egress is not None else (),
        )
        at, mounts, kept = await self._volume_mounts(principal, body)
        spec = replace(spec, volumes=mounts)
        node_id = at or await self.nodes.choose(self._placing)
        self._placing[node_id] += 1  # no await since choose(): the next create sees this one
        try:
            node = await self.nodes.node(node_id)
            ttl_s = body.ttl_s or self.default_ttl_s
            info: SandboxInfo = await node.create(spec, ttl_s)
        finally:
            self._placing[node_id] -= 1
        record = await asyncio.to_thread(
            self.store.create,
            principal.namespace,
            session_id=info.session_id,
            node_id=info.node_id,
            container_id=info.container_id,
            image=info.image,
            limits=asdict(info.limits),
            network=info.network,
            status="running",
            ttl_s=ttl_s,
            runtime=info.runtime,
            egress=list(info.egress) if info.network == "egress" else None,
            volumes=kept or None,
        )
        return session_view(record)

    async def _volume_mounts(
        self, principal: Principal, body: SessionCreate
    ) -> tuple[str | None, tuple[VolumeMount, ...], builtins.list[dict[str, Any]]]:
        """The node the session's volumes pin it to, their mounts, and what its record keeps of them."""
        if not body.volumes:
            return None, (), []
        if self.volumes is None:
            raise Unavailable("this server keeps no volumes")
        return await self.volumes.mounts(principal, body.volumes)

    async def list(self, principal: Principal) -> builtins.list[dict[str, Any]]:
        """The caller's live sessions."""
        records = [
            r for r in await asyncio.to_thread(self.store.list, principal.namespace) if r.status in _LIVE
        ]
        runtimes: dict[str, str] = {}
        for node_id in {r.node_id for r in records if r.runtime is None}:  # rows from before revision 0002
            runtimes.update(await self._runtimes_on(node_id))
        return [session_view(r, runtimes.get(r.id)) for r in records]

    async def get(self, principal: Principal, session_id: str) -> dict[str, Any]:
        """One of the caller's live sessions; NotFound otherwise."""
        record = await self._record(principal, session_id)
        if record.runtime is not None:
            return session_view(record)
        return session_view(record, (await self._runtimes_on(record.node_id)).get(session_id))

    async def _runtimes_on(self, node_id: str) -> dict[str, str]:
        """The runtime of each session on a node, for rows from before revision 0002; empty when it does not answer."""
        try:
            return {
                info.session_id: info.runtime for info in await (await self.nodes.node(node_id)).sessions()
            }
        except Exception:
            return {}

    async def delete(self, principal: Principal, session_id: str) -> None:
        """Remove the session's sandbox (if its node is still there) and mark the session deleted."""
        record = await self._record(principal, session_id)
        try:
            node = await self.nodes.node(record.node_id)
            await node.destroy(session_id)
        except Unavailable:
            pass  # the node is gone, and its containers with it
        await asyncio.to_thread(self.store.update_status, principal.namespace, session_id, "deleted")
        self._forget(principal, session_id)

    async def shell(
        self, principal: Principal, session_id: str, command: str, timeout_s: float
    ) -> ShellResult:
        """Run `command` in the session's persistent shell."""
        return await self._on_node(
            principal, session_id, lambda node: node.shell(session_id, command, timeout_s)
        )

    async def python(
        self, principal: Principal, session_id: str, code: str, timeout_s: float
    ) -> PythonResult:
        """Run a cell in the session's kernel."""
        return await self._on_node(
            principal, session_id, lambda node: node.python(session_id, code, timeout_s)
        )

    async def egress(self, principal: Principal, session_id: str) -> dict[str, Any]:
        """The session's allow-list and the connections its egress proxy made or refused, newest last."""
        return await self._on_node(principal, session_id, lambda node: node.egress(session_id))

    async def restart_python(self, principal: Principal, session_id: str) -> None:
        """Give the session a fresh kernel."""
        await self._on_node(principal, session_id, lambda node: node.restart_python(session_id))

    async def write_file(self, principal: Principal, session_id: str, path: str, data: bytes) -> FileEntry:
        """Write a file into the session's workspace."""
        return await self._on_node(
            principal, session_id, lambda node: node.write_file(session_id, path, data)
        )

    async def read_file(self, principal: Principal, session_id: str, path: str) -> bytes:
        """Read a file of the session's workspace."""
        return await self._on_node(principal, session_id, lambda node: node.read_file(session_id, path))

    async def list_files(self, principal: Principal, session_id: str, path: str) -> builtins.list[FileEntry]:
        """List a directory of the session's workspace."""
        return await self._on_node(principal, session_id, lambda node: node.list_files(session_id, path))

    async def _record(self, principal: Principal, session_id: str) -> Any:
        record = await asyncio.to_thread(self.store.get, principal.namespace, session_id)
        if record.status not in _LIVE:
            raise NotFound(f"session {session_id} is {record.status}", session_id=session_id)
        return record

    def _view(self, record: Any) -> dict[str, Any]:
        return session_view(record)  # pause: the mixin's answers

    def _forget(self, principal: Principal, session_id: str) -> None:
        self.verified.forget(principal.namespace, session_id)
        self.uses.forget(principal.namespace, session_id)

    async def verified_view(self, principal: Principal, session_id: str) -> dict[str, Any]:
        """The caller's session as a registry read verified it at most seconds ago: for its id, node and image,
        which never change (its status and last use may have moved since; `get` reads them fresh)."""
        return session_view(await self._verified_record(principal, session_id))

    async def _verified_record(self, principal: Principal, session_id: str) -> Any:
        """The session's record as a registry read verified it, at most a few seconds ago."""
        record = self.verified.get(principal.namespace, session_id)
        if record is None:
            record = await self._record(principal, session_id)
            self.verified.put(principal.namespace, session_id, record)
        return record

    async def _node_for(self, principal: Principal, session_id: str) -> tuple[Any, NodeClient]:
        """The session's record and its node's client; SessionLost (410) when it died with its node."""
        try:
            record = await self._verified_record(principal, session_id)
        except NotFound:
            record = await asyncio.to_thread(self.store.get, principal.namespace, session_id)
            if record.status == "lost":  # told apart from a session that never was, or was deleted
                raise _lost(session_id, record.node_id) from None
            raise
        record = await self._resumed_if_paused(principal, record)  # pause: auto-resume
        try:
            return record, await self.nodes.node(record.node_id)
        except Unavailable:
            self._forget(principal, session_id)
            await asyncio.to_thread(self.store.update_status, principal.namespace, session_id, "lost")
            raise _lost(session_id, record.node_id) from None

    async def _on_node(
        self, principal: Principal, session_id: str, call: Callable[[NodeClient], Awaitable[Result]]
    ) -> Result:
        """`call` on the node that owns the caller's session; a vanished sandbox or node marks the session lost."""
        _, node = await self._node_for(principal, session_id)
        try:
            result = await call(node)
        except SandboxNotFound:
            self._forget(principal, session_id)
            await self._record(principal, session_id)  # deleted or expired meanwhile: NotFound, as it is
            await asyncio.to_thread(self.store.update_status, principal.namespace, session_id, "lost")
            raise SandboxGone(
                f"the sandbox of session {session_id} no longer exists", session_id=session_id
            ) from None
        except Unavailable as exc:
            # The node died under this call (503, as the call itself failed); the next call answers 410.
            if exc.details.get("node_id"):
                self._forget(principal, session_id)
                await asyncio.to_thread(self.store.update_status, principal.namespace, session_id, "lost")
            raise
        self.uses.used(principal.namespace, session_id)
        return result

    def _limits(self, body: SessionCreate) -> Limits:
        given = body.limits.model_dump(exclude_none=True) if body.limits else {}
        merged = {**asdict(self.default_limits), **given}
        return Limits(**merged)
