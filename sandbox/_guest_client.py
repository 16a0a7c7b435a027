"""Host side of the guest daemon's protocol (`sandbox/_guest/sbxd.py`): one request per unix-socket connection.

A frame is a 4-byte big-endian header length, a UTF-8 JSON header, then `header["payload"]` raw bytes.
The daemon runs inside a container its user controls, so every reply is treated as untrusted input:
sizes are capped, types are checked, and the socket path must really be a socket: it is opened with
O_PATH | O_NOFOLLOW, checked with fstat, and connected to through /proc/self/fd, so what is checked is what
is connected to (a link swapped in between is never followed).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import socket
import stat
import struct
import time
from collections.abc import Callable
from typing import Any

from foundation.errors import ToolServerError
from sandbox._output import DEFAULT_OUTPUT_LIMIT
from sandbox._paths import workspace_relative
from sandbox.base import FileEntry, ShellResult
from sandbox.errors import (
    FileTooLarge,
    InvalidPath,
    SandboxError,
    SandboxGone,
    SandboxUnavailable,
    SessionBusy,
    WorkspaceFileNotFound,
)
from sandbox.ports import PortClosed, PortLimit
from sandbox.processes import ProcessLimit, ProcessNotFound

__all__ = ["GuestClient", "typed"]

MAX_REPLY_HEADER = 64 << 20
SHELL_MARGIN_S = 15.0  # the daemon's own recovery after a timeout: grace, kill, fresh sentinel, restart
KERNEL_OPS = ("start", "restart", "interrupt", "status")

_ERRORS: dict[str, type[ToolServerError]] = {
    "invalid_path": InvalidPath,
    "not_found": WorkspaceFileNotFound,
    "too_large": FileTooLarge,
    "is_directory": InvalidPath,
    "no_process": ProcessNotFound,
    "process_limit": ProcessLimit,
    "port_closed": PortClosed,
    "port_limit": PortLimit,
    "busy": SessionBusy,
}


class GuestClient:
    """Talks to one sandbox's guest daemon through `<sandbox dir>/sbxd.sock`."""

    def __init__(self, socket_path: str, *, io_timeout_s: float = 60.0) -> None:
        self.socket_path = socket_path
        self.io_timeout_s = io_timeout_s

    async def ping(self) -> dict[str, Any]:
        """The daemon's pid, uid, hostname and whether the kernel is alive."""
        reply, _ = await self._call({"op": "ping"})
        return reply

    async def shell(self, command: str, timeout_s: float, limit: int = DEFAULT_OUTPUT_LIMIT) -> ShellResult:
        """Run `command` in the sandbox's persistent shell, its output capped at `limit` bytes."""
        request = {"op": "shell", "command": command, "timeout": timeout_s, "limit": limit}
        # JSON may spell each output byte as a 6-character escape.
        reply, _ = await self._call(
            request, timeout_s=timeout_s + SHELL_MARGIN_S, max_header=6 * limit + (1 << 20)
        )
        return _shell_result(reply)

    async def shell_stream(
        self,
        command: str,
        timeout_s: float,
        on_chunk: Callable[[str], None],
        limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ShellResult:
        """`shell`, with `on_chunk` called with the output's text as it comes (at most `limit` bytes of it)."""
        request = {"op": "shell", "command": command, "timeout": timeout_s, "limit": limit, "stream": True}
        budget = [
            4 * limit + (1 << 16)
        ]  # what the stream may carry, UTF-8 replacements and the marker included

        def chunk(text: str) -> None:
            budget[0] -= len(text) + 16  # a chunk costs something even empty: their count is bounded too
            if budget[0] < 0:
                raise SandboxError("the guest daemon streamed more output than its limit")
            on_chunk(text)

        reply, _ = await self._call(
            request, timeout_s=timeout_s + SHELL_MARGIN_S, max_header=6 * limit + (1 << 20), on_chunk=chunk
        )
        return _shell_result(reply)

    async def shell_interrupt(self) -> None:
        """SIGINT the command the shell runs now (a no-op when it runs none)."""
        await self._call({"op": "shell_interrupt"})

    async def write(self, path: str, data: bytes, max_bytes: int) -> FileEntry:
        """Write a workspace file atomically; refused before sending when `data` is over `max_bytes`."""
        path = workspace_relative(path)
        if len(data) > max_bytes:
            raise FileTooLarge(f"{len(data)} bytes is over the {max_bytes} byte cap", path=path)
        reply, _ = await self._call({"op": "write", "path": path, "max_bytes": max_bytes}, data)
        return _entry(reply | {"is_dir": False})

    async def read(self, path: str, max_bytes: int) -> bytes:
        """A workspace file's bytes; one over `max_bytes` is refused."""
        path = workspace_relative(path)
        _, payload = await self._call(
            {"op": "read", "path": path, "max_bytes": max_bytes}, max_payload=max_bytes
        )
        return payload

    async def list(self, path: str = "") -> builtins.list[FileEntry]:
        """The entries of a workspace directory (links listed, never followed)."""
        path = workspace_relative(path, allow_root=True)
        reply, _ = await self._call({"op": "list", "path": path})
        entries = reply.get("entries")
        if not isinstance(entries, builtins.list):
            raise SandboxError("malformed list reply from the guest daemon")
        return [_entry(entry) for entry in entries]

    async def kernel(self, op: str) -> dict[str, Any]:
        """Kernel supervision: `op` is start, restart, interrupt or status; the reply has alive, pid, restarts."""
        name = op.removeprefix("kernel_")
        if name not in KERNEL_OPS:
            raise ValueError(f"unknown kernel op {op!r}; expected one of {KERNEL_OPS}")
        reply, _ = await self._call({"op": f"kernel_{name}"})
        return reply

    async def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the daemon's socket to appear and answer a ping; returns the ping reply."""
        deadline = time.monotonic() + timeout_s
        delay = 0.002
        while True:
            try:
                reply, _ = await self._call({"op": "ping"}, timeout_s=max(0.05, deadline - time.monotonic()))
                return reply
            except SandboxUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise SandboxUnavailable(
                        f"guest daemon not ready after {timeout_s:g}s: {exc.message}", socket=self.socket_path
                    ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def call(
        self,
        header: dict[str, Any],
        payload: bytes = b"",
        *,
        timeout_s: float | None = None,
        max_payload: int = 0,
    ) -> tuple[dict[str, Any], bytes]:
        """One request of any op, one reply: (reply header, reply payload); error replies raise."""
        return await self._call(header, payload, timeout_s=timeout_s, max_payload=max_payload)

    async def _call(
        self,
        header: dict[str, Any],
        payload: bytes = b"",
        *,
        timeout_s: float | None = None,
        max_header: int = MAX_REPLY_HEADER,
        max_payload: int = 0,
        on_chunk: Callable[[str], None] | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """One request, one reply: (reply header, reply payload); error replies raise.

        With `on_chunk`, frames `{"ok": true, "chunk": text}` before the reply go to it (a streamed shell).
        """
        timeout_s = self.io_timeout_s if timeout_s is None else timeout_s
        if payload:
            header = header | {"payload": len(payload)}
        try:
            reply, data = await asyncio.wait_for(
                self._exchange(header, payload, max_header, max_payload, on_chunk), timeout_s
            )
        except asyncio.TimeoutError:
            raise SandboxUnavailable(
                f"guest daemon did not answer {header['op']} within {timeout_s:g}s", socket=self.socket_path
            ) from None
        except (ConnectionError, FileNotFoundError, asyncio.IncompleteReadError) as exc:
            raise SandboxGone(f"guest daemon connection lost: {exc}", socket=self.socket_path) from None
        except OSError as exc:
            raise SandboxUnavailable(f"guest daemon unreachable: {exc}", socket=self.socket_path) from None
        if reply.get("ok") is True:
            return reply, data
        error: dict[str, Any] = reply["error"] if isinstance(reply.get("error"), dict) else {}
        kind, message = str(error.get("type", "internal")), str(error.get("message", "no message"))[:2000]
        details = {"path": header["path"]} if "path" in header else {}
        raise _ERRORS.get(kind, SandboxError)(message, **details)

    async def _exchange(
        self,
        header: dict[str, Any],
        payload: bytes,
        max_header: int,
        max_payload: int,
        on_chunk: Callable[[str], None] | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        fd = self._open_socket()
        try:
            reader, writer = await asyncio.open_unix_connection(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        try:
            data = json.dumps(header).encode("utf-8")
            writer.write(struct.pack(">I", len(data)) + data)
            writer.write(payload)
            try:
                await writer.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon refused the payload early; its reply, if any, is still readable
            reply = await _read_header(reader, max_header)
            while on_chunk is not None and reply.get("ok") is True and "chunk" in reply:
                if not isinstance(reply["chunk"], str):
                    raise SandboxError("guest daemon sent an output chunk that is not text")
                on_chunk(reply["chunk"])
                reply = await _read_header(reader, max_header)
            length = reply.get("payload", 0)
            if not isinstance(length, int) or isinstance(length, bool) or not 0 <= length <= max_payload:
                raise SandboxError(
                    f"guest daemon reply payload of {length!r} bytes is over the {max_payload} cap"
                )
            return reply, await reader.readexactly(length) if length else b""
        finally:
            writer.close()

    def connect_port(self, port: int, timeout_s: float = 10.0) -> socket.socket:
        """A blocking socket spliced by the daemon onto 127.0.0.1:`port` inside the sandbox (call in a thread).

        PortClosed when nothing answers there; the socket is the caller's to close.
        """
        fd = self._open_socket()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = (
            time.monotonic() + timeout_s
        )  # for the whole handshake: a daemon that trickles holds nothing
        try:
            sock.settimeout(timeout_s)
            sock.connect(f"/proc/self/fd/{fd}")
            data = json.dumps({"op": "port_connect", "port": port}).encode("utf-8")
            sock.sendall(struct.pack(">I", len(data)) + data)
            (size,) = struct.unpack(">I", _recv_exact(sock, 4, deadline))
            if size > 1 << 16:
                raise SandboxError("guest daemon port reply is too large")
            reply = json.loads(_recv_exact(sock, size, deadline))
            if not isinstance(reply, dict) or reply.get("ok") is not True:
                error = reply.get("error") if isinstance(reply, dict) else None
                error = error if isinstance(error, dict) else {}
                kind, message = str(error.get("type", "internal")), str(error.get("message", ""))[:2000]
                raise _ERRORS.get(kind, SandboxError)(message, port=port)
            sock.settimeout(None)
            return sock
        except (ConnectionError, FileNotFoundError) as exc:
            sock.close()
            raise SandboxGone(f"guest daemon connection lost: {exc}", socket=self.socket_path) from None
        except (OSError, ValueError) as exc:
            sock.close()
            raise SandboxUnavailable(f"guest daemon unreachable: {exc}", socket=self.socket_path) from None
        except BaseException:
            sock.close()
            raise
        finally:
            os.close(fd)

    def _open_socket(self) -> int:
        """A descriptor of the socket file itself (a symlink is opened as a link, and refused)."""
        try:
            fd = os.open(self.socket_path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SandboxGone("guest daemon socket is missing", socket=self.socket_path) from None
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            os.close(fd)
            raise SandboxUnavailable("guest daemon socket path is not a socket", socket=self.socket_path)
        return fd


def typed(value: Any, kind: type, *, optional: bool = False, int_ok: bool = False) -> Any:
    """`value` when it is a `kind` (None too when `optional`; an int for a float when `int_ok`); else TypeError."""
    if value is None and optional:
        return None
    accepted = (kind, int) if int_ok else (kind,)
    if not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _recv_exact(sock: socket.socket, size: int, deadline: float | None = None) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the guest daemon did not answer in time")
            sock.settimeout(left)
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionResetError("the guest daemon closed the connection")
        buf += chunk
    return bytes(buf)


async def _read_header(reader: asyncio.StreamReader, max_header: int) -> dict[str, Any]:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    if size > max_header:
        raise SandboxError(f"guest daemon reply header of {size} bytes is over the {max_header} cap")
    try:
        reply = json.loads(await reader.readexactly(size))
    except ValueError:
        raise SandboxError("guest daemon sent a reply that is not JSON") from None
    if not isinstance(reply, dict):
        raise SandboxError("guest daemon sent a reply that is not a JSON object")
    return reply


def _shell_result(reply: dict[str, Any]) -> ShellResult:
    try:
        return ShellResult(
            exit_code=typed(reply.get("exit_code"), int, optional=True),
            output=typed(reply["output"], str),
            timed_out=typed(reply["timed_out"], bool),
            truncated=typed(reply["truncated"], bool),
            cwd=typed(reply["cwd"], str),
            shell_restarted=typed(reply.get("shell_restarted", False), bool),
        )
    except (KeyError, TypeError) as exc:
        raise SandboxError(f"malformed shell reply from the guest daemon: {exc}") from None


def _entry(raw: Any) -> FileEntry:
    try:
        return FileEntry(
            path=workspace_relative(typed(raw["path"], str)),
            size=typed(raw["size"], int),
            is_dir=typed(raw["is_dir"], bool),
            mtime=float(typed(raw["mtime"], float, int_ok=True)),
        )
    except (KeyError, TypeError, InvalidPath) as exc:
        raise SandboxError(f"malformed file entry from the guest daemon: {exc}") from None
