"""The node manager's background-process operations: `SessionProcesses` over each session's sandbox."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable
from typing import TypeVar

from sandbox.base import Sandbox
from sandbox.errors import SandboxError
from sandbox.processes import Processes, ProcessInfo, ProcessOutput, SessionProcesses

__all__ = ["ManagerProcesses", "processes_of"]

Result = TypeVar("Result")


def processes_of(sandbox: Sandbox) -> Processes:
    """The sandbox's background processes; SandboxError for a backend that has none."""
    processes = getattr(sandbox, "processes", None)
    if not isinstance(processes, Processes):
        raise SandboxError(f"{type(sandbox).__name__} runs no background processes")
    return processes


class ManagerProcesses(SessionProcesses):
    """Mixed into `SandboxManager`: each call finds the session's sandbox and guards it like the others."""

    async def _session(self, session_id: str) -> Sandbox:
        raise NotImplementedError

    async def _guarded(self, session_id: str, op: Awaitable[Result]) -> Result:
        raise NotImplementedError

    async def _processes(self, session_id: str) -> Processes:
        return processes_of(await self._session(session_id))

    async def process_start(
        self,
        session_id: str,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> ProcessInfo:
        processes = await self._processes(session_id)
        return await self._guarded(session_id, processes.start(command, cwd, env, stdin))

    async def process_list(self, session_id: str) -> builtins.list[ProcessInfo]:
        processes = await self._processes(session_id)
        return await self._guarded(session_id, processes.list())

    async def process_get(self, session_id: str, pid: int) -> ProcessInfo:
        processes = await self._processes(session_id)
        return await self._guarded(session_id, processes.get(pid))

    async def process_output(
        self, session_id: str, pid: int, offset: int = 0, wait_s: float = 0.0
    ) -> ProcessOutput:
        processes = await self._processes(session_id)
        return await self._guarded(session_id, processes.output(pid, offset, wait_s))

    async def process_stdin(self, session_id: str, pid: int, data: bytes, eof: bool = False) -> int:
        processes = await self._processes(session_id)
        return await self._guarded(session_id, processes.write_stdin(pid, data, eof))

    async def process_signal(self, session_id: str, pid: int, signal: str) -> ProcessInfo:
        processes = await self._processes(session_id)
        return await self._guarded(session_id, processes.signal(pid, signal))
