"""A Docker sandbox's side of a memory checkpoint: letting go of its host sockets, and reconnecting after.

gVisor saves no socket bound or connected on the host. Before the checkpoint the guest daemon closes its
listening socket (refused while other connections are open) and the host closes the kernel's relays; after the
restore the daemon is woken to listen again in its directory, which is open for that moment only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sandbox import _hostdirs
from sandbox._guest_client import GuestClient
from sandbox.config import SandboxConfig
from sandbox.errors import SandboxUnavailable

__all__ = ["QUIESCE_TIMEOUT_S", "RestorableSandbox"]

QUIESCE_TIMEOUT_S = 10.0


class RestorableSandbox:
    """Mixed into `DockerSandbox`, which gives the guest client, the private directory and the kernel."""

    host_dir: str
    _guest: GuestClient
    _config: SandboxConfig

    async def close(self) -> None:
        raise NotImplementedError

    async def _ensure_kernel(self) -> Any:
        raise NotImplementedError

    async def quiesce(self) -> None:
        """Drop every socket this sandbox holds on the host, for a memory checkpoint (gVisor saves none).

        The daemon closes its listening socket until `reconnect_after_restore` (SessionBusy, and nothing
        changes, while other connections to it are open); then the kernel's channels go with its relays (the
        kernel keeps retrying them).
        """
        await self._guest.call({"op": "quiesce"}, timeout_s=QUIESCE_TIMEOUT_S)  # SessionBusy: nothing changed
        await self.close()

    async def reconnect_after_restore(self, wake_daemon: Callable[[], Awaitable[None]]) -> None:
        """After a restore: let the daemon bind again (`wake_daemon` signals it), then connect as at the start.

        User code already runs here, so the directory is frozen again before the socket is trusted, and a
        socket that is not one (a link to a host path, say) is refused.
        """
        await asyncio.to_thread(_hostdirs.reopen_guest_dir, self.host_dir)
        deadline = time.monotonic() + self._config.ready_timeout_s
        try:
            await wake_daemon()
            while not await asyncio.to_thread(_hostdirs.guest_socket_bound, self.host_dir):
                if time.monotonic() > deadline:
                    raise SandboxUnavailable("the restored guest daemon did not listen again")
                await asyncio.sleep(0.02)
        finally:
            await asyncio.to_thread(_hostdirs.freeze_guest_dir, self.host_dir)
        # What the sandbox made there while it was open goes; anything that will not go fails the restore.
        if not await asyncio.to_thread(_hostdirs.clean_guest_dir, self.host_dir):
            raise SandboxUnavailable("the restored sandbox left entries in its daemon's directory")
        if not await asyncio.to_thread(_hostdirs.guest_socket_bound, self.host_dir):
            raise SandboxUnavailable("the restored sandbox replaced its daemon's socket")
        await self._guest.wait_ready(max(0.5, deadline - time.monotonic()))
        await self._ensure_kernel()
