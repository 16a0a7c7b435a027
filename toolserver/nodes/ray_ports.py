"""The port calls of `RayNodeClient`: one remote call of the node actor per method."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from sandbox.ports import SessionPorts, Share
from toolserver.nodes.port_relay import RelayTicket

__all__ = ["RayPortCalls"]


class RayPortCalls(SessionPorts):
    """Mixed into `RayNodeClient`."""

    _handle: Any
    _node_id: str

    @property
    def node_id(self) -> str:
        """The Ray node the manager runs on."""
        return self._node_id

    async def _call(self, ref: Awaitable[Any]) -> Any:
        raise NotImplementedError

    async def port_endpoint(self, session_id: str) -> str:
        return await self._call(self._handle.port_endpoint.remote(session_id))

    async def port_share(self, session_id: str, port: int, ttl_s: float) -> Share:
        return await self._call(self._handle.port_share.remote(session_id, port, ttl_s))

    async def port_share_check(self, session_id: str, port: int, share_id: str, secret: str) -> bool:
        return await self._call(self._handle.port_share_check.remote(session_id, port, share_id, secret))

    async def port_share_revoke(self, session_id: str, share_id: str) -> None:
        await self._call(self._handle.port_share_revoke.remote(session_id, share_id))

    async def port_relay_open(self, session_id: str, port: int) -> RelayTicket:
        """A ticket for one connection to `port`, relayed by the node's manager (for a replica elsewhere)."""
        return await self._call(self._handle.port_relay_open.remote(session_id, port))
