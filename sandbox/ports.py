"""Ports of a session's sandbox: the proxy's seam, its errors, and shared preview links.

The sandbox's network stays `none`: a connection to one of its ports is a connection to its guest daemon,
which connects to 127.0.0.1:port inside and splices. A share is an unguessable secret for one port of one
session, valid until it expires or is revoked; the node that owns the session keeps only its hash, in memory,
so a restart of the server ends every share (the safe side).
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from foundation.errors import NotFound, QuotaExceeded, RuntimeFailure

__all__ = [
    "MAX_SHARE_TTL_S",
    "MAX_SHARES_PER_SESSION",
    "PortClosed",
    "PortLimit",
    "SessionPorts",
    "Share",
    "ShareNotFound",
    "Shares",
]

MAX_SHARES_PER_SESSION = 16
MAX_SHARE_TTL_S = 7 * 24 * 3600.0


class PortClosed(RuntimeFailure):
    """Nothing listens on that port inside the sandbox (502)."""

    status = 502
    type = "port_closed"


class PortLimit(QuotaExceeded):
    """As many connections to the session's ports are open as may be."""

    type = "port_limit"


class ShareNotFound(NotFound):
    """No live share with that id (or secret) for the session."""

    type = "share_not_found"


@dataclass(frozen=True)
class Share:
    """A shared port: `secret` is given once, when it is made; the node keeps only its hash."""

    id: str
    session_id: str
    port: int
    expires_at: float
    secret: str = ""


class Shares:
    """The live shares of a node's sessions."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[Share, bytes]] = {}

    def create(self, session_id: str, port: int, ttl_s: float) -> Share:
        """A new share of `port`, valid for `ttl_s` seconds; PortLimit past MAX_SHARES_PER_SESSION."""
        self._forget_expired()
        if sum(1 for s, _ in self._by_id.values() if s.session_id == session_id) >= MAX_SHARES_PER_SESSION:
            raise PortLimit(
                f"session {session_id} has {MAX_SHARES_PER_SESSION} live shares; revoke one first"
            )
        secret = secrets.token_urlsafe(32)
        share = Share(secrets.token_hex(8), session_id, port, time.time() + min(ttl_s, MAX_SHARE_TTL_S))
        self._by_id[share.id] = (share, _digest(secret))
        return Share(share.id, session_id, port, share.expires_at, secret)

    def check(self, session_id: str, port: int, share_id: str, secret: str) -> bool:
        """Whether the secret opens that live, unexpired share of `port` (compared in constant time)."""
        found = self._by_id.get(share_id)
        if found is None:
            return False
        share, digest = found
        if share.expires_at <= time.time():
            del self._by_id[share_id]
            return False
        same = hmac.compare_digest(digest, _digest(secret))
        return same and share.session_id == session_id and share.port == port

    def revoke(self, session_id: str, share_id: str) -> None:
        """End a share of the session; ShareNotFound when it has none with that id."""
        found = self._by_id.get(share_id)
        if found is None or found[0].session_id != session_id:
            raise ShareNotFound(f"no share {share_id!r} in session {session_id}", session_id=session_id)
        del self._by_id[share_id]

    def drop_session(self, session_id: str) -> None:
        """End every share of a session (it was destroyed)."""
        for share_id in [i for i, (s, _) in self._by_id.items() if s.session_id == session_id]:
            del self._by_id[share_id]

    def _forget_expired(self) -> None:
        now = time.time()
        for share_id in [i for i, (s, _) in self._by_id.items() if s.expires_at <= now]:
            del self._by_id[share_id]


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


class SessionPorts(Protocol):
    """Ports of sessions addressed by session id: what a node's manager offers the proxy."""

    @abc.abstractmethod
    async def port_endpoint(self, session_id: str) -> str:
        """The host path of the session's guest daemon socket, which a proxy on this node connects to."""

    @abc.abstractmethod
    async def port_share(self, session_id: str, port: int, ttl_s: float) -> Share:
        """Share `port` for `ttl_s` seconds; the answer carries the secret, this once."""

    @abc.abstractmethod
    async def port_share_check(self, session_id: str, port: int, share_id: str, secret: str) -> bool:
        """Whether a share's secret is good for that port now."""

    @abc.abstractmethod
    async def port_share_revoke(self, session_id: str, share_id: str) -> None:
        """End a share."""
