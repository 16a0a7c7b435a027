"""The node manager's pause and resume: paused sessions, auto-resume, idle pausing, and finding them after a restart.

A paused session has no container (or, under runsc, a stopped one with its memory checkpoint): it does not count
among the node's running sandboxes. Its state lives in the node's paused directory, so a restarted manager finds
it again; any call to it resumes it first.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sandbox.base import SandboxInfo
from sandbox.checkpoints import (
    NodePausing,
    PausedState,
    load_state,
    paused_dirs,
    remove_state,
    save_state,
    state_dir,
)
from sandbox.config import SandboxConfig
from sandbox.errors import SandboxUnavailable, SessionBusy

__all__ = ["ManagerPause", "PauseListener"]

log = logging.getLogger(__name__)

PauseListener = Callable[[str, str, dict[str, Any]], Awaitable[None]]
"""Told `(session_id, "paused" or "running", what the pause kept or the resume restored)` on every change."""

_RESTARTED = (
    "the server was stopped while the session was paused, and its memory checkpoint went with its container;"
    " files kept"
)


class ManagerPause(NodePausing):
    """Mixed into `SandboxManager`, which gives the config, the backend and the TTL bookkeeping."""

    config: SandboxConfig
    backend: Any
    _ttl: dict[str, float]
    _last_used: dict[str, float]
    pause_listener: PauseListener | None = None

    def _paused(self) -> dict[str, PausedState]:
        if not hasattr(self, "_paused_states"):
            self._paused_states: dict[str, PausedState] = {}
            self._pause_locks: dict[str, asyncio.Lock] = {}
        return self._paused_states

    def _lock(self, session_id: str) -> asyncio.Lock:
        self._paused()
        return self._pause_locks.setdefault(session_id, asyncio.Lock())

    def _busy(self) -> Counter[str]:
        """Calls running now, per session (the manager's `_guarded` counts them)."""
        if not hasattr(self, "_busy_calls"):
            self._busy_calls: Counter[str] = Counter()
        return self._busy_calls

    def is_paused(self, session_id: str) -> bool:
        """Whether the session is paused on this node."""
        return session_id in self._paused()

    def paused_count(self) -> int:
        """How many sessions are paused on this node."""
        return len(self._paused())

    def _backend_pauses(self) -> Any:
        if not hasattr(self.backend, "pause_sandbox"):
            raise SandboxUnavailable(f"{type(self.backend).__name__} cannot pause sandboxes")
        return self.backend

    async def pause(self, session_id: str) -> dict[str, Any]:
        """Stop the session's container, keeping its files (and memory where the runtime can); idempotent."""
        async with self._lock(session_id):
            state = self._paused().get(session_id)
            if state is not None:
                return {"status": "paused", "paused_at": state.paused_at, "kept": state.kept}
            backend = self._backend_pauses()
            await backend.get(session_id)  # SandboxNotFound before anything is written
            if self._busy()[session_id] > 0:
                raise SessionBusy(
                    f"session {session_id} has {self._busy()[session_id]} call(s) running; pause it when they"
                    " have ended",
                    session_id=session_id,
                )
            directory = await asyncio.to_thread(state_dir, self.config.paused_dir, session_id, create=True)
            try:
                info, kept = await backend.pause_sandbox(
                    session_id, directory, self.config.max_pause_archive_mb * 1024 * 1024
                )
            except BaseException:
                await asyncio.to_thread(remove_state, directory)
                raise
            state = PausedState(
                info=info,
                paused_at=time.time(),
                last_used=self._last_used.get(session_id, time.time()),
                ttl_s=self._ttl.get(session_id, self.config.default_ttl_s),
                kept=kept,
                checkpointed=bool(kept.get("memory")),
                archive_bytes=int(kept.get("archive_bytes", 0)),
            )
            await asyncio.to_thread(save_state, directory, state)
            self._paused()[session_id] = state
        answer = {"status": "paused", "paused_at": state.paused_at, "kept": kept}
        await self._tell(session_id, "paused", answer)
        return answer

    async def resume(self, session_id: str) -> dict[str, Any]:
        """Bring a paused session back (a no-op answer when it runs); says whether the kernel is fresh."""
        async with self._lock(session_id):
            state = self._paused().get(session_id)
            if state is None:
                await self.backend.get(session_id)  # SandboxNotFound when it is neither
                return {"status": "running", "resumed": None}
            directory = state_dir(self.config.paused_dir, session_id)
            started = time.monotonic()
            _, resumed = await self._backend_pauses().resume_sandbox(state.info, directory)
            resumed = {**resumed, "at": time.time(), "seconds": round(time.monotonic() - started, 3)}
            self._paused().pop(session_id, None)
            self._ttl[session_id] = state.ttl_s
            self._last_used[session_id] = time.time()
            await asyncio.to_thread(remove_state, directory)
        answer = {"status": "running", "resumed": resumed}
        await self._tell(session_id, "running", answer)
        return answer

    async def _resume_if_paused(self, session_id: str) -> None:
        """Auto-resume: any call to a paused session brings it back first (after a pause under way ends)."""
        lock = self._lock(session_id)
        if lock.locked():
            async with lock:
                pass
        if session_id in self._paused():
            await self.resume(session_id)

    async def _drop_paused(self, session_id: str) -> None:
        """Forget a paused session and delete what it kept (its destroy)."""
        state = self._paused().pop(session_id, None)
        if state is None:
            return
        if hasattr(self.backend, "drop_paused"):
            await self.backend.drop_paused(session_id)
        await asyncio.to_thread(remove_state, state_dir(self.config.paused_dir, session_id))

    async def _checkpointed_paused(self, live: dict[str, float], adopt_from: set[str] | None) -> set[str]:
        """After a restart: the live paused sessions of this node whose memory checkpoint was taken."""
        mine = {self.config.node_id, *(adopt_from or ())}
        found = set()
        for session_id in await asyncio.to_thread(paused_dirs, self.config.paused_dir):
            if session_id not in live:
                continue
            state = await asyncio.to_thread(load_state, state_dir(self.config.paused_dir, session_id))
            if state is not None and state.checkpointed and state.info.node_id in mine:
                found.add(session_id)
        return found

    async def _find_paused(
        self, live: dict[str, float], attached: builtins.list[str], adopt_from: set[str] | None = None
    ) -> builtins.list[str]:
        """After a restart: take back the paused sessions the registry still holds here.

        The paused directory may be shared by several nodes on one machine (a test cluster): only the state of
        this node's sessions, and of the vanished nodes in `adopt_from`, is deleted when the registry no longer
        holds it; a state being written (no state file yet) is left alone.
        """
        found = []
        mine = {self.config.node_id, *(adopt_from or ())}
        for session_id in await asyncio.to_thread(paused_dirs, self.config.paused_dir):
            directory = state_dir(self.config.paused_dir, session_id)
            state = await asyncio.to_thread(load_state, directory)
            if state is None:
                continue
            if session_id not in live or session_id in attached:
                if state.info.node_id in mine:
                    await asyncio.to_thread(remove_state, directory)
                continue
            if state.checkpointed and not self._backend_holds_checkpoint(session_id):
                # its stopped container went (a `toolserver down`, or the engine lost it): files only
                state.checkpointed = False
                state.kept = {**state.kept, "memory": False, "note": _RESTARTED}
                await asyncio.to_thread(save_state, directory, state)
            state.info = _on_node(state.info, self.config.node_id)
            state.ttl_s = live[session_id] or state.ttl_s
            self._paused()[session_id] = state
            if state.info.volumes and hasattr(self.backend, "_hold_volumes"):
                self.backend._hold_volumes(session_id, state.info.volumes)
            found.append(session_id)
        return found

    def _backend_holds_checkpoint(self, session_id: str) -> bool:
        held = getattr(self.backend, "holds_checkpoint", None)
        return bool(held(session_id)) if held is not None else False

    async def _pause_idle(self, now: float, idle_ids: builtins.list[str]) -> builtins.list[str]:
        """Pause the running sessions idle past `pause_after_s` (and not yet past their TTL)."""
        paused = []
        for session_id in idle_ids:
            if self._busy()[session_id] > 0:  # a call is running in it: not idle after all
                continue
            try:
                await self.pause(session_id)
                paused.append(session_id)
            except Exception as exc:
                log.warning("idle session %s could not be paused (%s); it keeps running", session_id, exc)
        return paused

    def _paused_past_ttl(self, now: float) -> builtins.list[str]:
        """Paused sessions whose TTL, counted from their last use, has passed."""
        return [sid for sid, s in self._paused().items() if now - s.last_used > s.ttl_s]

    async def _tell(self, session_id: str, status: str, what: dict[str, Any]) -> None:
        if self.pause_listener is None:
            return
        try:
            await self.pause_listener(session_id, status, what)
        except Exception:
            log.exception("recording session %s as %s failed", session_id, status)


def _on_node(info: SandboxInfo, node_id: str) -> SandboxInfo:
    return replace(info, node_id=node_id)
