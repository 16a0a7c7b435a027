"""The node manager's volume operations: `NodeVolumes` over its backend's volumes."""

from __future__ import annotations

from typing import Any

from sandbox.errors import SandboxUnavailable
from sandbox.volumes import NodeVolumes, VolumeInfo

__all__ = ["ManagerVolumes"]


class ManagerVolumes(NodeVolumes):
    """Mixed into `SandboxManager`, which gives the backend."""

    backend: Any

    def _volumes(self) -> Any:
        if not hasattr(self.backend, "volume_create"):
            raise SandboxUnavailable(f"{type(self.backend).__name__} keeps no volumes")
        return self.backend

    async def volume_create(self, volume_id: str, size_mb: int) -> VolumeInfo:
        """Make an empty volume of `size_mb` on this node."""
        return await self._volumes().volume_create(volume_id, size_mb)  # type: ignore[no-any-return]

    async def volume_info(self, volume_id: str) -> VolumeInfo:
        """The volume's size cap, use, and whether it is mounted."""
        return await self._volumes().volume_info(volume_id)  # type: ignore[no-any-return]

    async def volume_delete(self, volume_id: str) -> None:
        """Delete the volume; Conflict (409) while a session mounts it."""
        await self._volumes().volume_delete(volume_id)
