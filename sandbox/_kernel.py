"""Host-side client of a sandbox's IPython kernel, spoken to over ZeroMQ `ipc` sockets.

The host binds its shell and iopub sockets in the sandbox's private directory, and a relay for each
listens in the shared one, where the kernel connects (`sandbox/_guest/sbxkernel.py`): so the sandbox
needs no writable shared directory, and every message the host's libzmq reads is bounded
(`sandbox/_kernel_relay.py`). A kernel that breaks the caps is cut off and replaced on the next call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import stat
import time
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.connect import channel_socket_types

from sandbox._kernel_cell import DISPLAY_LIMIT, KERNEL_DIED, Cell, OutputSink, broke_the_caps, died
from sandbox._kernel_relay import KernelRelay
from sandbox._output import DEFAULT_OUTPUT_LIMIT
from sandbox.base import PythonResult
from sandbox.errors import SandboxUnavailable

__all__ = ["DISPLAY_LIMIT", "KernelConnection", "message_cap", "write_connection_files"]

CONNECTION_FILE = "kernel.json"
HOST_CONNECTION_FILE = "kernel.host.json"
MAX_PARTS = 64  # frames of one message: a kernel's have 7 and a few buffers
RCVHWM = 4  # complete messages libzmq queues per socket before it stops reading
SNDHWM = 16  # requests queued for a kernel that does not read them
_QUIET_S = 0.25  # silence after which the kernel's liveness is checked
_INTERRUPT_GRACE_S = 2.0  # how long an interrupted cell gets to report idle
_REPLY_GRACE_S = 1.0  # how long the execute_reply may lag behind the idle status
_BATCH = 256  # messages taken from one channel per wake-up
_HOST_SOCKETS = "zk"  # name prefix of the host's own sockets in the private directory


def message_cap(output_limit: int = DEFAULT_OUTPUT_LIMIT) -> int:
    """The largest message the host takes from a kernel: the output cap plus the display cap, and headers."""
    return output_limit + DISPLAY_LIMIT + 256 * 1024


def write_connection_files(
    host_dir: str,
    container_dir: str = "/sbx",
    *,
    private_dir: str | None = None,
    max_message: int | None = None,
) -> str:
    """Write `kernel.json` (the container's view) into the shared `host_dir`; return the host's view.

    The host's view goes to `private_dir` (default: `host_dir`), where the sandbox cannot replace it; it
    names the host's sockets there (`ip`) and the relays the kernel connects to (`relay_ip`).
    """
    max_message = message_cap() if max_message is None else max_message
    info: dict[str, Any] = {
        "transport": "ipc",
        "ip": f"{container_dir.rstrip('/')}/kernel",
        "key": secrets.token_hex(32),
        "signature_scheme": "hmac-sha256",
        "kernel_name": "python3",
        "shell_port": 1,
        "iopub_port": 2,
        "stdin_port": 3,
        "control_port": 4,
        "hb_port": 5,
        "max_message_bytes": max_message,
    }
    _write_readable(os.path.join(host_dir, CONNECTION_FILE), info)
    private = (private_dir or host_dir).rstrip("/")
    host_path = os.path.join(private, HOST_CONNECTION_FILE)
    host_info = {**info, "ip": f"{private}/{_HOST_SOCKETS}", "relay_ip": f"{host_dir.rstrip('/')}/kernel"}
    _write_readable(host_path, host_info)
    return host_path


def _write_readable(path: str, info: dict[str, Any]) -> None:
    # 0644: the kernel runs as another user inside the container; the directory itself is private.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=1)
    os.chmod(path, 0o644)


_CONTEXT: zmq.asyncio.Context | None = None


def _context() -> zmq.asyncio.Context:
    """The process's ZeroMQ context for kernel sockets."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = zmq.asyncio.Context()
    return _CONTEXT


class _BindingKernelClient(AsyncKernelClient):
    """A kernel client whose sockets bind (in the private directory) with bounded queues and messages."""

    max_message = message_cap()

    def _create_connected_socket(self, channel: str, identity: bytes | None = None) -> zmq.Socket[Any]:
        sock = self.context.socket(channel_socket_types[channel])
        sock.linger = 0
        if identity:
            sock.identity = identity
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message)
        sock.setsockopt(zmq.RCVHWM, RCVHWM)
        sock.setsockopt(zmq.SNDHWM, SNDHWM)
        # jupyter_client sends synchronously: with no kernel connected, or one that reads nothing, a send
        # would block the event loop; it raises zmq.Again instead.
        sock.setsockopt(zmq.SNDTIMEO, 0)
        url = self._make_url(channel)
        path = url.removeprefix("ipc://")
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # left by a server that stopped without closing
        except FileNotFoundError:
            pass
        sock.bind(url)
        return sock


@dataclasses.dataclass(frozen=True)
class _Probes:
    """How a cell reaches the kernel's process: interrupt it, and ask whether it is alive."""

    interrupt: Callable[[], Awaitable[None]]
    is_alive: Callable[[], Awaitable[bool]]


class KernelConnection:
    """One kernel's shell and iopub channels, bound once and reused for every cell."""

    def __init__(self, client: AsyncKernelClient, relays: list[KernelRelay]) -> None:
        self._client = client
        self._relays = relays
        self._shell: AsyncZMQSocketChannel = client.shell_channel
        self._iopub: AsyncZMQSocketChannel = client.iopub_channel
        self._poller = zmq.asyncio.Poller()
        self._poller.register(self._shell.socket, zmq.POLLIN)
        self._poller.register(self._iopub.socket, zmq.POLLIN)
        self._dead = False
        self._breach: str | None = None
        self._busy = asyncio.Lock()  # one cell at a time: each cell drains the shared sockets

    @property
    def kernel_died(self) -> bool:
        """Whether the last cell saw the kernel die (cleared when a later liveness check finds it alive)."""
        return self._dead

    @property
    def breach(self) -> str | None:
        """What the kernel sent over the caps, once it did: it is cut off and must be replaced."""
        return self._breach

    def _breached(self, reason: str) -> None:
        self._breach = self._breach or reason

    @classmethod
    async def connect(cls, host_connection_file: str, ready_timeout_s: float) -> KernelConnection:
        """Bind the host's sockets and relays, and wait until the kernel connects and answers kernel_info."""
        with open(host_connection_file, encoding="utf-8") as f:
            info = json.load(f)
        client = _BindingKernelClient(context=_context())
        client.load_connection_file(host_connection_file)
        client.max_message = int(info.get("max_message_bytes") or message_cap())
        # Replays are no threat from a peer that holds the key anyway; the default remembers 65536 digests.
        client.session.digest_history_size = 1024
        client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
        relays: list[KernelRelay] = []
        conn = cls(client, relays)
        try:
            relay_ip = str(info.get("relay_ip") or client.ip)
            for port in (client.shell_port, client.iopub_port):
                relay = KernelRelay(
                    f"{relay_ip}-{port}",
                    f"{client.ip}-{port}",
                    max_message=client.max_message,
                    max_parts=MAX_PARTS,
                    on_breach=conn._breached,
                )
                relays.append(relay)
                relay.start()
            await conn.wait_ready(ready_timeout_s)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def wait_ready(self, timeout_s: float) -> None:
        """Ask for kernel_info until a reply arrives and iopub is seen to be subscribed."""
        async with self._busy:
            deadline = time.monotonic() + timeout_s
            sent: set[str] = set()
            replied = subscribed = False
            next_send = 0.0
            while not (replied and subscribed):
                now = time.monotonic()
                if self._breach is not None:
                    raise SandboxUnavailable(
                        f"the kernel sent {self._breach}; it is replaced on the next call"
                    )
                if now >= deadline:
                    raise SandboxUnavailable(f"the kernel was not ready within {timeout_s:g} s")
                if now >= next_send:
                    try:
                        sent.add(self._client.kernel_info())
                    except zmq.Again:
                        pass  # not connected yet
                    next_send = now + 0.5
                for channel, msg in await self._receive(min(deadline, next_send) - now):
                    if channel is self._iopub:
                        # Subscribed once anything arrives (an iopub_welcome has no parent).
                        subscribed = True
                    elif msg["parent_header"].get("msg_id") in sent:
                        replied = replied or msg["msg_type"] == "kernel_info_reply"
            self._dead = False

    async def execute(
        self,
        code: str,
        timeout_s: float,
        *,
        interrupt: Callable[[], Awaitable[None]],
        is_alive: Callable[[], Awaitable[bool]],
        output_limit: int,
        on_output: OutputSink | None = None,
    ) -> PythonResult:
        """Run one cell; a timeout interrupts it (the kernel keeps its state), a dead kernel is reported.

        `on_output`, when given, sees the cell's stream text and displays as they come.

        A "timeout" result carries the output that arrived and, when the interrupt landed, the cell's
        KeyboardInterrupt as `error`; if the kernel died meanwhile, `error` is the KernelDied error instead.
        """
        async with self._busy:
            cell = Cell(output_limit, on_output)
            return await self._execute(code, timeout_s, cell, _Probes(interrupt, is_alive))

    async def _execute(self, code: str, timeout_s: float, cell: Cell, probes: _Probes) -> PythonResult:
        if self._dead:
            if not await probes.is_alive():
                return PythonResult(status="error", error=KERNEL_DIED)
            self._dead = False
        try:
            msg_id = self._client.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        except zmq.Again:  # the kernel is gone from its socket, or reads nothing
            if self._breach is not None:
                return broke_the_caps(cell, self._breach)
            if not await probes.is_alive():
                self._dead = True
                return died(cell, False)
            raise SandboxUnavailable("the kernel is not taking requests; restart it") from None
        deadline = time.monotonic() + timeout_s
        reply_deadline: float | None = None
        timed_out = False
        while True:
            now = time.monotonic()
            if self._breach is not None:
                return broke_the_caps(cell, self._breach)
            if cell.idle and cell.reply_status is not None:
                break
            if cell.idle and reply_deadline is None:
                reply_deadline = now + _REPLY_GRACE_S
            if reply_deadline is not None and now >= reply_deadline:
                break
            if now >= deadline:
                if timed_out:
                    break  # the interrupted cell did not come back in time
                timed_out = True
                await probes.interrupt()
                deadline = time.monotonic() + _INTERRUPT_GRACE_S
                continue
            msgs = await self._receive(min(deadline - now, _QUIET_S))
            if not msgs:
                if not await probes.is_alive():
                    self._dead = True
                    return died(cell, timed_out)
                continue
            for channel, msg in msgs:
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue  # left over from an earlier, interrupted cell
                if channel is self._iopub:
                    cell.on_iopub(msg["msg_type"], msg["content"])
                elif msg["msg_type"] == "execute_reply":
                    cell.reply_status = msg["content"].get("status", "error")
        return cell.finish("timeout" if timed_out else "ok")

    async def _receive(self, timeout_s: float) -> list[tuple[AsyncZMQSocketChannel, dict[str, Any]]]:
        """Wait up to `timeout_s` for either channel; return every message that is ready by then."""
        ready = dict(await self._poller.poll(max(0, int(timeout_s * 1000))))
        msgs = []
        for channel in (self._iopub, self._shell):
            if channel.socket in ready:
                # Bounded, so that a flood of output cannot starve the deadline checks.
                for _ in range(_BATCH):
                    if not await channel.msg_ready():
                        break
                    try:
                        msgs.append((channel, await channel.get_msg(timeout=0)))
                    except Exception as exc:  # a bad signature, or not a Jupyter message at all
                        self._breached(
                            f"a message that is not a valid Jupyter message ({type(exc).__name__})"
                        )
                        break
        return msgs

    async def close(self) -> None:
        """Close the relays and the sockets; the kernel itself is left running."""
        for relay in self._relays:
            await relay.close()
        for channel in (self._shell, self._iopub):
            if channel.socket is not None:
                self._poller.unregister(channel.socket)
        self._client.stop_channels()
