"""Snapshots and forks on a node: a session's files archived under the node's snapshot directory, and new
sessions that start from them.

A snapshot is the same archive a pause keeps (/workspace and /tmp, volumes left out), taken while the session
runs (or copied from its pause when it is paused). Memory is not part of a snapshot: a checkpoint can only be
restored into the container it was taken of. Snapshots stay on the node that made them; a fork starts there.
"""

from __future__ import annotations

import abc
import asyncio
import os
import shutil
from typing import Any, Protocol

from sandbox.base import SandboxInfo, SandboxSpec
from sandbox.checkpoints import ARCHIVE_FILE, remove_state, state_dir
from sandbox.config import SandboxConfig
from sandbox.errors import SandboxNotFound, SandboxUnavailable

__all__ = ["ManagerSnapshots", "NodeSnapshots"]


class NodeSnapshots(Protocol):
    """A node's snapshots of its sessions, and forks from them."""

    @abc.abstractmethod
    async def snapshot_create(self, session_id: str, snapshot_id: str) -> dict[str, Any]:
        """Archive the session's files as `snapshot_id`: `{size_bytes, memory}`."""

    @abc.abstractmethod
    async def snapshot_delete(self, snapshot_id: str) -> None:
        """Delete the snapshot's files (a no-op when they are gone)."""

    @abc.abstractmethod
    async def create_from_snapshot(
        self, snapshot_id: str, spec: SandboxSpec, ttl_s: float | None = None
    ) -> SandboxInfo:
        """A new session for `spec` with the snapshot's files."""


class ManagerSnapshots(NodeSnapshots):
    """Mixed into `SandboxManager`, which gives the config, the backend, create, destroy and its paused sessions."""

    config: SandboxConfig
    backend: Any

    def is_paused(self, session_id: str) -> bool:
        raise NotImplementedError

    async def create(self, spec: SandboxSpec, ttl_s: float | None = None) -> SandboxInfo:
        raise NotImplementedError

    async def destroy(self, session_id: str) -> None:
        raise NotImplementedError

    async def _resume_if_paused(self, session_id: str) -> None:
        raise NotImplementedError

    def _archives(self) -> Any:
        if not hasattr(self.backend, "archive_sandbox"):
            raise SandboxUnavailable(f"{type(self.backend).__name__} keeps no snapshots")
        return self.backend

    def _snapshot_file(self, snapshot_id: str) -> str:
        return os.path.join(state_dir(self.config.snapshots_dir, snapshot_id), ARCHIVE_FILE)

    async def snapshot_create(self, session_id: str, snapshot_id: str) -> dict[str, Any]:
        """Archive the session's files as `snapshot_id` (a paused session's kept archive is copied)."""
        backend = self._archives()
        directory = await asyncio.to_thread(state_dir, self.config.snapshots_dir, snapshot_id, create=True)
        dest = os.path.join(directory, ARCHIVE_FILE)
        try:
            paused = os.path.join(state_dir(self.config.paused_dir, session_id), ARCHIVE_FILE)
            if self.is_paused(session_id) and os.path.exists(paused):
                await asyncio.to_thread(shutil.copyfile, paused, dest)
                size = os.path.getsize(dest)
            else:
                await self._resume_if_paused(session_id)
                size = await backend.archive_sandbox(
                    session_id, dest, self.config.max_pause_archive_mb * 1024 * 1024
                )
        except BaseException:
            await asyncio.to_thread(remove_state, directory)
            raise
        return {"size_bytes": size, "memory": False}

    async def snapshot_delete(self, snapshot_id: str) -> None:
        """Delete the snapshot's files."""
        await asyncio.to_thread(remove_state, state_dir(self.config.snapshots_dir, snapshot_id))

    async def create_from_snapshot(
        self, snapshot_id: str, spec: SandboxSpec, ttl_s: float | None = None
    ) -> SandboxInfo:
        """A new session for `spec` whose /workspace and /tmp are the snapshot's (a fresh shell and kernel)."""
        backend = self._archives()
        source = self._snapshot_file(snapshot_id)
        if not os.path.exists(source):
            raise SandboxNotFound(
                f"snapshot {snapshot_id} is not on node {self.config.node_id}", snapshot_id=snapshot_id
            )
        info = await self.create(spec, ttl_s)
        try:
            await backend.restore_sandbox(info.session_id, source)
        except BaseException:
            await self.destroy(info.session_id)
            raise
        return info
