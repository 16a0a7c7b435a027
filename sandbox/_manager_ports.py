"""The node manager's port operations: where a proxy reaches each session's guest daemon, and shares."""

from __future__ import annotations

from sandbox.base import Sandbox
from sandbox.errors import NotSupported
from sandbox.ports import SessionPorts, Share, Shares

__all__ = ["ManagerPorts"]


class ManagerPorts(SessionPorts):
    """Mixed into `SandboxManager`; shares live in its memory (a restart ends them)."""

    async def _session(self, session_id: str) -> Sandbox:
        raise NotImplementedError

    @property
    def _shares(self) -> Shares:
        shares: Shares | None = self.__dict__.get("_port_shares")
        if shares is None:
            shares = self.__dict__["_port_shares"] = Shares()
        return shares

    async def port_endpoint(self, session_id: str) -> str:
        sandbox = await self._session(session_id)
        path = getattr(sandbox, "guest_socket", None)
        if not isinstance(path, str):
            raise NotSupported(f"{type(sandbox).__name__} has no ports to proxy", capability="ports")
        return path

    async def port_share(self, session_id: str, port: int, ttl_s: float) -> Share:
        await self._session(session_id)
        return self._shares.create(session_id, port, ttl_s)

    async def port_share_check(self, session_id: str, port: int, share_id: str, secret: str) -> bool:
        # share-first: a bad secret wakes nothing; a paused session is resumed by the service, within its cap
        if not self._shares.check(session_id, port, share_id, secret):
            return False
        if getattr(self, "is_paused", lambda _: False)(session_id):
            return True
        try:
            await self._session(session_id)
        except Exception:
            self._shares.drop_session(session_id)
            return False
        return self._shares.check(session_id, port, share_id, secret)

    async def port_share_revoke(self, session_id: str, share_id: str) -> None:
        await self._session(session_id)
        self._shares.revoke(session_id, share_id)
