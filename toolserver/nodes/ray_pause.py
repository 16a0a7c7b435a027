"""The pause and snapshot calls of `RayNodeClient`: one remote call of the node actor per method."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from sandbox.base import SandboxInfo, SandboxSpec
from sandbox.checkpoints import NodePausing
from sandbox.snapshots import NodeSnapshots

__all__ = ["RayPauseCalls"]


class RayPauseCalls(NodePausing, NodeSnapshots):
    """Mixed into `RayNodeClient`, which gives the actor handle and the call that maps a lost actor."""

    _handle: Any

    async def _call(self, ref: Awaitable[Any]) -> Any:
        raise NotImplementedError

    async def pause(self, session_id: str) -> dict[str, Any]:
        return await self._call(self._handle.pause.remote(session_id))  # type: ignore[no-any-return]

    async def resume(self, session_id: str) -> dict[str, Any]:
        return await self._call(self._handle.resume.remote(session_id))  # type: ignore[no-any-return]

    async def snapshot_create(self, session_id: str, snapshot_id: str) -> dict[str, Any]:
        return await self._call(self._handle.snapshot_create.remote(session_id, snapshot_id))  # type: ignore[no-any-return]

    async def snapshot_delete(self, snapshot_id: str) -> None:
        await self._call(self._handle.snapshot_delete.remote(snapshot_id))

    async def create_from_snapshot(
        self, snapshot_id: str, spec: SandboxSpec, ttl_s: float | None = None
    ) -> SandboxInfo:
        return await self._call(self._handle.create_from_snapshot.remote(snapshot_id, spec, ttl_s))  # type: ignore[no-any-return]
