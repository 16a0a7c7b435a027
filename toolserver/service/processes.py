"""Background processes of the caller's sessions, on the node that owns each one (tenant-checked there)."""

from __future__ import annotations

import builtins

from sandbox.processes import MAX_STDIN_BYTES, ProcessInfo, ProcessOutput, StdinTooLarge
from toolserver.service.principal import Principal
from toolserver.service.sessions import SessionService

__all__ = ["ProcessService"]


class ProcessService:
    """Every call goes through the session service's node routing: another tenant's session is a 404."""

    def __init__(self, sessions: SessionService) -> None:
        self.sessions = sessions

    async def start(
        self,
        principal: Principal,
        session_id: str,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> ProcessInfo:
        """Start `command` in the background of the session's sandbox."""
        return await self.sessions._on_node(
            principal, session_id, lambda node: node.process_start(session_id, command, cwd, env, stdin)
        )

    async def list(self, principal: Principal, session_id: str) -> builtins.list[ProcessInfo]:
        """The session's background processes."""
        return await self.sessions._on_node(principal, session_id, lambda node: node.process_list(session_id))

    async def get(self, principal: Principal, session_id: str, pid: int) -> ProcessInfo:
        """One background process of the session."""
        return await self.sessions._on_node(
            principal, session_id, lambda node: node.process_get(session_id, pid)
        )

    async def output(
        self, principal: Principal, session_id: str, pid: int, offset: int = 0, wait_s: float = 0.0
    ) -> ProcessOutput:
        """Output from `offset`, waiting up to `wait_s` seconds when there is none yet."""
        return await self.sessions._on_node(
            principal, session_id, lambda node: node.process_output(session_id, pid, offset, wait_s)
        )

    async def write_stdin(
        self, principal: Principal, session_id: str, pid: int, data: bytes, eof: bool = False
    ) -> int:
        """Write to the process's stdin; StdinTooLarge past MAX_STDIN_BYTES."""
        if len(data) > MAX_STDIN_BYTES:
            raise StdinTooLarge(
                f"{len(data)} bytes of stdin is over the {MAX_STDIN_BYTES} byte cap", limit=MAX_STDIN_BYTES
            )
        return await self.sessions._on_node(
            principal, session_id, lambda node: node.process_stdin(session_id, pid, data, eof)
        )

    async def signal(self, principal: Principal, session_id: str, pid: int, signal: str) -> ProcessInfo:
        """Send `signal` to the process's group."""
        return await self.sessions._on_node(
            principal, session_id, lambda node: node.process_signal(session_id, pid, signal)
        )
