"""The kernel relay against a hostile peer speaking raw ZMTP: each way past its caps ends in a breach."""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from sandbox._kernel_relay import MAX_CONNECTIONS, KernelRelay

GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def command(name: bytes, body: bytes = b"") -> bytes:
    payload = bytes([len(name)]) + name + body
    return bytes([0x04, len(payload)]) + payload


READY = command(b"READY", b"\x0bSocket-Type" + struct.pack(">I", 3) + b"PUB")


@dataclass
class Relayed:
    relay: KernelRelay
    breaches: list[str]
    received: bytearray = field(default_factory=bytearray)


@pytest.fixture
async def relayed(tmp_path) -> AsyncIterator[Relayed]:
    received = bytearray()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()

    server = await asyncio.start_unix_server(upstream, path=str(tmp_path / "host-2"))
    breaches: list[str] = []
    relay = KernelRelay(
        str(tmp_path / "kernel-2"),
        str(tmp_path / "host-2"),
        max_message=1 << 20,
        max_parts=64,
        on_breach=breaches.append,
    )
    relay.start()
    yield Relayed(relay, breaches, received)
    await relay.close()
    server.close()


async def _send(relayed: Relayed, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(relayed.relay.listen_path)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def _until(check, timeout_s: float = 10.0) -> bool:
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_ping_flood_after_ready_is_a_breach(relayed: Relayed) -> None:
    reader, writer = await _send(relayed, GREETING + READY + command(b"PING", b"\x00\x00") * 1000)
    assert await _until(lambda: bool(relayed.breaches))
    assert "after READY" in relayed.breaches[0]
    assert await asyncio.wait_for(reader.read(), 10) == b""  # the relay hung up
    assert relayed.received.count(b"PING") <= 1  # what broke the cap never went on
    writer.close()


async def test_no_byte_of_an_older_protocol_reaches_the_host(relayed: Relayed) -> None:
    # A ZMTP 1.0 peer: libzmq would take this as a frame header at once; the relay decides on byte 0.
    _, writer = await _send(relayed, b"\x01\x00")
    assert await _until(lambda: bool(relayed.breaches))
    await asyncio.sleep(0.2)
    assert bytes(relayed.received) == b""
    writer.close()


async def test_connecting_again_and_again_replaces_the_kernel(relayed: Relayed) -> None:
    writers = []
    for _ in range(MAX_CONNECTIONS):
        writers.append((await _send(relayed, GREETING + READY))[1])
        await asyncio.sleep(0.1)
    assert relayed.breaches == []
    writers.append((await _send(relayed, GREETING + READY))[1])
    assert await _until(lambda: bool(relayed.breaches))
    assert "connections" in relayed.breaches[0]
    assert await _until(lambda: not os.path.exists(relayed.relay.listen_path))  # nobody else gets in
    for writer in writers:
        writer.close()


async def test_an_honest_peer_passes(relayed: Relayed) -> None:
    message = bytes([0x00, 5]) + b"hello"
    _, writer = await _send(relayed, GREETING + READY + message)
    assert await _until(lambda: relayed.received.endswith(b"hello"))
    assert relayed.breaches == []
    writer.close()
