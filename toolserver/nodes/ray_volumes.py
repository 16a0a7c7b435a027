"""The volume calls of `RayNodeClient`: one remote call of the node actor per method."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from sandbox.volumes import NodeVolumes, VolumeInfo

__all__ = ["RayVolumeCalls"]


class RayVolumeCalls(NodeVolumes):
    """Mixed into `RayNodeClient`, which gives the actor handle and the call that maps a lost actor."""

    _handle: Any

    async def _call(self, ref: Awaitable[Any]) -> Any:
        raise NotImplementedError

    async def volume_create(self, volume_id: str, size_mb: int) -> VolumeInfo:
        return await self._call(self._handle.volume_create.remote(volume_id, size_mb))  # type: ignore[no-any-return]

    async def volume_info(self, volume_id: str) -> VolumeInfo:
        return await self._call(self._handle.volume_info.remote(volume_id))  # type: ignore[no-any-return]

    async def volume_delete(self, volume_id: str) -> None:
        await self._call(self._handle.volume_delete.remote(volume_id))
