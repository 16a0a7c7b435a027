"""Bodies the server reads from tenant-chosen urls, in bounded memory: decoded piece by piece, cut at a ceiling.

httpx decodes a response's Content-Encoding one network read at a time with no limit on the output, so a single
64 KiB read of a gzip bomb comes back as a 64 MiB piece (brotli or zstd, when installed, expand further).
`BoundedBodyTransport` asks for gzip or deflate only, decodes them itself in pieces of at most `PIECE_BYTES`,
refuses any other coding, and with `max_bytes` ends a body past that ceiling with `ResponseTooLarge`. It wraps a
transport of httpx or of its twin httpx2 (the MCP SDK's), so every reader above it sees small pieces.

The server-wide ceiling is `TOOLSERVER_MAX_OUTBOUND_BODY_MB` (default 16): http tools, MCP servers and agents'
LLM endpoints are all read under it.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from toolserver.outbound.errors import ToolCallFailed

__all__ = [
    "DEFAULT_MAX_OUTBOUND_BYTES",
    "PIECE_BYTES",
    "SETTING",
    "BoundedBodyTransport",
    "ResponseTooLarge",
    "bounded_transport",
]

SETTING = "TOOLSERVER_MAX_OUTBOUND_BODY_MB"
DEFAULT_MAX_OUTBOUND_BYTES = 16 * 1024 * 1024
PIECE_BYTES = 64 * 1024
_CODINGS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class ResponseTooLarge(ToolCallFailed):
    """A body from a tenant-chosen url went past the server's ceiling; nothing past it was read."""

    def __init__(self, where: str, max_bytes: int) -> None:
        super().__init__(
            f"the response from {where} is over {max_bytes} bytes, the most this server reads from a url "
            f"({SETTING})",
            error_type="response_too_large",
            max_bytes=max_bytes,
        )
        self.max_bytes = max_bytes


class BoundedBodyTransport:
    """Wraps an httpx (or httpx2: `module`) transport: bounded decoding, and at most `max_bytes` per body.

    Make one with `bounded_transport`. `overflowed` is set once a body went past the ceiling (and `on_overflow`
    called): from then on this transport sends nothing more, so a client that retries or reconnects on a broken
    stream, as the MCP SDK does, gets nowhere.
    """

    def __init__(
        self,
        inner: Any,
        module: Any,
        max_bytes: int | None = None,
        on_overflow: Callable[[], object] | None = None,
    ) -> None:
        self._inner = inner
        self._module = module
        self.max_bytes = max_bytes
        self.overflowed: ResponseTooLarge | None = None
        self._on_overflow = on_overflow

    async def handle_async_request(self, request: Any) -> Any:
        """Send `request` asking for codings decoded here; the response's body comes in bounded pieces."""
        if self.overflowed is not None:
            raise self.overflowed
        request.headers["Accept-Encoding"] = "gzip, deflate"  # the codings decoded here, in bounded pieces
        response = await self._inner.handle_async_request(request)
        coding = response.headers.get("content-encoding", "").strip().lower()
        if coding not in ("", "identity", *_CODINGS):
            await response.aclose()
            raise self._module.DecodingError(
                f"{_where(request)} answered with Content-Encoding {coding[:40]!r}; this server reads "
                "gzip, deflate or none"
            )
        drop = {b"content-encoding", b"content-length"} if coding in _CODINGS else set()
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in drop]
        stream = _classes(self._module)[1](self, response.stream, _where(request), _CODINGS.get(coding))
        return self._module.Response(
            response.status_code, headers=headers, stream=stream, extensions=response.extensions
        )

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()

    def _check(self, total: int, where: str) -> None:
        if self.max_bytes is not None and total > self.max_bytes:
            self.overflowed = ResponseTooLarge(where, self.max_bytes)
            if self._on_overflow is not None:
                self._on_overflow()
            raise self.overflowed


def bounded_transport(
    inner: Any, module: Any, max_bytes: int | None = None, on_overflow: Callable[[], object] | None = None
) -> Any:
    """`inner` (a transport of httpx or httpx2, the `module`) behind bounded decoding and a ceiling: a
    BoundedBodyTransport that is also a `module.AsyncBaseTransport`."""
    return _classes(module)[0](inner, module, max_bytes, on_overflow)


class _BoundedStream:
    """The raw body, decoded in pieces of at most PIECE_BYTES, counted against the transport's ceiling."""

    def __init__(self, owner: BoundedBodyTransport, raw: Any, where: str, wbits: int | None) -> None:
        self._owner = owner
        self._raw = raw
        self._where = where
        self._wbits = wbits

    async def __aiter__(self) -> AsyncIterator[bytes]:
        inflater = None if self._wbits is None else _Inflater(self._wbits, self._owner._module)
        total = 0
        async for data in self._raw:
            for piece in [data] if inflater is None else inflater.feed(data):
                total += len(piece)
                self._owner._check(total, self._where)
                yield piece
        if inflater is not None:
            for piece in inflater.finish():
                total += len(piece)
                self._owner._check(total, self._where)
                yield piece

    async def aclose(self) -> None:
        await self._raw.aclose()


@functools.cache
def _classes(module: Any) -> tuple[type, type]:
    """The transport and stream classes for httpx or httpx2: each checks `isinstance` against its own bases."""
    transport = type("BoundedBodyTransport", (BoundedBodyTransport, module.AsyncBaseTransport), {})
    stream = type("BoundedStream", (_BoundedStream, module.AsyncByteStream), {})
    return transport, stream


class _Inflater:
    """zlib with an output limit per call; `deflate` accepts both the zlib format and raw deflate."""

    def __init__(self, wbits: int, module: Any) -> None:
        self._wbits = wbits
        self._module = module
        self._obj = zlib.decompressobj(wbits)
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            first = self._obj.decompress(data, PIECE_BYTES)
        except zlib.error as exc:
            if self._started or self._wbits != zlib.MAX_WBITS:
                raise self._module.DecodingError(f"the body is not valid {self._name}: {exc}") from None
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send
            first = self._decompress(data)
        self._started = True
        if first:
            yield first
        yield from self._drain()

    def finish(self) -> Iterator[bytes]:
        yield from self._drain()
        try:
            rest = self._obj.flush()
        except zlib.error as exc:
            raise self._module.DecodingError(f"the body is not valid {self._name}: {exc}") from None
        for i in range(0, len(rest), PIECE_BYTES):
            yield rest[i : i + PIECE_BYTES]

    def _drain(self) -> Iterator[bytes]:
        # What the last input still holds: more output per call than PIECE_BYTES waits here, never in memory.
        while True:
            piece = self._decompress(self._obj.unconsumed_tail)
            if not piece:
                return
            yield piece

    def _decompress(self, data: bytes) -> bytes:
        try:
            return self._obj.decompress(data, PIECE_BYTES)
        except zlib.error as exc:
            raise self._module.DecodingError(f"the body is not valid {self._name}: {exc}") from None

    @property
    def _name(self) -> str:
        return "gzip" if self._wbits & 16 else "deflate"


def _where(request: Any) -> str:
    """scheme://host[:port]/path of a request, without its query (which can be long, and is the tenant's)."""
    url = request.url
    return str(url.copy_with(query=None, fragment=None))
