"""The pause calls of `RayNodeClient`: one remote call of the node actor per method."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from sandbox.checkpoints import NodePausing

__all__ = ["RayPauseCalls"]


class RayPauseCalls(NodePausing):
    """Mixed into `RayNodeClient`, which gives the actor handle and the call that maps a lost actor."""

    _handle: Any

    async def _call(self, ref: Awaitable[Any]) -> Any:
        raise NotImplementedError

    async def pause(self, session_id: str) -> dict[str, Any]:
        return await self._call(self._handle.pause.remote(session_id))  # type: ignore[no-any-return]

    async def resume(self, session_id: str) -> dict[str, Any]:
        return await self._call(self._handle.resume.remote(session_id))  # type: ignore[no-any-return]
