"""What the egress proxy is given: the operator's limits, and the address check it connects through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["AddressCheck", "EgressLimits", "Resolve"]

Resolve = Callable[[str, int], Awaitable[list[Any]]]
"""Looks a name up as `socket.getaddrinfo(host, port, type=SOCK_STREAM)` answers, without blocking the loop."""


class AddressCheck(Protocol):
    """Where the proxy may connect for a name: `toolserver.outbound.egress.EgressPolicy` is one."""

    async def pin(self, host: str, port: int, resolve: Resolve | None = None) -> str:
        """The checked address for `host` (looked up once, by `resolve` when given); raises when not allowed."""


@dataclass(frozen=True)
class EgressLimits:
    """The operator's settings for sandboxes with network "egress"."""

    operator_allow: str = ""  # TOOLSERVER_SANDBOX_EGRESS_ALLOW: non-public addresses it may reach
    maximum: tuple[str, ...] = ("*",)  # TOOLSERVER_SANDBOX_EGRESS_MAX: what a session may list
    default: tuple[str, ...] = ()  # the list of a session that asks for an empty one
    max_connections: int = 32  # open at once, per session
    bytes_per_s: int = 25 * 1024 * 1024  # both directions together, per session
    log_entries: int = 500  # connections remembered per session (newest kept)
