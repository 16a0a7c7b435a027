"""Volumes for tenants: a registry record plus a filesystem on one node; sessions that mount them go there."""

from __future__ import annotations

import asyncio
import builtins
import secrets
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from foundation.errors import Conflict, QuotaExceeded, Unavailable, ValidationFailed
from registry import VolumeStore
from sandbox.base import VolumeMount
from sandbox.errors import LimitsExceeded, SandboxError
from toolserver.api.requests import VolumeCreate, VolumeUse
from toolserver.nodes.base import NodeDirectory
from toolserver.service.principal import Principal

__all__ = ["VolumeService", "volume_view"]


def volume_view(record: Any, info: Any = None) -> dict[str, Any]:
    """A volume record as the API shows it, with its node's figures when they were asked."""
    view = {
        "id": record.id,
        "name": record.name,
        "size_mb": record.size_mb,
        "node_id": record.node_id,
        "created_at": record.created_at,
    }
    if info is not None:
        view.update(used_bytes=info.used_bytes, mounted=info.mounted)
    return view


class VolumeService:
    """A namespace's volumes: made on the least loaded node, deleted only while no session mounts them."""

    def __init__(self, store: VolumeStore, nodes: NodeDirectory, max_mb: int, max_per_namespace: int) -> None:
        self.store = store
        self.nodes = nodes
        self.max_mb = max_mb
        self.max_per_namespace = max_per_namespace

    async def create(self, principal: Principal, body: VolumeCreate) -> dict[str, Any]:
        """A new, empty volume of the namespace."""
        if body.size_mb > self.max_mb:
            raise LimitsExceeded(
                f"size_mb is over this server's largest volume, {self.max_mb} MiB (TOOLSERVER_MAX_VOLUME_MB)",
                field="size_mb",
                setting="TOOLSERVER_MAX_VOLUME_MB",
            )
        if await asyncio.to_thread(self.store.count, principal.namespace) >= self.max_per_namespace:
            raise self._over_quota()
        volume_id = f"vol_{secrets.token_hex(8)}"
        node_id = await self.nodes.choose()
        node = await self.nodes.node(node_id)
        info = await node.volume_create(volume_id, body.size_mb)
        try:
            record = await asyncio.to_thread(
                self.store.create,
                principal.namespace,
                volume_id=volume_id,
                name=body.name,
                size_mb=body.size_mb,
                node_id=node_id,
            )
        except BaseException:
            await node.volume_delete(volume_id)
            raise
        # Creates on other replicas (or concurrent ones here) may have raced past the cap: the newest give way.
        mine = sorted(
            await asyncio.to_thread(self.store.list, principal.namespace), key=lambda r: (r.created_at, r.id)
        )
        if [r.id for r in mine].index(volume_id) >= self.max_per_namespace:
            await self.delete(principal, body.name)
            raise self._over_quota()
        return volume_view(record, info)

    def _over_quota(self) -> QuotaExceeded:
        return QuotaExceeded(
            f"the namespace has {self.max_per_namespace} volumes, its cap"
            " (TOOLSERVER_MAX_VOLUMES_PER_NAMESPACE); delete one first",
            limit=self.max_per_namespace,
        )

    async def list(self, principal: Principal) -> builtins.list[dict[str, Any]]:
        """The namespace's volumes (their records: no node is asked)."""
        return [volume_view(r) for r in await asyncio.to_thread(self.store.list, principal.namespace)]

    async def get(self, principal: Principal, name: str) -> dict[str, Any]:
        """One volume, with its use as its node reports it (left out when no node has it)."""
        record = await self._located(
            principal, await asyncio.to_thread(self.store.get, principal.namespace, name)
        )
        try:
            info = await (await self.nodes.node(record.node_id)).volume_info(record.id)
        except (Unavailable, SandboxError):
            info = None
        return volume_view(record, info)

    async def delete(self, principal: Principal, name: str) -> None:
        """Delete the volume and its data; Conflict (409) while a session mounts it."""
        record = await self._located(
            principal, await asyncio.to_thread(self.store.get, principal.namespace, name)
        )
        try:
            node = await self.nodes.node(record.node_id)
        except Unavailable:
            raise Unavailable(
                f"volume {name!r} is on node {record.node_id[:12]}, which does not answer; its data is kept until"
                " the node is back, retry then",
                node_id=record.node_id,
            ) from None
        await node.volume_delete(record.id)
        await asyncio.to_thread(self.store.delete, principal.namespace, name)

    async def _located(self, principal: Principal, record: Any) -> Any:
        """The record, moved to the node that holds the volume now when its own node is gone.

        A restarted one-machine server is a new Ray node that mounts the same images again; nodes of one
        machine share them. A volume no living node holds keeps its record (its node may come back).
        """
        living = await self.nodes.node_ids()
        if record.node_id in living:
            return record
        for node_id in living:
            try:
                await (await self.nodes.node(node_id)).volume_info(record.id)
            except (Unavailable, SandboxError):
                continue
            return await asyncio.to_thread(self.store.move, principal.namespace, record.name, node_id)
        return record

    async def mounts(
        self, principal: Principal, uses: Sequence[VolumeUse]
    ) -> tuple[str | None, tuple[VolumeMount, ...], builtins.list[dict[str, Any]]]:
        """Where a session mounting `uses` must live, the mounts its node binds, and what its record keeps."""
        if not uses:
            return None, (), []
        records = []
        for index, use in enumerate(uses):
            try:
                record = await asyncio.to_thread(self.store.get, principal.namespace, use.name)
                records.append(await self._located(principal, record))
            except Exception as exc:
                if getattr(exc, "status", None) == 404:
                    raise ValidationFailed(
                        f"no volume {use.name!r}", field=f"volumes[{index}].name"
                    ) from None
                raise
        nodes = {r.node_id for r in records}
        if len(nodes) > 1:
            raise Conflict("the volumes are on different nodes; a session can mount volumes of one node only")
        mounts = tuple(VolumeMount(r.id, u.path, u.read_only) for r, u in zip(records, uses, strict=True))
        kept = [{"name": u.name, **asdict(m)} for u, m in zip(uses, mounts, strict=True)]
        return nodes.pop(), mounts, kept
