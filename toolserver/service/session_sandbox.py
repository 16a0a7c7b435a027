"""A `Sandbox` view of one session for tool runners: every call goes through the session service."""

from __future__ import annotations

from sandbox.base import FileEntry, PythonResult, Sandbox, SandboxInfo, ShellResult
from toolserver.service.call_progress import current_listener, python_result, shell_result, streamed_call
from toolserver.service.principal import Principal
from toolserver.service.sessions import SessionService

__all__ = ["SessionSandbox"]


class SessionSandbox(Sandbox):
    """Routes to the node that owns the session, with the caller's tenancy checks."""

    def __init__(self, sessions: SessionService, principal: Principal, info: SandboxInfo) -> None:
        self._sessions = sessions
        self._principal = principal
        self._info = info

    @property
    def info(self) -> SandboxInfo:
        return self._info

    async def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        listener = current_listener()  # call progress: a caller that asked for it gets the output as it comes
        if listener is not None:
            sid = self._info.session_id
            return shell_result(
                await streamed_call(
                    self._sessions, self._principal, sid, "shell", command, timeout_s, listener
                )
            )
        return await self._sessions.shell(self._principal, self._info.session_id, command, timeout_s)

    async def python(self, code: str, timeout_s: float = 30.0) -> PythonResult:
        listener = current_listener()  # call progress
        if listener is not None:
            sid = self._info.session_id
            return python_result(
                await streamed_call(self._sessions, self._principal, sid, "python", code, timeout_s, listener)
            )
        return await self._sessions.python(self._principal, self._info.session_id, code, timeout_s)

    async def restart_python(self) -> None:
        await self._sessions.restart_python(self._principal, self._info.session_id)

    async def write_file(self, path: str, data: bytes) -> FileEntry:
        return await self._sessions.write_file(self._principal, self._info.session_id, path, data)

    async def read_file(self, path: str) -> bytes:
        return await self._sessions.read_file(self._principal, self._info.session_id, path)

    async def list_files(self, path: str = "") -> list[FileEntry]:
        return await self._sessions.list_files(self._principal, self._info.session_id, path)

    async def close(self) -> None:
        return None
