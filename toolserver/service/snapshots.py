"""Snapshots and forks for tenants: a session's files kept on its node, and new sessions started from them.

A snapshot stays on the node that made it. A fork starts there; when that node is gone the fork is refused
with a clear error (snapshots are not copied between nodes).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from dataclasses import asdict
from typing import Any

from foundation.errors import QuotaExceeded, Unavailable, UserError
from registry import SessionStore
from registry.snapshots import SnapshotStore
from sandbox.base import Limits, SandboxInfo, SandboxSpec
from toolserver.api.requests import EgressNetwork, SessionCreate
from toolserver.nodes.base import NodeDirectory
from toolserver.service.principal import Principal

__all__ = ["MAX_FORKS", "SessionSnapshots", "snapshot_view"]

MAX_FORKS = 10
"""The most sessions one `POST /v1/sessions {"from_snapshot", "count"}` starts."""


def snapshot_view(record: Any) -> dict[str, Any]:
    """A snapshot record as the API shows it."""
    return {
        "snapshot_id": record.id,
        "session_id": record.session_id,
        "node_id": record.node_id,
        "size_bytes": record.size_bytes,
        "memory": record.memory,
        "created_at": record.created_at,
    }


class SessionSnapshots:
    """Mixed into `SessionService`, which gives the stores, the nodes, its caps and its record checks."""

    store: SessionStore
    nodes: NodeDirectory
    max_per_namespace: int
    snapshots: SnapshotStore | None = None
    max_snapshot_bytes: int = 0
    max_snapshots: int = 0
    _creating: Counter[str]

    async def _record(self, principal: Principal, session_id: str) -> Any:
        raise NotImplementedError

    async def _live(self, namespace: str) -> list[Any]:
        raise NotImplementedError

    def _over_quota(self) -> QuotaExceeded:
        raise NotImplementedError

    def _view(self, record: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _snapshot_store(self) -> SnapshotStore:
        if self.snapshots is None:
            raise Unavailable("this server keeps no snapshots")
        return self.snapshots

    def _snapshot_turn(self, namespace: str) -> asyncio.Lock:
        """One snapshot of a namespace at a time here: each checks the cap against the ones before it."""
        turns: dict[str, asyncio.Lock] = self.__dict__.setdefault("_snapshot_turns", {})  # snapshot-turn
        return turns.setdefault(namespace, asyncio.Lock())

    async def snapshot(self, principal: Principal, session_id: str) -> dict[str, Any]:
        """Keep the caller's session's files as a new snapshot, within the namespace's total size cap."""
        async with self._snapshot_turn(principal.namespace):  # snapshot-turn
            return await self._snapshot(principal, session_id)

    async def _snapshot(self, principal: Principal, session_id: str) -> dict[str, Any]:
        store = self._snapshot_store()
        record = await self._record(principal, session_id)
        if self.max_snapshots and len(await asyncio.to_thread(store.list, principal.namespace)) >= (
            self.max_snapshots
        ):
            raise QuotaExceeded(
                f"the namespace has {self.max_snapshots} snapshots, its cap (TOOLSERVER_MAX_SNAPSHOTS_PER_NAMESPACE);"
                " delete snapshots first",
                limit=self.max_snapshots,
                setting="TOOLSERVER_MAX_SNAPSHOTS_PER_NAMESPACE",
            )
        node = await self.nodes.node(record.node_id)
        snapshot_id = "snap_" + secrets.token_hex(8)
        made = await node.snapshot_create(session_id, snapshot_id)
        size = int(made["size_bytes"])
        if self.max_snapshot_bytes:
            held = sum(s.size_bytes for s in await asyncio.to_thread(store.list, principal.namespace))
            if held + size > self.max_snapshot_bytes:
                await node.snapshot_delete(snapshot_id)
                raise QuotaExceeded(
                    f"the namespace's snapshots would pass {self.max_snapshot_bytes // (1024 * 1024)} MiB, its cap"
                    " (TOOLSERVER_MAX_SNAPSHOT_MB_PER_NAMESPACE); delete snapshots first",
                    limit=self.max_snapshot_bytes,
                    setting="TOOLSERVER_MAX_SNAPSHOT_MB_PER_NAMESPACE",
                )
        saved = await asyncio.to_thread(
            store.create,
            principal.namespace,
            id=snapshot_id,
            session_id=session_id,
            node_id=record.node_id,
            size_bytes=size,
            memory=bool(made.get("memory")),
            image=record.image,
            limits=dict(record.limits or {}),
            runtime=record.runtime,
        )
        return snapshot_view(saved)

    async def list_snapshots(self, principal: Principal) -> list[dict[str, Any]]:
        """The caller's snapshots, oldest first."""
        store = self._snapshot_store()
        return [snapshot_view(r) for r in await asyncio.to_thread(store.list, principal.namespace)]

    async def delete_snapshot(self, principal: Principal, snapshot_id: str) -> None:
        """Delete the caller's snapshot and its files (when its node is still there)."""
        store = self._snapshot_store()
        record = await asyncio.to_thread(store.get, principal.namespace, snapshot_id)
        try:
            await (await self.nodes.node(record.node_id)).snapshot_delete(snapshot_id)
        except Unavailable:
            pass  # its node is gone, and its files with it
        await asyncio.to_thread(store.delete, principal.namespace, snapshot_id)

    async def _forks(self, principal: Principal, body: SessionCreate) -> dict[str, Any]:
        """`count` new sessions with the snapshot's files, on its node: the first one's view, with `forks`."""
        store = self._snapshot_store()
        namespace = principal.namespace
        snap = await asyncio.to_thread(store.get, namespace, str(body.from_snapshot))
        if body.volumes:
            raise UserError("a session started from a snapshot mounts no volumes", field="volumes")
        count = body.count
        if self.max_per_namespace and (
            len(await self._live(namespace)) + self._creating[namespace] + count > self.max_per_namespace
        ):
            raise self._over_quota()
        self._creating[namespace] += count  # no await since the check: the next create sees these
        try:
            return await self._start_forks(principal, body, snap)
        finally:
            self._creating[namespace] -= count

    async def _start_forks(self, principal: Principal, body: SessionCreate, snap: Any) -> dict[str, Any]:
        """Start and record the forks (the caller holds their places in the namespace's cap)."""
        namespace = principal.namespace
        try:
            node = await self.nodes.node(snap.node_id)
        except Unavailable:
            raise Unavailable(
                f"snapshot {snap.id} is kept on node {snap.node_id[:12]}, which is not available; snapshots are"
                " not copied between nodes",
                snapshot_id=snap.id,
                node_id=snap.node_id,
            ) from None
        egress = body.network if isinstance(body.network, EgressNetwork) else None
        given = body.limits.model_dump(exclude_none=True) if body.limits else {}
        spec = SandboxSpec(
            image=body.image or snap.image or None,
            limits=Limits(**{**(snap.limits or {}), **given}),
            network="egress" if egress is not None else body.network,  # type: ignore[arg-type]
            owner=namespace,
            runtime=body.runtime or snap.runtime,
            egress=tuple(egress.egress) if egress is not None else (),
        )
        ttl_s = body.ttl_s or getattr(self, "default_ttl_s", None)
        made = await asyncio.gather(
            *(node.create_from_snapshot(snap.id, spec, ttl_s) for _ in range(body.count)),
            return_exceptions=True,
        )
        failed = [m for m in made if isinstance(m, BaseException)]
        started = [m for m in made if isinstance(m, SandboxInfo)]
        if failed:
            for info in started:
                await node.destroy(info.session_id)
            raise failed[0]
        views = [
            self._view(await asyncio.to_thread(self._record_fork, namespace, info, ttl_s)) for info in started
        ]
        return {**views[0], "from_snapshot": snap.id, "forks": views}

    def _record_fork(self, namespace: str, info: SandboxInfo, ttl_s: float | None) -> Any:
        return self.store.create(
            namespace,
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
        )
