"""The Docker backend's pause and resume: archive the workspace, checkpoint under runsc, a new container after.

runc: the workspace and /tmp are archived, then the container is removed; resuming makes a new hardened
container for the same session (same image, limits, network, volumes) and unpacks the archive into it, with a
fresh shell and kernel. runsc: the same archive; then the sandbox lets go of every socket it holds on the host
(gVisor saves none: the kernel's relays close, the guest daemon stops listening) and `docker checkpoint
create` stops the container with its memory; resuming starts it from the checkpoint (shell, kernel and
background processes come back, and the daemon listens again on SIGUSR2), and falls back to the archive when
the checkpoint cannot be made or restored, saying so in what it answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import replace
from typing import Any

from sandbox import _hostdirs
from sandbox._container import container_name
from sandbox._meta import write_meta
from sandbox._runsc_state import clear_stale_state, is_stale_state_error
from sandbox.base import Sandbox, SandboxInfo, SandboxSpec, VolumeMount
from sandbox.checkpoints import (
    ARCHIVE_FILE,
    archive_workspace,
    checkpoint_bytes,
    checkpoint_container,
    delete_checkpoint,
    restore_workspace,
    start_from_checkpoint,
)
from sandbox.config import SandboxConfig
from sandbox.errors import SessionBusy

__all__ = ["DockerPause"]

log = logging.getLogger(__name__)


# After the daemon's and the relays' sockets close, the time for the sandbox's ends of them to close too (the
# daemon's connection thread, the kernel's ZeroMQ I/O thread); gVisor refuses to save any that is still open.
QUIESCE_SETTLE_S = 0.3


class DockerPause:
    """Mixed into `DockerBackend`, which gives the engine, the egress gate, its sandboxes and create/remove."""

    config: SandboxConfig
    client: Any
    egress: Any
    _sandboxes: dict[str, Any]
    _reserved: dict[str, tuple[VolumeMount, ...]]

    async def create(self, spec: SandboxSpec, session_id: str | None = None, *, pooled: bool = False) -> Any:
        raise NotImplementedError

    async def _remove(self, container: str, host_dir: str) -> None:
        raise NotImplementedError

    async def destroy(self, session_id: str) -> None:
        raise NotImplementedError

    async def pause_sandbox(
        self, session_id: str, directory: str, cap_bytes: int
    ) -> tuple[SandboxInfo, dict[str, Any]]:
        """Keep the session's files (and memory under runsc) in `directory`, then stop its container.

        Returns what the session was and what was kept; PauseTooLarge leaves the sandbox running.
        """
        sandbox = self._sandboxes.get(session_id)
        if sandbox is None:
            from sandbox.errors import SandboxNotFound

            raise SandboxNotFound(f"no sandbox for session {session_id}", session_id=session_id)
        info: SandboxInfo = sandbox.info
        archive = os.path.join(directory, ARCHIVE_FILE)
        size = await asyncio.to_thread(
            archive_workspace, self.client, info.container_id, archive, info.volumes, cap_bytes
        )
        kept: dict[str, Any] = {"filesystem": True, "memory": False, "archive_bytes": size}
        if info.runtime == "runsc" and not _hostdirs.shared_dir_contained(sandbox.host_dir):
            kept["note"] = (
                "memory pauses need a server running as root (the sandbox's /sbx on a small tmpfs of its own):"
                " only the filesystem was kept"
            )
        elif info.runtime == "runsc":
            await self._checkpoint(sandbox, size, cap_bytes, kept)
        else:
            kept["note"] = (
                "runc keeps the filesystem only: the shell, kernel and processes start fresh on resume"
            )
        self._sandboxes.pop(session_id, None)
        if info.volumes:  # still the session's while it is paused: no other session takes them read-write
            self._hold_volumes(session_id, info.volumes)
        await sandbox.close()
        await self.egress.close(session_id)
        if kept["memory"]:
            self._paused_types()[session_id] = type(sandbox), sandbox.host_dir
        else:
            await self._remove(container_name(session_id), sandbox.host_dir)
        return info, kept

    async def _checkpoint(self, sandbox: Any, size: int, cap_bytes: int, kept: dict[str, Any]) -> None:
        """Checkpoint a runsc sandbox's memory into `kept` (or say why not); SessionBusy leaves it running."""
        info: SandboxInfo = sandbox.info
        session_id = info.session_id
        try:
            await sandbox.quiesce()
        except SessionBusy:
            raise  # connections are open: the pause is refused and the sandbox runs on as it was
        except Exception as exc:
            log.warning("session %s: its sandbox could not be quiesced: %s", session_id, exc)
            kept["note"] = (
                "the sandbox could not be made ready for a memory checkpoint; only the filesystem was kept"
            )
            return
        try:
            await asyncio.sleep(QUIESCE_SETTLE_S)
            await asyncio.to_thread(checkpoint_container, self.client, info.container_id)
            held = await asyncio.to_thread(checkpoint_bytes, self.client, info.container_id)
            if held is not None and size + held > cap_bytes:
                kept["note"] = (
                    f"the memory checkpoint ({held >> 20} MiB) and the files are over the cap of what a"
                    f" pause keeps ({cap_bytes >> 20} MiB, TOOLSERVER_MAX_PAUSE_ARCHIVE_MB); only the"
                    " filesystem was kept"
                )
            else:
                kept["memory"] = True
                if held is not None:
                    kept["memory_bytes"] = held
        except Exception as exc:
            log.warning("session %s: the memory checkpoint failed: %s", session_id, exc)
            kept["note"] = (
                "the memory checkpoint failed (the node's log says why); only the filesystem was kept"
            )

    async def resume_sandbox(self, info: SandboxInfo, directory: str) -> tuple[Sandbox, dict[str, Any]]:
        """The session's sandbox again: from its checkpoint where there is one, else new with its files."""
        note = ""
        held = self._paused_types().pop(info.session_id, None)
        if held is not None:
            sandbox_type, host_dir = held
            try:
                sandbox = await self._start_checkpointed(sandbox_type, info, host_dir)
                await self._drop_restored_checkpoint(info)
                return sandbox, {"kernel": "restored", "memory": True}
            except Exception as exc:
                log.warning("session %s: restoring its checkpoint failed: %s", info.session_id, exc)
                note = "restoring the memory checkpoint failed (the node's log says why); the files were restored"
                await self.egress.close(info.session_id)
                await self._remove(container_name(info.session_id), host_dir)
        self._release_held(info.session_id)
        spec = SandboxSpec(
            image=info.image,
            limits=info.limits,
            network=info.network,
            owner=info.owner,
            runtime=info.runtime,
            egress=info.egress,
            volumes=info.volumes,
        )
        sandbox = await self.create(spec, info.session_id)
        try:
            await asyncio.to_thread(
                restore_workspace,
                self.client,
                sandbox.info.container_id,
                os.path.join(directory, ARCHIVE_FILE),
            )
        except BaseException:
            await self.destroy(info.session_id)
            raise
        sandbox._info = replace(sandbox.info, created_at=info.created_at)
        await asyncio.to_thread(write_meta, sandbox.host_dir, sandbox.info)
        resumed: dict[str, Any] = {"kernel": "fresh", "memory": False}
        if note:
            resumed["note"] = note
        return sandbox, resumed

    async def archive_sandbox(self, session_id: str, dest: str, cap_bytes: int) -> int:
        """Archive a running sandbox's /workspace and /tmp into `dest` (a snapshot); its size."""
        info: SandboxInfo = (await self.get(session_id)).info
        return await asyncio.to_thread(
            archive_workspace, self.client, info.container_id, dest, info.volumes, cap_bytes
        )

    async def restore_sandbox(self, session_id: str, source: str) -> None:
        """Unpack an archive into a running sandbox (a fork's files)."""
        info: SandboxInfo = (await self.get(session_id)).info
        await asyncio.to_thread(restore_workspace, self.client, info.container_id, source)

    async def get(self, session_id: str) -> Any:
        raise NotImplementedError

    async def drop_paused(self, session_id: str) -> None:
        """Forget a paused session's stopped container (if any) and the volumes it held."""
        held = self._paused_types().pop(session_id, None)
        self._release_held(session_id)
        if held is not None:
            await self._remove(container_name(session_id), held[1])

    async def _start_checkpointed(self, sandbox_type: type, info: SandboxInfo, host_dir: str) -> Sandbox:
        self._release_held(info.session_id)
        if info.network == "egress":
            await self.egress.open(info, _hostdirs.shared_dir(host_dir))
        try:
            await asyncio.to_thread(start_from_checkpoint, self.client, info.container_id)
        except Exception as exc:
            if not is_stale_state_error(exc) or not await asyncio.to_thread(self._clear_runsc_state, info):
                raise
            await asyncio.to_thread(start_from_checkpoint, self.client, info.container_id)
        sandbox = sandbox_type(info, host_dir, self.config)
        await sandbox.reconnect_after_restore(lambda: self._signal(info.container_id, "SIGUSR2"))
        self._sandboxes[info.session_id] = sandbox
        return sandbox  # type: ignore[no-any-return]

    async def _drop_restored_checkpoint(self, info: SandboxInfo) -> None:
        """A restored container's checkpoint is not kept on the engine's disk while it runs."""
        try:
            await asyncio.to_thread(delete_checkpoint, self.client, info.container_id)
        except Exception as exc:  # the session runs; the next pause replaces the checkpoint anyway
            log.warning("session %s: its restored checkpoint could not be deleted: %s", info.session_id, exc)

    def holds_checkpoint(self, session_id: str) -> bool:
        """Whether a paused session's stopped container with its memory checkpoint is kept here."""
        return session_id in self._paused_types()

    def _clear_runsc_state(self, info: SandboxInfo) -> bool:
        runtimes = self.client.info().get("Runtimes") or {}
        path = str((runtimes.get(info.runtime) or {}).get("path") or "")
        return clear_stale_state(path, info.container_id)

    async def _signal(self, container_id: str, name: str) -> None:
        await asyncio.to_thread(self.client.api.kill, container_id, name)

    def _paused_types(self) -> dict[str, tuple[type, str]]:
        if not hasattr(self, "_checkpointed"):
            self._checkpointed: dict[str, tuple[type, str]] = {}
        return self._checkpointed

    def _hold_volumes(self, session_id: str, mounts: tuple[VolumeMount, ...]) -> None:
        if not hasattr(self, "_reserved"):
            self._reserved = {}
        self._reserved[session_id] = mounts

    def _release_held(self, session_id: str) -> None:
        getattr(self, "_reserved", {}).pop(session_id, None)
