"""Streamed shell commands and cells of the caller's sessions, on the node that owns each one."""

from __future__ import annotations

from sandbox.streams import StreamKind, StreamRead
from toolserver.service.principal import Principal
from toolserver.service.sessions import SessionService

__all__ = ["StreamService"]


class StreamService:
    """Every call goes through the session service's node routing: another tenant's session is a 404."""

    def __init__(self, sessions: SessionService) -> None:
        self.sessions = sessions

    async def start(
        self, principal: Principal, session_id: str, kind: StreamKind, source: str, timeout_s: float
    ) -> str:
        """Start a streamed command or cell in the session; its run id."""
        return await self.sessions._on_node(
            principal, session_id, lambda node: node.stream_start(session_id, kind, source, timeout_s)
        )

    async def read(
        self, principal: Principal, session_id: str, run_id: str, offset: int, wait_s: float
    ) -> StreamRead:
        """The run's events from `offset`."""
        return await self.sessions._on_node(
            principal, session_id, lambda node: node.stream_read(session_id, run_id, offset, wait_s)
        )

    async def cancel(self, principal: Principal, session_id: str, run_id: str) -> None:
        """Interrupt the run."""
        await self.sessions._on_node(
            principal, session_id, lambda node: node.stream_cancel(session_id, run_id)
        )
