"""The node side of the port relay, on loopback: tickets, their tokens, the splice and the caps.

The guest daemon is stood in for by a socket pair whose far end an echo thread serves (what `connect_port`
gives the relay is a connected socket, whatever is behind it).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator

import pytest

from sandbox.ports import PortClosed, PortLimit
from toolserver.nodes import port_relay
from toolserver.nodes.port_relay import PortRelay, RelayTicket, dial


class EchoGuest:
    """`connect_port` answers a socket spliced onto an echo server, or PortClosed for port 1."""

    def __init__(self) -> None:
        self.connected = 0

    def connect_port(self, port: int, timeout_s: float = 10.0) -> socket.socket:
        if port == 1:
            raise PortClosed("nothing listens on 1", port=port)
        near, far = socket.socketpair()
        threading.Thread(target=self._echo, args=(far,), daemon=True).start()
        self.connected += 1
        return near

    @staticmethod
    def _echo(sock: socket.socket) -> None:
        with sock:
            while data := sock.recv(1 << 16):
                sock.sendall(data)


@pytest.fixture
async def relay() -> AsyncIterator[PortRelay]:
    relay = PortRelay("127.0.0.1")
    yield relay
    await relay.close()


def _round_trip(ticket: RelayTicket, payload: bytes) -> bytes:
    with dial(ticket, 5.0) as sock:
        sock.settimeout(10)
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(1 << 16)
            assert chunk, "the relay closed early"
            got += chunk
        sender.join()
        return got


async def test_a_ticket_carries_bytes_both_ways(relay: PortRelay) -> None:
    ticket = await relay.ticket(EchoGuest(), "s1", 8080)  # type: ignore[arg-type]
    payload = bytes(range(256)) * 4096  # 1 MiB
    assert await asyncio.to_thread(_round_trip, ticket, payload) == payload
    assert relay.stats()["relayed"] == 1


async def test_a_token_works_once_and_a_wrong_one_never(relay: PortRelay) -> None:
    ticket = await relay.ticket(EchoGuest(), "s1", 8080)  # type: ignore[arg-type]
    wrong = RelayTicket(ticket.host, ticket.port, bytes(len(ticket.token)))
    with pytest.raises(OSError):
        await asyncio.to_thread(dial, wrong, 5.0)
    assert await asyncio.to_thread(_round_trip, ticket, b"first") == b"first"  # the wrong try cost nothing
    with pytest.raises(OSError):
        await asyncio.to_thread(dial, ticket, 5.0)
    assert relay.stats() | {"open": 0} == {"relayed": 1, "open": 0, "refused": 2, "waiting": 0}


async def test_an_unused_ticket_expires_and_its_connection_is_closed(
    relay: PortRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(port_relay, "TICKET_TTL_S", 0.0)
    ticket = await relay.ticket(EchoGuest(), "s1", 8080)  # type: ignore[arg-type]
    assert relay.stats()["waiting"] == 0
    with pytest.raises(OSError):
        await asyncio.to_thread(dial, ticket, 5.0)


async def test_a_closed_port_fails_the_ticket(relay: PortRelay) -> None:
    with pytest.raises(PortClosed):
        await relay.ticket(EchoGuest(), "s1", 1)  # type: ignore[arg-type]
    assert relay.stats()["waiting"] == 0


async def test_tickets_waiting_for_their_replica_are_capped_per_session(relay: PortRelay) -> None:
    guest = EchoGuest()
    for _ in range(port_relay.MAX_TICKETS_PER_SESSION):
        await relay.ticket(guest, "greedy", 8080)  # type: ignore[arg-type]
    with pytest.raises(PortLimit):
        await relay.ticket(guest, "greedy", 8080)  # type: ignore[arg-type]
    ticket = await relay.ticket(guest, "other", 8080)  # type: ignore[arg-type]
    assert await asyncio.to_thread(_round_trip, ticket, b"still served") == b"still served"


async def test_a_connection_that_sends_no_token_is_dropped(
    relay: PortRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(port_relay, "HANDSHAKE_S", 0.2)
    ticket = await relay.ticket(EchoGuest(), "s1", 8080)  # type: ignore[arg-type]

    def silent() -> bytes:
        with socket.create_connection((ticket.host, ticket.port), timeout=10) as sock:
            return sock.recv(1)

    assert await asyncio.to_thread(silent) == b""  # closed by the relay, not by the 10 s timeout
    assert await asyncio.to_thread(_round_trip, ticket, b"after") == b"after"
