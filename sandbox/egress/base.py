"""What the egress proxy is given: the operator's limits, and the address check it connects through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["AddressCheck", "EgressLimits"]


class AddressCheck(Protocol):
    """Where the proxy may connect for a name: `toolserver.outbound.egress.EgressPolicy` is one."""

    async def pin(self, host: str, port: int) -> str:
        """The checked address to connect to for `host` (resolved once); raises when it is not allowed."""


@dataclass(frozen=True)
class EgressLimits:
    """The operator's settings for sandboxes with network "egress"."""

    operator_allow: str = ""  # TOOLSERVER_EGRESS_ALLOW: non-public addresses the proxy may still reach
    maximum: tuple[str, ...] = ("*",)  # TOOLSERVER_SANDBOX_EGRESS_MAX: what a session may list
    default: tuple[str, ...] = ()  # the list of a session that asks for an empty one
    max_connections: int = 32  # open at once, per session
    bytes_per_s: int = 25 * 1024 * 1024  # both directions together, per session
    log_entries: int = 500  # connections remembered per session (newest kept)
