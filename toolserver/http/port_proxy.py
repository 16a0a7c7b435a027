"""The port proxy: HTTP and WebSocket to 127.0.0.1:port inside a sandbox, through its guest daemon.

httpcore speaks HTTP/1.1 over a connection that the guest daemon splices onto the port (its network backend
opens that connection instead of a TCP one), and `websockets` speaks to a WebSocket server the same way; no
protocol is parsed here by hand. The caller's API key and cookies never reach the sandbox. Per session and per
replica: at most `max_connections` open at once (429 past it), and `bytes_per_s` both ways together.

A replica on another node than the sandbox reaches the port through that node's manager instead
(`toolserver.nodes.port_relay`): a ticket over Ray, then a TCP connection that the manager splices onto the
port; everything above the connection (HTTP, WebSocket, the limits) is the same either way.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import httpcore
from fastapi import Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from websockets.asyncio.client import connect as ws_connect

from foundation.errors import Unavailable
from sandbox._guest_client import GuestClient
from sandbox.ports import PortLimit
from toolserver.nodes.port_relay import dial

__all__ = [
    "DirectPort",
    "PortConnector",
    "PortLimits",
    "RelayedPort",
    "check_local",
    "port_limits",
    "proxy_http",
    "proxy_websocket",
    "reach",
]

_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "cookie",
    "content-length",
}
MAX_WS_MESSAGE = 1 << 20
CONNECT_TIMEOUT_S = 10.0
# Handshakes with guest daemons run here, never in the loop's default pool that the replica's other work shares.
_CONNECTS = ThreadPoolExecutor(128, thread_name_prefix="port-connect")
MAX_CONNECTING_PER_SESSION = 8
"""direct-pending: a session's handshakes under way in this replica (its sandbox decides how long one takes)."""
_connecting: Counter[str] = Counter()


class PortConnector(Protocol):
    """Opens connections to ports of one session's sandbox."""

    async def connect(self, port: int) -> socket.socket:
        """A connected socket to 127.0.0.1:`port` inside the sandbox; PortClosed when nothing listens."""
        ...


class DirectPort:
    """Through the guest daemon's unix socket, on the sandbox's own node."""

    def __init__(self, guest: GuestClient, session_id: str = "") -> None:
        self.guest, self.session_id = guest, session_id

    async def connect(self, port: int) -> socket.socket:
        """Spliced by the guest daemon; PortLimit past the session's handshakes under way."""
        key = self.session_id  # direct-pending
        if key and _connecting[key] >= MAX_CONNECTING_PER_SESSION:
            raise PortLimit(
                f"session {key} has {_connecting[key]} port connections still being opened, the most it may",
                limit=MAX_CONNECTING_PER_SESSION,
            )
        _connecting[key] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                _CONNECTS, self.guest.connect_port, port, CONNECT_TIMEOUT_S
            )
        finally:
            _connecting[key] -= 1
            if _connecting[key] <= 0:
                del _connecting[key]


class RelayedPort:
    """Through the manager of the sandbox's node, from a replica on another node (one ticket per connection)."""

    def __init__(self, node: Any, session_id: str) -> None:
        self.node, self.session_id = node, session_id

    async def connect(self, port: int) -> socket.socket:
        """A ticket over Ray, then the relay's TCP connection; Unavailable when the relay cannot be reached."""
        ticket = await self.node.port_relay_open(self.session_id, port)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                _CONNECTS, dial, ticket, CONNECT_TIMEOUT_S
            )
        except OSError as exc:
            raise Unavailable(f"the port relay of the session's node did not answer: {exc}") from None


def _connector(guest: GuestClient | PortConnector) -> PortConnector:
    return DirectPort(guest) if isinstance(guest, GuestClient) else guest


async def _connect(guest: GuestClient | PortConnector, port: int) -> Any:
    return await _connector(guest).connect(port)


def _this_ray_node() -> str | None:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else None
    except Exception:
        return None


async def reach(node: Any, session_id: str) -> PortConnector:
    """How this replica reaches the session's ports: its guest daemon when on this node, else a relay."""
    path = await node.port_endpoint(session_id)  # also: the session is there
    owner = getattr(node, "node_id", None)
    if owner is not None and hasattr(node, "port_relay_open") and owner != _this_ray_node():
        return RelayedPort(node, session_id)
    return DirectPort(check_local(path), session_id)  # direct-pending


class PortLimits:
    """Open connections and a byte budget (a token bucket) per session, in this replica."""

    def __init__(self, max_connections: int, bytes_per_s: int) -> None:
        self.max_connections = max_connections
        self.bytes_per_s = bytes_per_s
        self._open: dict[str, int] = {}
        self._bucket: dict[str, tuple[float, float]] = {}

    def take(self, session_id: str) -> None:
        """Hold one connection of the session; PortLimit past the cap."""
        held = self._open.get(session_id, 0)
        if held >= self.max_connections:
            raise PortLimit(
                f"session {session_id} has {held} open connections to its ports, the most it may",
                limit=self.max_connections,
                setting="TOOLSERVER_PORT_MAX_CONNECTIONS",
            )
        self._open[session_id] = held + 1

    def release(self, session_id: str) -> None:
        """Give one connection back."""
        left = self._open.get(session_id, 1) - 1
        if left > 0:
            self._open[session_id] = left
        else:
            self._open.pop(session_id, None)

    async def spend(self, session_id: str, size: int) -> None:
        """Account `size` bytes; wait while the session is over its rate."""
        now = time.monotonic()
        tokens, at = self._bucket.get(session_id, (float(self.bytes_per_s), now))
        tokens = min(float(self.bytes_per_s), tokens + (now - at) * self.bytes_per_s) - size
        self._bucket[session_id] = (tokens, now)
        if tokens < 0:
            await asyncio.sleep(-tokens / self.bytes_per_s)


def port_limits(app_state: Any) -> PortLimits:
    """This replica's counters, made from the server's settings on first use."""
    limits: PortLimits | None = getattr(app_state, "port_limits", None)
    if limits is None:
        settings = app_state.services.settings
        limits = app_state.port_limits = PortLimits(settings.port_max_connections, settings.port_bytes_per_s)
    return limits


def check_local(socket_path: str) -> GuestClient:
    """The guest daemon at `socket_path`, when this replica runs on the sandbox's node; else Unavailable."""
    try:
        is_socket = stat.S_ISSOCK(os.lstat(socket_path).st_mode)
    except OSError:
        is_socket = False
    if not is_socket:
        raise Unavailable(
            "this server replica is not on the node of the session's sandbox; ports are proxied only from there"
        )
    return GuestClient(socket_path)


class _Spliced(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await asyncio.wait_for(self._reader.read(max_bytes), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._writer.write(buffer)
        await asyncio.wait_for(self._writer.drain(), timeout)

    async def aclose(self) -> None:
        self._writer.close()

    def get_extra_info(self, info: str) -> Any:
        return None


class _ThroughGuest(httpcore.AsyncNetworkBackend):
    """Every "TCP" connection is one the guest daemon splices onto the port (the URL's host is ignored)."""

    def __init__(self, guest: GuestClient | PortConnector, port: int) -> None:
        self._guest, self._port = guest, port

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        sock = await _connect(self._guest, self._port)
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        return _Spliced(reader, writer)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _target(port: int, path: str, query: str) -> str:
    target = "/" + path.lstrip("/")
    return f"http://127.0.0.1:{port}{target}" + (f"?{query}" if query else "")


async def proxy_http(
    request: Request,
    guest: GuestClient | PortConnector,
    port: int,
    path: str,
    limits: PortLimits,
    session_id: str,
    prefix: str,
) -> StreamingResponse:
    """Send the request on to the port and stream the answer back."""
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
    headers += [("host", f"127.0.0.1:{port}"), ("x-forwarded-prefix", prefix)]
    if "content-length" in request.headers:
        headers.append(("content-length", request.headers["content-length"]))
    limits.take(session_id)
    pool = httpcore.AsyncConnectionPool(network_backend=_ThroughGuest(guest, port), max_connections=1)

    async def upload() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            await limits.spend(session_id, len(chunk))
            yield chunk

    released = False

    async def done() -> None:
        nonlocal released
        await pool.aclose()
        if not released:  # once, from the background task or from a body that broke off
            released = True
            limits.release(session_id)

    try:
        answer = await pool.handle_async_request(
            httpcore.Request(
                request.method,
                _target(port, path, request.url.query),
                headers=headers,
                content=upload(),
                extensions={"timeout": {"connect": CONNECT_TIMEOUT_S, "read": None}},
            )
        )
    except BaseException:
        await done()
        raise

    async def download() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_stream():
                await limits.spend(session_id, len(chunk))
                yield chunk
        finally:
            await answer.aclose()
            await done()  # the background task does not run when the body raises

    response = StreamingResponse(download(), status_code=answer.status, background=BackgroundTask(done))
    kept = _HOP - {"content-length", "cookie", "authorization"} | {"service-worker-allowed"}
    response.raw_headers = [
        (k.lower(), v) for k, v in answer.headers if k.lower().decode("latin-1") not in kept
    ]
    return response


async def proxy_websocket(
    ws: WebSocket,
    guest: GuestClient | PortConnector,
    port: int,
    path: str,
    limits: PortLimits,
    session_id: str,
) -> None:
    """Accept the client once the sandbox's server took the handshake, then relay messages both ways."""
    limits.take(session_id)
    try:
        sock = await _connect(guest, port)
        uri = _target(port, path, ws.url.query).replace("http://", "ws://", 1)
        offered = list(ws.scope.get("subprotocols") or [])
        try:
            upstream = await ws_connect(
                uri,
                sock=sock,
                subprotocols=offered or None,
                max_size=MAX_WS_MESSAGE,
                max_queue=2,  # what a sandbox can make this replica hold: a few frames, never inflated ones
                compression=None,
                open_timeout=CONNECT_TIMEOUT_S,
            )
        except BaseException:
            sock.close()
            raise
        async with upstream:
            await ws.accept(subprotocol=upstream.subprotocol)
            await _relay(ws, upstream, limits, session_id)
    finally:
        limits.release(session_id)


async def _relay(ws: WebSocket, upstream: Any, limits: PortLimits, session_id: str) -> None:
    async def up() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes") if message.get("bytes") is not None else message.get("text")
            if data is None:
                continue
            await limits.spend(session_id, len(data))
            await upstream.send(data)

    async def down() -> None:
        async for message in upstream:
            await limits.spend(session_id, len(message))
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_text(message)

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await ws.close()
        except RuntimeError:
            pass  # already closed
