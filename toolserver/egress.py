"""Where the server itself may connect: the egress policy of http tools, mcp tools and agents' LLM endpoints.

Tenants choose these urls, and the server's own network is not theirs: loopback holds the Ray dashboard (whose
job API runs commands) and the server's own ports, link-local holds cloud metadata, private ranges hold the
cluster. By default only globally routable addresses are reachable. The operator widens that with
`TOOLSERVER_EGRESS_ALLOW`, comma-separated: networks (`10.1.0.0/16`, `127.0.0.1`), one port of an address or
name (`127.0.0.1:8931`, `[::1]:8931`, `localhost:11434`), host names (`llm.internal`), or `*` for all.

A host name is resolved once per request and the connection goes to the address that was checked, so DNS
rebinding cannot swap it; TLS still verifies the name. Redirects pass the same check (each is a new request).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from toolserver.errors import Forbidden, ValidationFailed

__all__ = ["EgressDenied", "EgressPolicy", "GuardedTransport", "guarded_client", "pin_request"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SETTING = "TOOLSERVER_EGRESS_ALLOW"


class EgressDenied(Forbidden):
    """The server will not connect there on a tenant's behalf."""

    type = "egress_denied"


@dataclass(frozen=True)
class EgressPolicy:
    """Public addresses, plus what the operator allows."""

    allow_all: bool = False
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    endpoints: frozenset[tuple[str, int]] = frozenset()  # (host name or address, port)

    @classmethod
    def parse(cls, entries: str | Iterable[str]) -> EgressPolicy:
        """From a comma-separated string or a list of entries (see the module's docstring); ValueError if bad."""
        items = entries.split(",") if isinstance(entries, str) else list(entries)
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        endpoints: set[tuple[str, int]] = set()
        allow_all = False
        for raw in (item.strip() for item in items):
            if not raw:
                continue
            if raw == "*":
                allow_all = True
                continue
            try:
                networks.append(ipaddress.ip_network(raw, strict=False))
                continue
            except ValueError:
                pass
            host, port = _split_port(raw)
            if port is None and _literal(host) is not None:
                networks.append(ipaddress.ip_network(host))  # "[::1]"
            elif port is None:
                hosts.add(host)
            else:
                endpoints.add((host, port))
        return cls(allow_all, tuple(networks), frozenset(hosts), frozenset(endpoints))

    def allows_address(self, address: IPAddress, port: int | None = None) -> bool:
        if self.allow_all:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if port is not None and (str(address), port) in self.endpoints:
            return True
        if any(address.version == n.version and address in n for n in self.networks):
            return True
        return address.is_global and not address.is_multicast

    def allows_host(self, host: str, port: int) -> bool:
        name = host.lower().rstrip(".")
        return self.allow_all or name in self.hosts or (name, port) in self.endpoints

    def check_url(self, url: str, *, field: str) -> None:
        """At registration: refuse a url whose host is a literal address the policy denies (names wait for calls)."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError):
            return  # the caller's own url check reports it
        host, port = parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)
        address = _literal(host)
        if address is not None and not self.allows_address(address, port):
            raise ValidationFailed(_denied_message(host, address, port), field=field)

    async def pin(self, host: str, port: int) -> str:
        """The checked address to connect to for `host`; EgressDenied if the policy refuses any of its addresses."""
        if self.allows_host(host, port):
            return host
        literal = _literal(host)
        if literal is not None:
            if not self.allows_address(literal, port):
                raise EgressDenied(_denied_message(host, literal, port), host=host)
            return host
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot resolve {host!r}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        for address in addresses:
            if not self.allows_address(address, port):
                raise EgressDenied(_denied_message(host, address, port), host=host)
        if not addresses:
            raise httpx.ConnectError(f"{host!r} has no address")
        return str(addresses[0])


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends each request only to an address the policy allows."""

    def __init__(self, policy: EgressPolicy, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = policy
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        address, extensions = await pin_request(self.policy, request.url, request.extensions)
        if address is None:
            return await self._inner.handle_async_request(request)
        pinned = httpx.Request(
            request.method,
            request.url.copy_with(host=address),
            headers=request.headers,  # Host keeps the name
            stream=request.stream,
            extensions=extensions,
        )
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def pin_request(
    policy: EgressPolicy, url: Any, extensions: Mapping[str, Any]
) -> tuple[str | None, dict]:
    """For an httpx or httpx2 request's url: (address to connect to instead of its host, or None; extensions).

    With https the extensions name the host for TLS, so the certificate is checked against the name.
    """
    port = url.port or (443 if url.scheme == "https" else 80)
    address = await policy.pin(url.host, port)
    if address == url.host:
        return None, dict(extensions)
    return address, {**extensions, **({"sni_hostname": url.host} if url.scheme == "https" else {})}


def guarded_client(policy: EgressPolicy, **kwargs: Any) -> httpx.AsyncClient:
    """An AsyncClient under `policy`; proxies from the environment are ignored (they would bypass the check)."""
    return httpx.AsyncClient(transport=GuardedTransport(policy), trust_env=False, **kwargs)


def _split_port(raw: str) -> tuple[str, int | None]:
    """`name`, `name:port`, `1.2.3.4:port` or `[v6]:port` as (normalized host, port or None); ValueError if bad."""
    host, port = raw, None
    if raw.startswith("["):
        inside, closed, rest = raw[1:].partition("]")
        if not closed:
            raise ValueError(f"{SETTING}: {raw!r} has no closing ']'")
        host, port = inside, _port(raw, rest.removeprefix(":")) if rest else None
    elif raw.count(":") == 1:
        host, _, text = raw.partition(":")
        port = _port(raw, text)
    address = _literal(host)
    if address is not None:
        return str(address), port
    name = host.lower().rstrip(".")
    if not name or name.startswith(".") or any(c in name for c in "/:@ *[]"):
        raise ValueError(
            f"{SETTING}: {raw!r} is neither a network, an address, a host name nor one of them with :port"
        )
    return name, port


def _port(raw: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{SETTING}: {raw!r} has no valid port after ':'")
    return int(text)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _denied_message(host: str, address: IPAddress, port: int) -> str:
    where = host if host == str(address) else f"{host} ({address})"
    entry = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
    return (
        f"the server does not connect to {where} port {port}: not a public address. An operator can allow it "
        f"with {SETTING} (e.g. {SETTING}={entry}; networks, addresses, host names or one port, comma-separated)"
    )
