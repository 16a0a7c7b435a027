"""Starts an IPython kernel that connects its shell and iopub sockets to the host instead of binding them.

The host listens at `<ip>-<port>` of the connection file, in /sbx, which the sandbox cannot write: so a
kernel restart needs no writable shared directory. The sockets the host never uses (stdin, control,
heartbeat) are bound in a private directory of the sandbox (`SBXD_KERNEL_DIR`). Every message is kept
under the host's cap (`max_message_bytes` in the connection file): long output goes out in pieces, and
a display or error too large for it is replaced by a note saying so. The host enforces the cap itself
and replaces a kernel that breaks it; this only keeps an honest kernel from tripping it. The pipe that
carries forked children's output to the kernel is a unix socket there too, not loopback TCP: gVisor cannot
checkpoint a TCP listener that a thread waits on.

Usage: python3 sbxkernel.py -f /sbx/kernel.json   (runs in the guest; ipykernel is its only dependency)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # user code must not import the guest daemon's modules by accident

import zmq
from ipykernel import kernelapp
from ipykernel.iostream import IOPubThread, OutStream
from ipykernel.kernelapp import IPKernelApp
from jupyter_client.session import Session
from zmq.eventloop.zmqstream import ZMQStream

_PIECE_CHARS = 256 * 1024  # a stream message of this many characters stays far below any cap
_HEADROOM = 64 * 1024  # identities, delimiter, signature and headers around the content
_DISPLAY_TYPES = ("display_data", "update_display_data", "execute_result")


def _connection_file(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "-f" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--f=") or arg.startswith("--ConnectionFileMixin.connection_file="):
            return arg.split("=", 1)[1]
    raise SystemExit("usage: sbxkernel.py -f CONNECTION_FILE")


def _private_dir() -> str:
    chosen = os.environ.get("SBXD_KERNEL_DIR")
    if chosen:
        os.makedirs(chosen, mode=0o700, exist_ok=True)
        return chosen
    return tempfile.mkdtemp(prefix="kernel-")


def _cap_strings(value: Any, chars: int, items: int) -> Any:
    if isinstance(value, str) and len(value) > chars:
        return value[:chars] + f"\n[... {len(value) - chars} characters omitted: over the message cap ...]"
    if isinstance(value, list):
        return [_cap_strings(item, chars, items) for item in value[:items]]
    if isinstance(value, dict):
        return {key: _cap_strings(item, chars, items) for key, item in list(value.items())[:items]}
    return value


def _fitted(msg: dict[str, Any], size: int, budget: int, chars: int, items: int) -> dict[str, Any]:
    """A copy of `msg` with smaller content: a display becomes its text or a note, long strings are cut."""
    content = dict(msg.get("content") or {})
    if msg.get("msg_type") in _DISPLAY_TYPES:
        text = (content.get("data") or {}).get("text/plain")
        note = f"[display data of {size} bytes omitted: over the {budget} byte message cap]"
        content["data"] = {"text/plain": _cap_strings(text, chars, items) if isinstance(text, str) else note}
        content["metadata"] = {}
    else:
        content = _cap_strings(content, chars, items)
    return {**msg, "content": content}


def _keep_messages_under(budget: int) -> None:
    serialize = Session.serialize

    def serialize_within_budget(self: Session, msg: dict[str, Any], ident: Any = None) -> list[bytes]:
        frames = serialize(self, msg, ident)
        size = sum(len(frame) for frame in frames)
        for chars, items in ((_PIECE_CHARS, 1000), (4096, 50)):  # the second for content of many strings
            if sum(len(frame) for frame in frames) <= budget:
                break
            frames = serialize(self, _fitted(msg, size, budget, chars, items), ident)
        return frames

    Session.serialize = serialize_within_budget  # type: ignore[method-assign]

    flush_buffers = OutStream._flush_buffers

    def flush_in_pieces(self: OutStream) -> Any:
        for parent, data in flush_buffers(self):
            for start in range(0, len(data), _PIECE_CHARS):
                yield parent, data[start : start + _PIECE_CHARS]

    OutStream._flush_buffers = flush_in_pieces  # type: ignore[method-assign]


class _WithoutEndpoint:
    """A socket stand-in that reports no last endpoint."""

    def __init__(self, sock: zmq.Socket[Any]) -> None:
        self._sock = sock

    def getsockopt(self, option: int) -> Any:
        return b"" if option == zmq.LAST_ENDPOINT else self._sock.getsockopt(option)


class UnixPipeIOPubThread(IOPubThread):
    """IOPubThread whose pipe from forked children listens on a unix socket in the private directory."""

    def _setup_pipe_in(self) -> None:
        self._pipe_uuid = os.urandom(16)
        self._pipe_address = f"ipc://{os.path.join(_private_dir(), 'iopub-pipe')}"
        puller = self.socket.context.socket(zmq.PULL)
        puller.linger = 0
        try:
            puller.bind(self._pipe_address)
        except zmq.ZMQError as exc:  # the kernel still runs; forked children's output is lost
            print(f"sbxkernel: no pipe for forked children's output ({exc})", file=sys.__stderr__)
            self._pipe_flag = False
            puller.close()
            return
        self._pipe_in = ZMQStream(puller, self.io_loop)
        self._pipe_in.on_recv(self._handle_pipe_msg)

    def _setup_pipe_out(self) -> tuple[zmq.Context[Any], zmq.Socket[Any]]:
        context: zmq.Context[Any] = zmq.Context()  # a fork's own: the parent's is not safe to use
        pusher = context.socket(zmq.PUSH)
        pusher.linger = 3000
        pusher.connect(self._pipe_address)
        return context, pusher


class ConnectingKernelApp(IPKernelApp):
    """An IPKernelApp whose shell and iopub sockets connect to the host's, and which writes no files in /sbx."""

    host_ip = ""

    def init_connection_file(self) -> None:
        """Read the host's connection file, and bind the kernel's own sockets in the private directory."""
        super().init_connection_file()
        self.host_ip = self.ip
        self.ip = os.path.join(_private_dir(), "k")

    def _bind_socket(self, s: zmq.Socket[Any], port: int) -> int:  # type: ignore[override]
        if s is self.shell_socket or s is getattr(self, "iopub_socket", None):
            s.connect(f"ipc://{self.host_ip}-{port}")
            return port
        return int(super()._bind_socket(s, port))

    def init_control(self, context: zmq.Context[Any]) -> None:
        """The control channel, with the debugger's socket left unconnected."""
        # IPKernelApp connects the debugger's socket to the shell socket's last endpoint, which here is the
        # host's: it would be a second peer there. Hiding that endpoint leaves the debugger unconnected.
        shell = self.shell_socket
        self.shell_socket = _WithoutEndpoint(shell)
        try:
            super().init_control(context)
        finally:
            self.shell_socket = shell

    def write_connection_file(self, **kwargs: Any) -> None:
        """The host wrote the connection file, in a directory the kernel cannot write."""


def main() -> None:
    """Command line: `sbxkernel.py -f CONNECTION_FILE`; keeps messages under the file's cap, then runs the kernel."""
    with open(_connection_file(sys.argv[1:]), encoding="utf-8") as f:
        budget = int(json.load(f).get("max_message_bytes") or 0)
    if budget > 0:
        _keep_messages_under(max(_PIECE_CHARS * 8, budget - _HEADROOM))
    kernelapp.IOPubThread = UnixPipeIOPubThread  # type: ignore[misc]  # what init_iopub makes
    ConnectingKernelApp.launch_instance()


if __name__ == "__main__":
    main()
