"""The port relay: a sandbox whose port never answers holds only its own session's share of the connects.

The daemon's connect to a port whose listener has a full backlog (or a daemon the sandbox replaced) takes
seconds; the relay's connects ran on a pool of 8 threads shared by every session of the node, and a ticket
was counted against the caps only once connected: one session's stalled connects queued everyone's.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from sandbox.ports import PortLimit
from tests.unit.test_port_relay import EchoGuest, _round_trip
from toolserver.nodes import port_relay
from toolserver.nodes.port_relay import PortRelay


class StalledGuest:
    """`connect_port` blocks until released, as a port whose backlog is full does for seconds."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def connect_port(self, port: int, timeout_s: float = 10.0) -> socket.socket:
        self.started += 1
        self.release.wait(30)
        near, far = socket.socketpair()
        far.close()
        return near


async def test_a_stalled_session_is_refused_past_its_share_and_others_still_connect() -> None:
    relay, stalled = PortRelay("127.0.0.1"), StalledGuest()
    pending = [
        asyncio.ensure_future(relay.ticket(stalled, "stuck", 8080))  # type: ignore[arg-type]
        for _ in range(port_relay.MAX_CONNECTING_PER_SESSION)
    ]
    try:
        await asyncio.sleep(0)  # every one of them has passed its checks
        with pytest.raises(PortLimit):
            await relay.ticket(stalled, "stuck", 8080)  # type: ignore[arg-type]
        ticket = await asyncio.wait_for(relay.ticket(EchoGuest(), "other", 8080), 20)  # type: ignore[arg-type]
        assert await asyncio.to_thread(_round_trip, ticket, b"not queued") == b"not queued"
    finally:
        stalled.release.set()
        await asyncio.gather(*pending, return_exceptions=True)
        await relay.close()
