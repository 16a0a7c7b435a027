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
import collections
import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from foundation.errors import Forbidden, ValidationFailed

__all__ = [
    "EgressDenied",
    "EgressPolicy",
    "GuardedTransport",
    "Pinner",
    "guarded_client",
    "guarded_transport",
]

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
        """Whether the server may connect to `address` (on `port`, when an entry names one)."""
        if self.allow_all:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if port is not None and (str(address), port) in self.endpoints:
            return True
        if any(address.version == n.version and address in n for n in self.networks):
            return True
        if isinstance(address, ipaddress.IPv6Address):
            if any(address in n for n in _V6_NEVER):
                return False
            embedded = _embedded_ipv4(address)
            if embedded is not None:  # NAT64, 6to4, IPv4-compatible: where it really goes
                return self.allows_address(embedded, port)
        return address.is_global and not address.is_multicast

    def allows_host(self, host: str, port: int) -> bool:
        """Whether the operator allowed the name `host` itself (or on `port`), whatever it resolves to."""
        name = host.lower().rstrip(".")
        return self.allow_all or name in self.hosts or (name, port) in self.endpoints

    def check_url(self, url: str, *, field: str) -> None:
        """At registration: refuse a url whose host is a literal address the policy denies (names wait for calls)."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError):
            return  # the caller's own url check reports it
        host, port = parsed.host, _port_of(parsed)
        address = _literal(host)
        if address is not None and not self.allows_address(address, port):
            raise ValidationFailed(_denied_message(host, address, port), field=field)

    async def pin(self, host: str, port: int, resolve: Any = None) -> str:
        """The checked address to connect to for `host`; EgressDenied if the policy refuses any of its addresses.

        `resolve(host, port)` looks the name up (getaddrinfo's answer) where the caller wants the thread used;
        default: the event loop's own executor.
        """
        if self.allows_host(host, port):
            return host
        literal = _literal(host)
        if literal is not None:
            if not self.allows_address(literal, port):
                raise EgressDenied(_denied_message(host, literal, port), host=host)
            return host
        try:
            if resolve is not None:
                infos = await resolve(host, port)
            else:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError) as exc:  # an over-long label fails in the IDNA codec
            raise httpx.ConnectError(f"cannot resolve {host!r}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        for address in addresses:
            if not self.allows_address(address, port):
                raise EgressDenied(_denied_message(host, address, port), host=host)
        if not addresses:
            raise httpx.ConnectError(f"{host!r} has no address")
        return str(addresses[0])


class Pinner:
    """Sends requests of httpx or its twin httpx2 (`module`) only to addresses the policy allows.

    A pinned https request carries the name for TLS (SNI and the certificate check), but a connection pool
    matches connections by address alone: so each name gets its own pool, and a connection opened (and
    verified) for one name never carries another name's request.
    """

    def __init__(self, policy: EgressPolicy, module: Any, max_tls_pools: int = 256, **options: Any) -> None:
        """`options` go to each of the module's `AsyncHTTPTransport`s (e.g. `verify`)."""
        self.policy = policy
        self._module = module
        self._options = options
        self._plain = module.AsyncHTTPTransport(**options)
        self._tls: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._max_tls_pools = max_tls_pools

    async def send(self, request: Any) -> Any:
        """Send `request` to the checked address of its host; EgressDenied where the policy refuses it."""
        url = request.url
        port = _port_of(url)
        host = url.raw_host.decode("ascii")  # the IDNA form httpx sends, so the name checked is the name used
        address = await self.policy.pin(host, port)
        if address == host:
            return await self._plain.handle_async_request(request)
        extensions = dict(request.extensions)
        transport = self._plain
        if url.scheme == "https":
            extensions["sni_hostname"] = host
            transport = await self._tls_pool(host)
        pinned = self._module.Request(
            request.method,
            url.copy_with(host=address),
            headers=request.headers,  # Host keeps the name
            stream=request.stream,
            extensions=extensions,
        )
        return await transport.handle_async_request(pinned)

    async def _tls_pool(self, name: str) -> Any:
        pool = self._tls.pop(name, None) or self._module.AsyncHTTPTransport(**self._options)
        self._tls[name] = pool  # most recently used last
        while len(self._tls) > self._max_tls_pools:
            _, oldest = self._tls.popitem(last=False)
            await oldest.aclose()
        return pool

    async def aclose(self) -> None:
        """Close every pool."""
        await self._plain.aclose()
        while self._tls:
            await self._tls.popitem()[1].aclose()


class _PinnedTransport:
    """The body of a guarded transport of httpx or httpx2 (`_module`): every request through a Pinner."""

    _module: Any

    def __init__(self, policy: EgressPolicy, **options: Any) -> None:
        """`options` go to the module's underlying `AsyncHTTPTransport`s (e.g. `verify`)."""
        self.policy = policy
        self._pinner = Pinner(policy, self._module, **options)

    async def handle_async_request(self, request: Any) -> Any:
        """Send `request` to the address the policy checked for its host."""
        return await self._pinner.send(request)

    async def aclose(self) -> None:
        """Close every connection pool."""
        await self._pinner.aclose()


class GuardedTransport(_PinnedTransport, httpx.AsyncBaseTransport):
    """An httpx transport that sends each request only to an address the policy allows."""

    _module = httpx


def guarded_transport(policy: EgressPolicy, module: Any, **options: Any) -> Any:
    """A transport of httpx or its twin httpx2 (`module`) that connects only where `policy` allows."""
    return _guarded_class(module)(policy, **options)


@functools.cache
def _guarded_class(module: Any) -> type[_PinnedTransport]:
    """GuardedTransport for httpx; the same with httpx2's base class (so its isinstance checks pass) for httpx2."""
    if module is httpx:
        return GuardedTransport
    return type("GuardedTransport", (_PinnedTransport, module.AsyncBaseTransport), {"_module": module})


def guarded_client(policy: EgressPolicy, **kwargs: Any) -> httpx.AsyncClient:
    """An AsyncClient under `policy`; proxies from the environment are ignored (they would bypass the check)."""
    return httpx.AsyncClient(transport=GuardedTransport(policy), trust_env=False, **kwargs)


_V6_NEVER = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "64:ff9b:1::/48",  # local-use NAT64
        "2001::/32",  # Teredo: the IPv4 inside is obfuscated
        "fec0::/10",  # site-local (deprecated, still routed by some)
        "5f00::/16",  # SRv6 SIDs
        "3fff::/20",  # documentation
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIIT = ipaddress.IPv6Network("::ffff:0:0:0/96")
_COMPAT = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (NAT64, 6to4, SIIT, IPv4-compatible), if any."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _SIIT or (address in _COMPAT and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _port_of(url: Any) -> int:
    """An httpx or httpx2 URL's port, the scheme's default when it names none."""
    return int(url.port or (443 if url.scheme == "https" else 80))


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
    if host == str(address) or _literal(host) is not None:
        where, entry = host, (f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}")
    else:  # the address a name resolves to stays unsaid: tenants need not map the server's network
        where, entry = f"{host} (it resolves to a non-public address)", f"{host}:{port}"
    return (
        f"the server does not connect to {where} port {port}: not a public address. An operator can allow it "
        f"with {SETTING} (e.g. {SETTING}={entry}; networks, addresses, host names or one port, comma-separated)"
    )
