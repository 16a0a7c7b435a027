"""One session's egress proxy: HTTP CONNECT and plain HTTP, allowed by name, pinned to checked addresses.

It listens on a unix socket in the session's private directory (the sandbox has no network interface but
loopback; its forwarder splices to this socket). A request head is parsed with h11. CONNECT is matched on its
target and, when the tunnel starts with a TLS ClientHello, on the SNI too; plain HTTP on the absolute URL's
host (which the Host header must agree with), sent on with `Connection: close` so one connection is one
request's destination. Each connection goes to the address `AddressCheck.pin` resolved and checked once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import h11

from sandbox.egress.base import AddressCheck, EgressLimits, Resolve
from sandbox.egress.journal import Attempt, Journal
from sandbox.egress.rules import EgressRule, allowed, normalize_host
from sandbox.egress.sni import NotTLS, read_client_hello

__all__ = ["SessionProxy"]

HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT_S = 30.0  # for the request head, and again for a tunnel's first bytes
CONNECT_TIMEOUT_S = 10.0
RESOLVE_TIMEOUT_S = 10.0
LOOKUPS_PER_SESSION = 2  # name lookups in flight; a slot is held until its lookup thread is done
CHUNK = 64 * 1024
LOG_EVERY_S = 60.0

log = logging.getLogger(__name__)
_HOP_BY_HOP = {b"connection", b"proxy-connection", b"proxy-authorization", b"keep-alive", b"te", b"upgrade"}


class Refused(Exception):
    """A request the proxy answers itself with `status` and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class SessionProxy:
    """The egress proxy of one session, on `socket_path`."""

    def __init__(
        self,
        session_id: str,
        rules: tuple[EgressRule, ...],
        check: AddressCheck,
        limits: EgressLimits,
        socket_path: str,
        on_denied: Callable[[Attempt], None] | None = None,
        resolve: Resolve | None = None,
    ) -> None:
        """`resolve` looks names up (off the event loop, in a pool of the node's egress); default: the loop's."""
        self.session_id = session_id
        self.rules = rules
        self.check = check
        self.limits = limits
        self.socket_path = socket_path
        self.journal = Journal(limits.log_entries, on_denied)
        self._bucket = _Bucket(limits.bytes_per_s)
        self._open = 0
        self._rejecting = 0
        self._lookups = asyncio.Semaphore(LOOKUPS_PER_SESSION)
        self._resolve = resolve
        self._logged_at = 0.0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (a stale socket file from before a restart is replaced); the sandbox's user may connect."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._server = await asyncio.start_unix_server(self._accept, path=self.socket_path, limit=CHUNK)
        os.chmod(self.socket_path, 0o666)

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception:  # a bug, not the sandbox's input: logged at most once a minute per session
            if time.monotonic() - self._logged_at > LOG_EVERY_S:
                self._logged_at = time.monotonic()
                log.exception("egress proxy of session %s failed on a connection", self.session_id)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempt = Attempt(time=time.time(), host="", port=0, method="")
        if self._open >= self.limits.max_connections:
            await self._reject(reader, writer, attempt)
            return
        self._open += 1
        started = time.monotonic()
        try:
            await self._route(reader, writer, attempt)
        except Refused as exc:
            attempt.reason = exc.reason
            self.journal.denied(attempt)
            if exc.status:  # 0: inside a tunnel already open, where only closing it is understood
                await _answer(writer, exc.status, exc.reason)
        finally:
            self._open -= 1
            if attempt.allowed:
                attempt.duration_s = round(time.monotonic() - started, 3)

    async def _reject(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attempt: Attempt
    ) -> None:
        """Past the cap: a 429 for as many more again (read briefly, so it is seen), then closed unanswered."""
        attempt.reason = f"over {self.limits.max_connections} open connections"
        self.journal.denied(attempt)
        if self._rejecting >= self.limits.max_connections:
            return  # closed at once: a flood holds no descriptor of the node
        self._rejecting += 1
        try:
            await _answer(writer, 429, attempt.reason)
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                if writer.can_write_eof():
                    writer.write_eof()
                await asyncio.wait_for(reader.read(CHUNK), 0.5)
        finally:
            self._rejecting -= 1

    async def _route(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attempt: Attempt
    ) -> None:
        request, rest = await asyncio.wait_for(_read_head(reader), HEAD_TIMEOUT_S)
        attempt.method = request.method.decode("ascii", "replace")[:16]
        try:
            if request.method == b"CONNECT":
                host, port = _authority(request.target.decode("ascii", "replace"), None)
            else:
                host, port = self._plain_target(request)
        except (ValueError, UnicodeError) as exc:
            raise Refused(400, f"bad request target: {exc}") from None
        attempt.host, attempt.port = host, port
        if not allowed(self.rules, host, port):
            raise Refused(403, f"{host}:{port} is not on this sandbox's egress allow-list")
        address = await self._pin(host, port)
        if request.method == b"CONNECT":
            # The client sends its first bytes only after the 200; the server name they carry is checked
            # before anything is opened upstream, so a refused tunnel never reaches its target.
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            first = await asyncio.wait_for(
                self._tls_hello(_Prefixed(rest, reader), host, port), HEAD_TIMEOUT_S
            )
            tunnel = True
        else:
            first, tunnel = _origin_form(request, host, port) + rest, False
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(address, port, limit=CHUNK), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            reason = f"cannot connect to {host}:{port}: {exc or type(exc).__name__}"
            raise Refused(0 if tunnel else 502, reason) from None
        try:
            self.journal.allowed(attempt)
            await self._splice(first, reader, writer, up_reader, up_writer, attempt)
        finally:
            up_writer.close()

    async def _pin(self, host: str, port: int) -> str:
        """The checked address for `host`, within RESOLVE_TIMEOUT_S (a free lookup slot included)."""
        try:
            return await asyncio.wait_for(self._pin_in_slot(host, port), RESOLVE_TIMEOUT_S)
        except TimeoutError:
            raise Refused(504, f"looking {host} up took over {RESOLVE_TIMEOUT_S:g} s") from None
        except Refused:
            raise
        except Exception as exc:  # the policy's refusal or a name that does not resolve
            raise Refused(403, getattr(exc, "message", None) or str(exc) or type(exc).__name__) from None

    async def _pin_in_slot(self, host: str, port: int) -> str:
        await self._lookups.acquire()
        lookup = asyncio.ensure_future(self.check.pin(host, port, resolve=self._resolve))
        lookup.add_done_callback(lambda _: self._lookups.release())  # held until the lookup is really over
        return await asyncio.shield(lookup)

    def _plain_target(self, request: h11.Request) -> tuple[str, int]:
        url = urlsplit(request.target.decode("ascii", "replace"))
        if url.scheme != "http" or not url.hostname:
            raise Refused(400, "plain requests need an absolute http:// URL (https goes through CONNECT)")
        host, port = normalize_host(url.hostname), url.port or 80
        for name, value in request.headers:
            if name == b"host":
                given, given_port = _authority(value.decode("ascii", "replace"), 80)
                if (given, given_port) != (host, port):
                    raise Refused(400, "the Host header names another host than the URL")
        return host, port

    async def _tls_hello(self, reader: _Prefixed, host: str, port: int) -> bytes:
        """The tunnel's first bytes; a TLS ClientHello must ask for the CONNECT target's name (or an allowed one)."""
        try:
            seen, name = await read_client_hello(reader)  # type: ignore[arg-type]
        except NotTLS as exc:
            return bytes(exc.args[0]) + reader.rest()
        except ValueError as exc:
            raise Refused(0, f"malformed TLS ClientHello: {exc}") from None
        if name is not None:
            wanted = normalize_host(name)
            by_name = not _is_address(host)
            if (by_name and wanted != host) or (not by_name and not allowed(self.rules, wanted, port)):
                raise Refused(0, f"TLS server name {wanted[:64]!r} does not match the CONNECT target {host}")
        return seen + reader.rest()

    async def _splice(
        self,
        first: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        attempt: Attempt,
    ) -> None:
        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, upward: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(CHUNK):
                    await self._bucket.take(len(data))
                    sink.write(data)
                    await sink.drain()
                    if upward:
                        attempt.bytes_up += len(data)
                    else:
                        attempt.bytes_down += len(data)
                if sink.can_write_eof():
                    sink.write_eof()

        if first:
            await self._bucket.take(len(first))
            up_writer.write(first)
            attempt.bytes_up += len(first)
        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


class _Prefixed:
    """A reader that yields `prefix` before the stream (what h11 read past the request head)."""

    def __init__(self, prefix: bytes, reader: asyncio.StreamReader) -> None:
        self._prefix = prefix
        self._reader = reader

    async def readexactly(self, n: int) -> bytes:
        taken, self._prefix = self._prefix[:n], self._prefix[n:]
        if len(taken) < n:
            taken += await self._reader.readexactly(n - len(taken))
        return taken

    def rest(self) -> bytes:
        """What is left of the prefix (sent along with the head, past what was read)."""
        rest, self._prefix = self._prefix, b""
        return rest


class _Bucket:
    """A token bucket over bytes: a session's egress stays within `rate` bytes per second (one second of burst)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._tokens = float(rate)
        self._at = time.monotonic()

    async def take(self, n: int) -> None:
        now = time.monotonic()
        self._tokens = min(float(self.rate), self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= n
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


async def _read_head(reader: asyncio.StreamReader) -> tuple[h11.Request, bytes]:
    """The request head and the bytes read past it.

    Clients of a proxy often leave Host out of CONNECT (Python's http.client does), which h11 rightly refuses
    in HTTP/1.1; a head without one gets its request target as Host before h11 parses it.
    """
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > HEAD_LIMIT:
            raise Refused(400, f"request head over {HEAD_LIMIT} bytes")
        data = await reader.read(CHUNK)
        if not data:
            raise asyncio.IncompleteReadError(bytes(buffer), None)
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    if len(head) > HEAD_LIMIT:
        raise Refused(400, f"request head over {HEAD_LIMIT} bytes")
    first, _, fields = head.partition(b"\r\n")
    if not any(line[:5].lower() == b"host:" for line in fields.split(b"\r\n")):
        target = first.split(b" ")[1] if first.count(b" ") == 2 else b""
        if target.startswith(b"http://"):
            target = target[7:].split(b"/", 1)[0]
        head = first + b"\r\nHost: " + (target or b"unknown") + (b"\r\n" + fields if fields else b"")
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
    conn.receive_data(head + b"\r\n\r\n")
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise Refused(400, f"bad request: {exc}") from None
    if not isinstance(event, h11.Request):
        raise Refused(400, "bad request")
    return event, rest


def _origin_form(request: h11.Request, host: str, port: int) -> bytes:
    """The request head as the origin server should see it: its path, its Host, one request, no proxy headers."""
    url = urlsplit(request.target.decode("ascii", "replace"))
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = [(n, v) for n, v in request.headers if n not in _HOP_BY_HOP and n != b"host"]
    authority = (f"[{host}]" if ":" in host else host) + ("" if port == 80 else f":{port}")
    headers = [(b"host", authority.encode()), *headers, (b"connection", b"close")]
    client = h11.Connection(h11.CLIENT)
    return client.send(h11.Request(method=request.method, target=path.encode(), headers=headers)) or b""


def _authority(text: str, default_port: int | None) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as (normalized host, port); Refused when it is not one."""
    host, _, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not host or "]" in port:
        host, port = text, ""
    if not port:
        if default_port is None:
            raise Refused(400, f"CONNECT needs host:port, not {text!r}")
        return normalize_host(text), default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise Refused(400, f"bad port in {text!r}")
    return normalize_host(host), int(port)


def _is_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    """The proxy's own answer: a short text body saying why."""
    body = f"toolserver egress proxy: {reason}\n".encode()
    phrase = {
        400: "Bad Request",
        403: "Forbidden",
        429: "Too Many Requests",
        502: "Bad Gateway",
        504: "Gateway Timeout",
    }[status]
    head = f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()
