"""The guest daemon's wire protocol: length-prefixed JSON headers, raw payloads, typed error replies.

Frames, both directions: a 4-byte big-endian header length, a UTF-8 JSON header, then `header["payload"]`
raw bytes when that key is present. The host's side is `sandbox/_guest_client.py`.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator

MAX_HEADER = 1 << 20
MAX_PAYLOAD = 1 << 30
CHUNK = 1 << 16


class RequestError(Exception):
    """A request that fails with a typed error reply."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes from `sock`; a connection closed before them is a bad request."""
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(min(size - len(buf), CHUNK))
        if not chunk:
            raise RequestError("bad_request", "connection closed in the middle of a frame")
        buf += chunk
    return bytes(buf)


def recv_header(sock: socket.socket) -> dict:
    """The next request header: a JSON object with a string `op`, at most MAX_HEADER bytes."""
    (size,) = struct.unpack(">I", recv_exact(sock, 4))
    if size > MAX_HEADER:
        raise RequestError("bad_request", f"header of {size} bytes is over the {MAX_HEADER} byte cap")
    try:
        header = json.loads(recv_exact(sock, size).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError("bad_request", f"header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("op"), str):
        raise RequestError("bad_request", "header must be a JSON object with a string 'op'")
    return header


def send_frame(sock: socket.socket, header: dict, payload: bytes = b"") -> None:
    """Send one frame: the header, then `payload` (whose length the header's `payload` gives)."""
    data = json.dumps(header).encode("utf-8")
    sock.sendall(struct.pack(">I", len(data)) + data + payload)


def error_reply(kind: str, message: str) -> dict:
    """The reply to a request that failed."""
    return {"ok": False, "error": {"type": kind, "message": message}}


def number(header: dict, name: str, default: float, maximum: float, kind: type = int) -> float:
    """A non-negative number from the header (an int unless `kind` is float), clamped to `maximum`."""
    value = header.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise RequestError("bad_request", f"'{name}' must be a non-negative number")
    if kind is int and not isinstance(value, int):
        raise RequestError("bad_request", f"'{name}' must be an integer")
    return min(value, maximum)


class Payload:
    """The raw bytes that follow a request header."""

    def __init__(self, sock: socket.socket, size: int) -> None:
        self.sock = sock
        self.remaining = size

    def chunks(self) -> Iterator[bytes]:
        """The payload as it arrives; a connection closed before its end is a bad request."""
        while self.remaining:
            chunk = self.sock.recv(min(self.remaining, CHUNK))
            if not chunk:
                raise RequestError("bad_request", "connection closed before the whole payload came")
            self.remaining -= len(chunk)
            yield chunk

    def discard(self) -> None:
        """Read and drop what is left, so that the reply can still be sent."""
        try:
            for _ in self.chunks():
                pass
        except (RequestError, OSError):
            pass
