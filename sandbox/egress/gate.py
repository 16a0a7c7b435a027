"""The egress proxies of one node's sessions: opened with a session, closed with it, asked for reports."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sandbox.base import SandboxInfo
from sandbox.egress.base import AddressCheck, EgressLimits
from sandbox.egress.journal import Attempt
from sandbox.egress.proxy import SessionProxy
from sandbox.egress.rules import parse_rules
from sandbox.errors import SandboxUnavailable

__all__ = ["GUEST_LISTEN", "SOCKET_NAME", "DeniedCallback", "EgressGate", "proxy_environment"]

SOCKET_NAME = "egress.sock"  # in the shared part of the session's private directory
GUEST_LISTEN = "127.0.0.1:3128"  # where the sandbox's forwarder listens (sandbox/_guest/sbxd_egress.py)
DeniedCallback = Callable[[SandboxInfo, Attempt], None]
LOOKUP_THREADS = 8  # the node's name lookups for egress at once; each session may hold two of them


def proxy_environment(guest_dir: str) -> dict[str, str]:
    """The container environment of a sandbox with network "egress": its tools use the proxy unchanged."""
    proxy = f"http://{GUEST_LISTEN}"
    env = {"TOOLSERVER_EGRESS_SOCKET": f"{guest_dir}/{SOCKET_NAME}", "TOOLSERVER_EGRESS_LISTEN": GUEST_LISTEN}
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        env[name] = env[name.upper()] = proxy
    env["no_proxy"] = env["NO_PROXY"] = "localhost,127.0.0.1,::1"
    return env


class EgressGate:
    """One SessionProxy per session with network "egress", checked through `check`."""

    def __init__(
        self, limits: EgressLimits, check: AddressCheck | None, on_denied: DeniedCallback | None = None
    ) -> None:
        self.limits = limits
        self.check = check
        self.on_denied = on_denied
        self._proxies: dict[str, SessionProxy] = {}
        # Name lookups run here, never in the loop's default pool that the node's other work shares.
        self._lookups = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="egress-lookup")
        self.closed_allowed = 0  # counts of proxies already closed, for the node's totals
        self.closed_denied = 0

    def require(self) -> None:
        """SandboxUnavailable when this node cannot check egress (no address check was given)."""
        if self.check is None:
            raise SandboxUnavailable("this sandbox node has no egress proxy; ask for network 'none'")

    async def open(self, info: SandboxInfo, shared_dir: str) -> None:
        """Start the session's proxy on its socket in `shared_dir` (again, after a restart)."""
        self.require()
        assert self.check is not None
        await self.close(info.session_id)
        heard = self.on_denied
        proxy = SessionProxy(
            info.session_id,
            parse_rules(info.egress),
            self.check,
            self.limits,
            os.path.join(shared_dir, SOCKET_NAME),
            on_denied=(lambda attempt: heard(info, attempt)) if heard is not None else None,
            resolve=self._resolve,
        )
        await proxy.start()
        self._proxies[info.session_id] = proxy

    async def _resolve(self, host: str, port: int) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._lookups, functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        )

    async def close(self, session_id: str) -> None:
        """Stop the session's proxy (a no-op when it has none)."""
        proxy = self._proxies.pop(session_id, None)
        if proxy is not None:
            self.closed_allowed += proxy.journal.allowed_count
            self.closed_denied += proxy.journal.denied_count
            await proxy.close()

    def report(self, session_id: str) -> dict[str, Any]:
        """The session's allow-list, counts and recent connections (empty lists when it has no proxy)."""
        proxy = self._proxies.get(session_id)
        if proxy is None:
            return {"rules": [], "connections": [], "allowed": 0, "denied": 0}
        return {"rules": [str(rule) for rule in proxy.rules], **proxy.journal.report()}

    def totals(self) -> dict[str, int]:
        """Connections allowed and denied on this node since it started."""
        proxies = list(self._proxies.values())
        return {
            "allowed": self.closed_allowed + sum(p.journal.allowed_count for p in proxies),
            "denied": self.closed_denied + sum(p.journal.denied_count for p in proxies),
        }
