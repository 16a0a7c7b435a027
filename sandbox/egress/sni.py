"""The server name a TLS client asks for (SNI), read from its ClientHello before any byte goes upstream."""

from __future__ import annotations

import asyncio
import struct

__all__ = ["MAX_HELLO", "NotTLS", "read_client_hello"]

MAX_HELLO = 64 * 1024  # a ClientHello with post-quantum key shares is ~2 KiB; this bounds what is buffered
_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_SERVER_NAME = 0x0000


class NotTLS(Exception):
    """The first bytes are not a TLS handshake (the tunnel carries another protocol)."""


async def read_client_hello(reader: asyncio.StreamReader) -> tuple[bytes, str | None]:
    """The bytes read (to send on upstream) and the SNI host name (None when the hello names none).

    Raises NotTLS (with the bytes read in `args[0]`) when the stream does not start with a TLS handshake
    record, ValueError when it does but the hello is malformed, IncompleteReadError when it ends early.
    """
    first = await reader.readexactly(1)
    if first[0] != _HANDSHAKE:
        raise NotTLS(first)
    header = first + await reader.readexactly(4)
    seen, body = bytearray(header), bytearray()
    need: int | None = None
    while True:
        if header[0] != _HANDSHAKE:
            raise ValueError("a TLS record other than the handshake came before the ClientHello ended")
        (length,) = struct.unpack("!H", header[3:5])
        if length == 0 or len(seen) + length > MAX_HELLO:
            raise ValueError("TLS record of a bad length")
        fragment = await reader.readexactly(length)
        seen += fragment
        body += fragment
        if need is None and len(body) >= 4:
            if body[0] != _CLIENT_HELLO:
                raise ValueError("the first TLS handshake message is not a ClientHello")
            need = 4 + int.from_bytes(body[1:4], "big")
            if need > MAX_HELLO:
                raise ValueError("ClientHello too large")
        if need is not None and len(body) >= need:
            break
        header = await reader.readexactly(5)
        seen += header
    return bytes(seen), _server_name(bytes(body[4:need]))


def _server_name(hello: bytes) -> str | None:
    """The host_name entry of the server_name extension of a ClientHello body."""
    cursor = 2 + 32  # legacy version, random
    cursor = _skip(hello, cursor, 1)  # session id
    cursor = _skip(hello, cursor, 2)  # cipher suites
    cursor = _skip(hello, cursor, 1)  # compression methods
    if cursor == len(hello):
        return None  # no extensions at all
    end = _skip(hello, cursor, 2)
    cursor += 2
    while cursor + 4 <= end:
        kind, length = struct.unpack("!HH", hello[cursor : cursor + 4])
        cursor += 4
        if cursor + length > end:
            raise ValueError("TLS extension past the hello's end")
        if kind == _SERVER_NAME:
            return _host_name(hello[cursor : cursor + length])
        cursor += length
    return None


def _host_name(extension: bytes) -> str:
    if len(extension) < 5:
        raise ValueError("server_name extension too short")
    (listed,) = struct.unpack("!H", extension[:2])
    cursor, end = 2, min(2 + listed, len(extension))
    while cursor + 3 <= end:
        kind, length = extension[cursor], struct.unpack("!H", extension[cursor + 1 : cursor + 3])[0]
        cursor += 3
        name = extension[cursor : cursor + length]
        if kind == 0 and len(name) == length:
            try:
                return name.decode("ascii")
            except UnicodeDecodeError:
                raise ValueError("server name is not ASCII") from None
        cursor += length
    raise ValueError("server_name extension without a host name")


def _skip(data: bytes, cursor: int, width: int) -> int:
    """The position after a length-prefixed vector (prefix of `width` bytes) at `cursor`."""
    if cursor + width > len(data):
        raise ValueError("ClientHello truncated")
    length = int.from_bytes(data[cursor : cursor + width], "big")
    if cursor + width + length > len(data):
        raise ValueError("ClientHello truncated")
    return cursor + width + length
