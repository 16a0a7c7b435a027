"""The background-process calls of `RayNodeClient`: one remote call of the node actor per method."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from sandbox.processes import ProcessInfo, ProcessOutput, SessionProcesses

__all__ = ["RayProcessCalls"]


class RayProcessCalls(SessionProcesses):
    """Mixed into `RayNodeClient`, which gives the actor handle and the call that maps a lost actor."""

    _handle: Any

    async def _call(self, ref: Awaitable[Any]) -> Any:
        raise NotImplementedError

    async def process_start(
        self,
        session_id: str,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> ProcessInfo:
        return await self._call(self._handle.process_start.remote(session_id, command, cwd, env, stdin))

    async def process_list(self, session_id: str) -> list[ProcessInfo]:
        return await self._call(self._handle.process_list.remote(session_id))

    async def process_get(self, session_id: str, pid: int) -> ProcessInfo:
        return await self._call(self._handle.process_get.remote(session_id, pid))

    async def process_output(
        self, session_id: str, pid: int, offset: int = 0, wait_s: float = 0.0
    ) -> ProcessOutput:
        return await self._call(self._handle.process_output.remote(session_id, pid, offset, wait_s))

    async def process_stdin(self, session_id: str, pid: int, data: bytes, eof: bool = False) -> int:
        return await self._call(self._handle.process_stdin.remote(session_id, pid, data, eof))

    async def process_signal(self, session_id: str, pid: int, signal: str) -> ProcessInfo:
        return await self._call(self._handle.process_signal.remote(session_id, pid, signal))
