"""The streamed-run calls of `RayNodeClient`: one remote call of the node actor per method."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from sandbox.streams import SessionStreams, StreamKind, StreamRead

__all__ = ["RayStreamCalls"]


class RayStreamCalls(SessionStreams):
    """Mixed into `RayNodeClient`: a reader polls the run on the node that owns the session."""

    _handle: Any

    async def _call(self, ref: Awaitable[Any]) -> Any:
        raise NotImplementedError

    async def stream_start(
        self, session_id: str, kind: StreamKind, source: str, timeout_s: float = 30.0
    ) -> str:
        return await self._call(self._handle.stream_start.remote(session_id, kind, source, timeout_s))

    async def stream_read(
        self, session_id: str, run_id: str, offset: int = 0, wait_s: float = 0.0
    ) -> StreamRead:
        return await self._call(self._handle.stream_read.remote(session_id, run_id, offset, wait_s))

    async def stream_cancel(self, session_id: str, run_id: str) -> None:
        await self._call(self._handle.stream_cancel.remote(session_id, run_id))
