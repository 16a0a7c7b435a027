"""A relay between a sandbox's kernel and the host's ZeroMQ sockets that bounds every message it passes on.

libzmq reads a peer's message whole before the application sees it, and its own caps miss one case:
RCVHWM counts complete messages and MAXMSGSIZE limits one frame, so a peer that sends frames of a
message that never ends grows the host's memory without bound. The relay follows the ZMTP 3 framing of
what the kernel sends (never the content) and cuts the connection when a message would pass
`max_message` bytes or `max_parts` frames; libzmq behind it sees only bounded messages.

The relay listens where the sandbox can reach it (the kernel connects) and joins one connection at a
time to the host's socket, which listens in the private directory; the newest connection wins, connections
are accepted at a bounded rate, and past `MAX_CONNECTIONS` in one kernel's life the kernel is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Callable

__all__ = ["MAX_CONNECTIONS", "KernelRelay", "ProtocolBreach"]

_GREETING = 64
_NULL_MECHANISM = b"NULL".ljust(20, b"\x00")
_MAX_COMMAND = 64 * 1024  # READY, PING and the like are a few hundred bytes
_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04
_CHUNK = 256 * 1024
_ACCEPT_INTERVAL_S = 0.05  # at most 20 new connections a second per relay
# Connections one relay takes in its life (one kernel's): the kernel's own and a reconnect. libzmq keeps the
# messages of a closed connection queued until they are read (RCVHWM counts per connection), so every
# further connection could leave another full queue on the host.
MAX_CONNECTIONS = 2


class ProtocolBreach(Exception):
    """The kernel's side sent something over the caps, or not ZMTP 3 with the NULL mechanism."""


class _FrameMeter:
    """Follows the ZMTP 3 framing of one direction of a connection; raises ProtocolBreach past the caps."""

    def __init__(self, max_message: int, max_parts: int) -> None:
        self.max_message = max_message
        self.max_parts = max_parts
        self._greeting = bytearray()
        self._flags: int | None = None
        self._size = bytearray()
        self._skip = 0
        self._message = 0
        self._parts = 0
        self._commands = 0

    def feed(self, data: bytes) -> None:
        i, end = 0, len(data)
        while i < end:
            if self._skip:
                step = min(self._skip, end - i)
                self._skip -= step
                i += step
            elif len(self._greeting) < _GREETING:
                step = min(_GREETING - len(self._greeting), end - i)
                self._greeting += data[i : i + step]
                i += step
                self._check_greeting()
            elif self._flags is None:
                self._flags = data[i]
                i += 1
                if self._flags & ~(_MORE | _LONG | _COMMAND):
                    raise ProtocolBreach("a frame with reserved flag bits set")
            else:
                need = (8 if self._flags & _LONG else 1) - len(self._size)
                step = min(need, end - i)
                self._size += data[i : i + step]
                i += step
                if step == need:
                    self._frame(self._flags, int.from_bytes(self._size, "big"))

    def _check_greeting(self) -> None:
        # As far as it has arrived: libzmq picks the protocol version from bytes 0, 9 and 10 and would
        # parse what follows by an older framing, so no byte goes on before the ones that decide it.
        g = self._greeting
        if g[0] != 0xFF or (len(g) > 9 and not g[9] & 0x01) or (len(g) > 10 and g[10] < 3):
            raise ProtocolBreach("the peer does not speak ZMTP 3")
        if len(g) >= 32 and bytes(g[12:32]) != _NULL_MECHANISM:
            raise ProtocolBreach("the peer asked for a security mechanism other than NULL")

    def _frame(self, flags: int, size: int) -> None:
        self._flags = None
        self._size.clear()
        if flags & _COMMAND:
            if flags & _MORE or size > _MAX_COMMAND:
                raise ProtocolBreach(f"a ZMTP command of {size} bytes")
            self._commands += 1
            if self._commands > 1:
                # READY is the only command a kernel sends (ipykernel sets no ZMTP heartbeat); anything
                # after it, such as a flood of PINGs, would only cost the host's event loop.
                raise ProtocolBreach("a ZMTP command after READY")
        else:
            self._message += size
            self._parts += 1
            if self._message > self.max_message:
                raise ProtocolBreach(
                    f"a message of over {self.max_message} bytes (the output cap plus the display cap)"
                )
            if self._parts > self.max_parts:
                raise ProtocolBreach(f"a message of over {self.max_parts} parts")
            if not flags & _MORE:
                self._message = self._parts = 0
        self._skip = size


class KernelRelay:
    """Listens at `listen_path` for the kernel and joins its connection to the host's `upstream_path`."""

    def __init__(
        self,
        listen_path: str,
        upstream_path: str,
        *,
        max_message: int,
        max_parts: int,
        on_breach: Callable[[str], None],
    ) -> None:
        self.listen_path = listen_path
        self.upstream_path = upstream_path
        self.max_message = max_message
        self.max_parts = max_parts
        self._on_breach = on_breach
        self._listener: socket.socket | None = None
        self._serving: asyncio.Task[None] | None = None
        self._joined: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Bind the listening socket (replacing a stale one) and accept the kernel's connections."""
        _unlink_socket(self.listen_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.listen_path)
            # Connecting needs write permission on the socket file; the sandbox runs as another uid.
            os.chmod(self.listen_path, 0o666)
            listener.listen(4)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._serving = asyncio.create_task(self._serve(listener), name=f"kernel-relay {self.listen_path}")

    async def close(self) -> None:
        """Stop listening, drop the joined connection and remove the socket file."""
        await self._stop_listening()
        if self._joined is not None:
            self._joined.cancel()
            with contextlib.suppress(BaseException):
                await self._joined
            self._joined = None

    async def _stop_listening(self) -> None:
        # The accept must be cancelled before the socket closes: a reader left on a closed descriptor
        # would fire for whatever socket reuses its number next.
        if self._serving is not None and self._serving is not asyncio.current_task():
            self._serving.cancel()
            with contextlib.suppress(BaseException):
                await self._serving
        self._serving = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            _unlink_socket(self.listen_path)

    async def _serve(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        accepted = 0
        while True:
            conn, _ = await loop.sock_accept(listener)
            accepted += 1
            if accepted > MAX_CONNECTIONS:
                conn.close()
                self._on_breach(f"more than {MAX_CONNECTIONS} connections to one kernel socket")
                await self._stop_listening()
                return
            if self._joined is not None:  # the newest connection wins: a restarted kernel always gets in
                self._joined.cancel()
                with contextlib.suppress(BaseException):
                    await self._joined
            self._joined = asyncio.create_task(self._join(conn))
            await asyncio.sleep(_ACCEPT_INTERVAL_S)

    async def _join(self, conn: socket.socket) -> None:
        writers: list[asyncio.StreamWriter] = []
        try:
            kernel_reader, kernel_writer = await asyncio.open_unix_connection(sock=conn, limit=_CHUNK)
            writers.append(kernel_writer)
            host_reader, host_writer = await asyncio.open_unix_connection(self.upstream_path, limit=_CHUNK)
            writers.append(host_writer)
            meter = _FrameMeter(self.max_message, self.max_parts)
            pumps = [
                asyncio.create_task(_pump(kernel_reader, host_writer, meter)),
                asyncio.create_task(_pump(host_reader, kernel_writer, None)),
            ]
            try:
                done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in pumps:
                    task.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
            for task in done:
                if isinstance(task.exception(), ProtocolBreach):
                    # No more connections: the kernel is replaced, and a new relay listens for it.
                    self._on_breach(str(task.exception()))
                    await self._stop_listening()
        except OSError:
            pass
        except asyncio.CancelledError:
            for writer in writers:
                writer.transport.abort()  # a peer that never reads must not keep the descriptor open
            raise
        finally:
            if not writers:
                conn.close()
            for writer in writers:
                writer.close()


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, meter: _FrameMeter | None
) -> None:
    # Back-pressure end to end: when libzmq stops reading (its queue is full) drain() waits, and so
    # does the read from the kernel, whose own queue then fills.
    while data := await reader.read(_CHUNK):
        if meter is not None:
            meter.feed(data)  # before forwarding: an oversized frame never reaches libzmq
        writer.write(data)
        await writer.drain()


def _unlink_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
