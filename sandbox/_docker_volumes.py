"""The Docker backend's volumes: binding them into a new container, and the node's volume operations."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from foundation.errors import Conflict
from sandbox.base import Sandbox, VolumeMount
from sandbox.volumes import VolumeHost, VolumeInfo

__all__ = ["DockerVolumes"]


class DockerVolumes:
    """Mixed into `DockerBackend`, which gives `volumes` (the node's VolumeHost) and its live sandboxes."""

    volumes: VolumeHost
    _sandboxes: Mapping[str, Sandbox]
    _reserved: dict[str, tuple[VolumeMount, ...]]  # mounts of sessions being created, not yet in _sandboxes

    def volume_binds(self, session_id: str, mounts: tuple[VolumeMount, ...]) -> dict[str, dict[str, str]]:
        """The container's binds for `mounts`; Conflict when another session holds one of them read-write.

        A volume is either read-write in one session or read-only in any number of them.
        """
        if not hasattr(self, "_reserved"):
            self._reserved = {}
        binds: dict[str, dict[str, str]] = {}
        for mount in mounts:
            for other in self._users(mount.volume_id, besides=session_id):
                if not other.read_only or not mount.read_only:
                    raise Conflict(
                        f"volume {mount.volume_id} is mounted by another session"
                        f" {'read-write' if not other.read_only else 'read-only'}; a volume is read-write in one"
                        " session or read-only in many",
                        volume_id=mount.volume_id,
                    )
            binds[self.volumes.source(mount.volume_id)] = {
                "bind": mount.path,
                "mode": "ro" if mount.read_only else "rw",
            }
        if mounts:  # before any await: a delete or another create sees them from here on
            self._reserved[session_id] = mounts
        return binds

    def release_volumes(self, session_id: str) -> None:
        """Forget a create's reservation (it failed, or the sandbox now holds its mounts)."""
        getattr(self, "_reserved", {}).pop(session_id, None)

    async def volume_create(self, volume_id: str, size_mb: int) -> VolumeInfo:
        """Make an empty volume of `size_mb` on this node."""
        return await asyncio.to_thread(self.volumes.create, volume_id, size_mb)

    async def volume_info(self, volume_id: str) -> VolumeInfo:
        """The volume's size cap, use, and whether it is mounted."""
        return await asyncio.to_thread(self.volumes.info, volume_id)

    async def volume_delete(self, volume_id: str) -> None:
        """Delete the volume; Conflict (409) while a session mounts it."""
        users = self._users(volume_id)
        if users:
            raise Conflict(
                f"volume {volume_id} is mounted by {len(users)} session(s); delete or wait for them first",
                volume_id=volume_id,
            )
        await asyncio.to_thread(self.volumes.remove, volume_id)

    def _users(self, volume_id: str, besides: str = "") -> list[VolumeMount]:
        held = {sid: sandbox.info.volumes for sid, sandbox in self._sandboxes.items()}
        held.update(getattr(self, "_reserved", {}))
        return [
            m for sid, mounts in held.items() if sid != besides for m in mounts if m.volume_id == volume_id
        ]
