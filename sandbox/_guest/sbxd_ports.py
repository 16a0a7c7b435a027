"""Ports of the guest daemon: a connection to 127.0.0.1:port inside the sandbox, spliced onto the host's.

The sandbox keeps network `none`: the daemon connects to the port on the sandbox's own loopback, answers one
frame, and from then on copies bytes both ways between that connection and the host's unix socket.
"""

from __future__ import annotations

import select
import selectors
import socket
import threading

from sbxd_wire import CHUNK, RequestError, number, send_frame

MAX_SPLICES = 128  # open port connections at once; the host has its own, lower, per-session cap
CONNECT_TIMEOUT_S = 5.0


class Ports:
    """Counts the daemon's open splices."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0

    def connect(self, header: dict, conn: socket.socket) -> None:
        """Connect to the request's port, say so, then splice until both sides are done."""
        port = int(number(header, "port", 0, 65535))
        if port < 1:
            raise RequestError("bad_request", "'port' must be between 1 and 65535")
        with self.lock:
            if self.open >= MAX_SPLICES:
                raise RequestError(
                    "port_limit", f"{self.open} port connections are open, the most there may be"
                )
            self.open += 1
        try:
            try:
                target = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT_S)
            except OSError as exc:
                raise RequestError(
                    "port_closed", f"nothing answers on port {port}: {exc.strerror or exc}"
                ) from None
            with target:
                send_frame(conn, {"ok": True, "port": port})
                splice(conn, target)
        finally:
            with self.lock:
                self.open -= 1


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both directions have ended (one side's end is passed on as a half-close)."""
    for sock in (a, b):
        sock.settimeout(None)
        sock.setblocking(False)
    peer = {a: b, b: a}
    open_reads = {a, b}
    with selectors.DefaultSelector() as selector:
        for sock in open_reads:
            selector.register(sock, selectors.EVENT_READ)
        while open_reads:
            for key, _ in selector.select():
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    try:
                        _send_all(peer[source], data)
                        continue
                    except OSError:
                        return  # the other side is gone altogether
                selector.unregister(source)
                open_reads.discard(source)
                try:
                    peer[source].shutdown(socket.SHUT_WR)
                except OSError:
                    pass


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            select.select([], [sock], [], 1.0)  # the peer is slow: wait until it takes more (back-pressure)
            continue
        view = view[sent:]
