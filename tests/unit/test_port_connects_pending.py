"""A replica's port proxy: a sandbox whose port stalls its handshakes holds only its session's share of them.

The guest daemon's connect to a port whose listener has a full backlog takes its 5 s timeout; the replica
ran those handshakes on 16 threads shared by every session, and a session may hold 32 connections: one
session's stalled connects kept every other tenant's port traffic of that replica waiting.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from sandbox.ports import PortLimit
from toolserver.http import port_proxy
from toolserver.http.port_proxy import DirectPort


class Guest:
    """`connect_port` blocks until released when `stall`, else answers a connected socket."""

    def __init__(self, stall: bool) -> None:
        self.stall, self.release = stall, threading.Event()

    def connect_port(self, port: int, timeout_s: float = 10.0) -> socket.socket:
        if self.stall:
            self.release.wait(30)
        near, far = socket.socketpair()
        far.close()
        return near


async def test_stalled_handshakes_are_capped_per_session_and_others_still_connect() -> None:
    stalled = Guest(stall=True)
    pending = [
        asyncio.ensure_future(DirectPort(stalled, session).connect(8080))  # type: ignore[arg-type]
        for session in ("stuck-1", "stuck-2")
        for _ in range(port_proxy.MAX_CONNECTING_PER_SESSION)
    ]
    try:
        await asyncio.sleep(0)
        with pytest.raises(PortLimit):
            await DirectPort(stalled, "stuck-1").connect(8080)  # type: ignore[arg-type]
        sock = await asyncio.wait_for(DirectPort(Guest(stall=False), "other").connect(8080), 20)  # type: ignore[arg-type]
        sock.close()
    finally:
        stalled.release.set()
        for sock in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(sock, socket.socket):
                sock.close()
