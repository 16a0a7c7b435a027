"""One node's sandbox manager: the pool, the sessions on this engine, idle expiry, reconciliation."""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from foundation.errors import UserError
from sandbox._manager_pause import ManagerPause  # pause: the mixin
from sandbox._manager_ports import ManagerPorts
from sandbox._manager_processes import ManagerProcesses
from sandbox._manager_streams import ManagerStreams
from sandbox._manager_volumes import ManagerVolumes
from sandbox.base import (
    FileEntry,
    PythonResult,
    Sandbox,
    SandboxBackend,
    SandboxInfo,
    SandboxSpec,
    SessionOps,
    ShellResult,
)
from sandbox.config import SandboxConfig
from sandbox.egress.base import AddressCheck
from sandbox.egress.gate import DeniedCallback
from sandbox.errors import SandboxNotFound, SandboxUnavailable
from sandbox.pool import SandboxPool
from sandbox.snapshots import ManagerSnapshots  # snapshots: the mixin

__all__ = ["SandboxManager"]

log = logging.getLogger(__name__)

ExpiredCallback = Callable[[str], Awaitable[None]]
Result = TypeVar("Result")


class SandboxManager(
    SessionOps,
    ManagerProcesses,
    ManagerStreams,
    ManagerPorts,
    ManagerVolumes,
    ManagerPause,
    ManagerSnapshots,  # snapshots
):
    """Owns one Docker engine's sandboxes; every session operation on this node goes through it.

    Besides `SessionOps` it has the session lifecycle (create, get, destroy, sessions, stats): together they
    make it a `toolserver.nodes.NodeClient`, in-process or as the node's Ray actor.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        backend: SandboxBackend | None = None,
        on_expired: ExpiredCallback | None = None,
        egress_check: AddressCheck | None = None,
        on_egress_denied: DeniedCallback | None = None,
    ) -> None:
        """`egress_check` pins where the egress proxy may connect (sessions with network "egress" need one)."""
        self.config = config or SandboxConfig()
        if backend is None:
            from sandbox.docker import DockerBackend

            backend = DockerBackend(self.config, egress_check=egress_check, on_egress_denied=on_egress_denied)
        self.backend = backend
        self.pool = SandboxPool(self.backend, self.config)
        self._ttl: dict[str, float] = {}
        self._last_used: dict[str, float] = {}
        self._on_expired = on_expired
        self._reaper: asyncio.Task[None] | None = None
        self._engine_runtimes: builtins.list[str] | None = None

    async def start(
        self, live_sessions: dict[str, float] | None = None, adopt_from: set[str] | None = None
    ) -> dict[str, list[str]]:
        """Reconcile with the engine (live sessions re-attached, the rest removed), then fill the pool.

        `live_sessions` maps each session the registry still considers alive here to its TTL;
        `adopt_from` names vanished nodes whose containers on this engine this manager takes over.
        """
        live = live_sessions or {}
        checkpointed = await self._checkpointed_paused(live, adopt_from)  # pause: their containers stay
        report = await self.backend.reconcile(set(live), adopt_from, checkpointed)
        self._engine_runtimes = await self._ask_engine_runtimes()
        offered = self._engine_runtimes
        missing = [r for r in self.config.runtimes if offered is not None and r not in offered]
        if missing:
            log.warning(
                "node %s: the Docker engine lacks runtime(s) %s that sessions may ask for (it has %s);"
                " scripts/setup.sh registers runsc",
                self.config.node_id,
                ", ".join(missing),
                ", ".join(offered or []),
            )
        for session_id in report["attached"]:
            self._ttl[session_id] = live[session_id]
            self._last_used[session_id] = time.time()
        # pause: the paused sessions kept on disk
        report["paused"] = await self._find_paused(live, report["attached"], adopt_from)
        self.pool.start()
        self._reaper = asyncio.create_task(self._reap_forever(), name="sandbox-reaper")
        return report

    async def create(self, spec: SandboxSpec, ttl_s: float | None = None) -> SandboxInfo:
        """A sandbox for `spec` (from the pool when it matches) that expires after `ttl_s` idle seconds."""
        ttl = self.config.default_ttl_s if ttl_s is None else float(ttl_s)
        if not 0 < ttl <= self.config.max_ttl_s:
            raise UserError(f"ttl_s must be between 0 and {self.config.max_ttl_s:g}", field="ttl_s")
        sandbox = await self.pool.acquire(spec)
        self._ttl[sandbox.info.session_id] = ttl
        self._last_used[sandbox.info.session_id] = time.time()
        return sandbox.info

    async def get(self, session_id: str) -> SandboxInfo:
        """The session's sandbox; SandboxNotFound when this node has none."""
        return (await self._session(session_id)).info

    async def shell(self, session_id: str, command: str, timeout_s: float = 30.0) -> ShellResult:
        sandbox = await self._session(session_id)
        return await self._guarded(session_id, sandbox.shell(command, timeout_s))

    async def python(self, session_id: str, code: str, timeout_s: float = 30.0) -> PythonResult:
        sandbox = await self._session(session_id)
        return await self._guarded(session_id, sandbox.python(code, timeout_s))

    async def restart_python(self, session_id: str) -> None:
        sandbox = await self._session(session_id)
        await self._guarded(session_id, sandbox.restart_python())

    async def write_file(self, session_id: str, path: str, data: bytes) -> FileEntry:
        sandbox = await self._session(session_id)
        return await self._guarded(session_id, sandbox.write_file(path, data))

    async def read_file(self, session_id: str, path: str) -> bytes:
        sandbox = await self._session(session_id)
        return await self._guarded(session_id, sandbox.read_file(path))

    async def list_files(self, session_id: str, path: str = "") -> builtins.list[FileEntry]:
        sandbox = await self._session(session_id)
        return await self._guarded(session_id, sandbox.list_files(path))

    async def egress(self, session_id: str) -> dict[str, Any]:
        """The session's allow-list and the connections its egress proxy made or refused, newest last."""
        await self._session(session_id)
        return self.backend.egress_report(session_id)

    async def destroy(self, session_id: str) -> None:
        """Remove the session's sandbox (a no-op when it is gone)."""
        self._ttl.pop(session_id, None)
        self._last_used.pop(session_id, None)
        await self._drop_paused(session_id)  # pause: what a paused session kept goes too
        await self.backend.destroy(session_id)

    async def sessions(self) -> builtins.list[SandboxInfo]:
        """The sandboxes handed out to sessions (the pool's are not)."""
        pooled = self.pool.pooled_ids()
        return [info for info in await self.backend.list() if info.session_id not in pooled]

    async def stats(self) -> dict[str, Any]:
        """This node's counts, for health and placement."""
        return {
            "node_id": self.config.node_id,
            "sandboxes_running": len(await self.sessions()),
            "sandboxes_paused": self.paused_count(),  # pause: not among the running
            "pool_ready": self.pool.ready,
            "pool_size": self.pool.size,
            "runtimes": await self.runtimes(),
            "egress": self.backend.egress_totals(),
        }

    async def runtimes(self) -> dict[str, Any]:
        """The default runtime, the allowed ones, the engine's own (asked at start) and the warm pool of each."""
        if self._engine_runtimes is None:
            self._engine_runtimes = await self._ask_engine_runtimes()
        return {
            "default": self.config.runtime,
            "allowed": builtins.list(self.config.runtimes),
            "engine": self._engine_runtimes,
            "pool_ready": self.pool.ready_by_runtime(),
        }

    async def _ask_engine_runtimes(self) -> builtins.list[str] | None:
        engine = getattr(self.backend, "engine", None)
        if engine is None:  # a backend without an engine (the fake)
            return None
        try:
            return builtins.list(await asyncio.to_thread(engine.runtimes))
        except Exception:
            return None

    async def shutdown(self) -> None:
        """Remove everything this manager started."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        await self.pool.close()
        await self.backend.close()

    async def expire_idle(self, now: float | None = None) -> builtins.list[str]:
        """Destroy sessions idle for longer than their TTL; returns their ids."""
        now = time.time() if now is None else now
        expired, idle = [], []
        for info in await self.sessions():
            ttl = self._ttl.get(info.session_id, self.config.default_ttl_s)
            idle_s = now - self._last_used.get(info.session_id, info.created_at)
            if idle_s > ttl:
                expired.append(info.session_id)
            elif 0 < self.config.pause_after_s < idle_s:  # pause: idle sessions pause before their TTL
                idle.append(info.session_id)
        expired += self._paused_past_ttl(now)  # pause: a paused session still ends at its TTL
        for session_id in expired:
            await self.destroy(session_id)
            if self._on_expired is not None:
                await self._on_expired(session_id)
        await self._pause_idle(now, idle)  # pause: after the expiries
        return expired

    async def _session(self, session_id: str) -> Sandbox:
        if session_id in self.pool.pooled_ids():  # handed out to nobody yet
            raise SandboxNotFound(f"no sandbox for session {session_id}", session_id=session_id)
        await self._resume_if_paused(session_id)  # pause: any call resumes it first
        sandbox = await self.backend.get(session_id)
        self._last_used[session_id] = time.time()
        return sandbox

    async def _guarded(self, session_id: str, op: Awaitable[Result]) -> Result:
        """Run a session operation; a dead container becomes a clear SandboxGone."""
        busy = self._busy()  # pause: a session with a call running is not idle
        busy[session_id] += 1
        try:
            return await op
        except SandboxUnavailable:
            await self.backend.check_alive(session_id)
            raise
        finally:
            busy[session_id] -= 1
            if busy[session_id] <= 0:
                del busy[session_id]

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.reap_interval_s)
            try:
                await self.expire_idle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("idle-session reaper failed")
