"""Port traffic from another node: the session's manager splices a one-time-ticket TCP connection onto its port.

An ingress replica on another node than a session's sandbox cannot open that sandbox's guest daemon socket. It
asks the owning node's manager (over Ray) for a ticket: the manager connects to the port through the daemon at
once (so a closed port fails that call, with its own error), holds the connection for TICKET_TTL_S, and answers
its listener's address and a random token. The replica connects there, sends the token, reads one byte of
go-ahead, and from then on that TCP connection is the daemon's. A token works once and only its hash is kept; a
connection without a good token within HANDSHAKE_S is dropped; tickets, handshakes and open relays are capped per
node (PortLimit past them), on top of the replica's own per-session caps.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sandbox._guest_client import GuestClient
from sandbox.ports import PortLimit

__all__ = ["GO", "TOKEN_BYTES", "PortRelay", "RelayHost", "RelayTicket", "dial"]

TOKEN_BYTES = 32
GO = b"+"
TICKET_TTL_S = 10.0
HANDSHAKE_S = 5.0
CONNECT_TIMEOUT_S = 10.0
CHUNK = 1 << 16
MAX_TICKETS = 128  # connected to a port, waiting for their replica
MAX_TICKETS_PER_SESSION = 32
# relay-pending: a session's tickets still connecting (its sandbox decides how long a connect takes)
MAX_CONNECTING_PER_SESSION = 8
MAX_HANDSHAKES = 64  # TCP connections that have not sent a token yet
MAX_OPEN = 1024
# relay-pending: a thread for every ticket the caps let in, so a stalled port never queues another's connect
_CONNECTS = ThreadPoolExecutor(MAX_TICKETS, thread_name_prefix="relay-connect")


@dataclass(frozen=True)
class RelayTicket:
    """Where to connect for one relayed connection, and the token to send first (good once, for a while)."""

    host: str
    port: int
    token: bytes


@dataclass
class _Held:
    sock: socket.socket
    session_id: str
    deadline: float


class PortRelay:
    """One node's relay listener, its tickets and its open relays (all on the manager's event loop)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._server: asyncio.Server | None = None
        self._starting = asyncio.Lock()
        self._held: dict[bytes, _Held] = {}
        self._handshakes = 0
        self._connecting: Counter[str] = Counter()  # relay-pending: per session
        self.open = 0
        self.relayed = 0
        self.refused = 0

    async def ticket(self, guest: GuestClient, session_id: str, port: int) -> RelayTicket:
        """Connect to `port` through the session's guest daemon; a ticket for that connection."""
        self._forget_expired()
        connecting = self._connecting[session_id]  # relay-pending: counted from before the first await
        held_here = connecting + sum(1 for h in self._held.values() if h.session_id == session_id)
        waiting = len(self._held) + sum(self._connecting.values())
        if (
            waiting >= MAX_TICKETS
            or held_here >= MAX_TICKETS_PER_SESSION
            or connecting >= MAX_CONNECTING_PER_SESSION
        ):
            raise PortLimit(
                f"too many port connections of session {session_id} are waiting to be relayed",
                limit=MAX_TICKETS_PER_SESSION,
            )
        self._connecting[session_id] += 1
        try:
            listening = await self._listening()
            loop = asyncio.get_running_loop()
            sock = await loop.run_in_executor(_CONNECTS, guest.connect_port, port, CONNECT_TIMEOUT_S)
        finally:
            self._connecting[session_id] -= 1
            if self._connecting[session_id] <= 0:
                del self._connecting[session_id]
        token = secrets.token_bytes(TOKEN_BYTES)
        self._held[_digest(token)] = _Held(sock, session_id, time.monotonic() + TICKET_TTL_S)
        loop.call_later(TICKET_TTL_S + 0.5, self._forget_expired)
        return RelayTicket(self.host, listening, token)

    async def close(self) -> None:
        """Stop listening and drop every ticket (open relays end with their connections)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for held in self._held.values():
            held.sock.close()
        self._held.clear()

    async def _listening(self) -> int:
        async with self._starting:
            if self._server is None:
                self._server = await asyncio.start_server(self._accept, self.host, 0, limit=CHUNK)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def stats(self) -> dict[str, int]:
        """Connections relayed so far, open now and refused, and tickets waiting for their replica."""
        self._forget_expired()
        return {
            "relayed": self.relayed,
            "open": self.open,
            "refused": self.refused,
            "waiting": len(self._held),
        }

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for digest in [d for d, h in self._held.items() if h.deadline <= now]:
            self._held.pop(digest).sock.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held = None
        try:
            if self._handshakes >= MAX_HANDSHAKES:
                return
            self._handshakes += 1
            try:
                token = await asyncio.wait_for(reader.readexactly(TOKEN_BYTES), HANDSHAKE_S)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
                return
            finally:
                self._handshakes -= 1
            held = self._held.pop(_digest(token), None)
            if held is None or held.deadline <= time.monotonic() or self.open >= MAX_OPEN:
                self.refused += 1
                return
            self.open += 1
            self.relayed += 1
            try:
                guest_reader, guest_writer = await asyncio.open_connection(sock=held.sock, limit=CHUNK)
                held = None  # the writer owns the socket now
                writer.write(GO)
                await _splice(reader, writer, guest_reader, guest_writer)
            finally:
                self.open -= 1
        finally:
            if held is not None:
                held.sock.close()
            writer.close()


class RelayHost:
    """Mixed into the node's manager actor: `port_relay_open` for replicas on other nodes."""

    _relay: PortRelay | None = None
    port_endpoint: Any  # the manager's: the host path of the session's guest daemon socket

    def _relay_host(self) -> str:
        import ray

        return str(ray.util.get_node_ip_address())

    async def port_relay_open(self, session_id: str, port: int) -> RelayTicket:
        """A ticket for one connection to `port` of the session's sandbox, through this node's relay listener."""
        guest = GuestClient(await self.port_endpoint(session_id))
        if self._relay is None:
            self._relay = PortRelay(self._relay_host())
        return await self._relay.ticket(guest, session_id, port)

    async def shutdown(self) -> None:
        """Close the relay listener, then shut the manager down."""
        if self._relay is not None:
            await self._relay.close()
            self._relay = None
        await super().shutdown()  # type: ignore[misc]

    async def port_relay_stats(self) -> dict[str, int]:
        """This node's relay counts (all zero before its first ticket)."""
        if self._relay is None:
            return {"relayed": 0, "open": 0, "refused": 0, "waiting": 0}
        return self._relay.stats()


def dial(ticket: RelayTicket, timeout_s: float = CONNECT_TIMEOUT_S) -> socket.socket:
    """The relayed connection of `ticket`, ready for the port's protocol (blocking: call it in a thread).

    OSError when the relay cannot be reached or refuses the token.
    """
    sock = socket.create_connection((ticket.host, ticket.port), timeout=timeout_s)
    try:
        sock.sendall(ticket.token)
        if sock.recv(1) != GO:
            raise ConnectionRefusedError("the sandbox's node refused the relay ticket")
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (OSError, RuntimeError):
        pass  # the other side went away: the splice ends


async def _splice(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    """Bytes both ways until either side ends (the other is closed then)."""
    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(_pump(a_reader, b_writer)),
        asyncio.create_task(_pump(b_reader, a_writer)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        b_writer.close()


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()
