"""The sandbox's end of its egress: a loopback port that forwards each connection to the node's proxy.

A sandbox with network "egress" has no network interface but loopback. Its `HTTP(S)_PROXY` names
`127.0.0.1:3128`, where this forwarder listens; each connection is spliced to the unix socket of the node's
egress proxy in the private directory, which decides what may be reached. Nothing here is a boundary: code in
the sandbox may stop the forwarder or connect to the socket itself, and the proxy still decides.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading

SOCKET_ENV = "TOOLSERVER_EGRESS_SOCKET"
LISTEN_ENV = "TOOLSERVER_EGRESS_LISTEN"
CHUNK = 64 * 1024


class EgressForwarder:
    """Accepts on a loopback port and splices each connection to the proxy's unix socket."""

    def __init__(self, socket_path: str, host: str, port: int) -> None:
        self.socket_path = socket_path
        self.address = (host, port)

    @classmethod
    def from_environment(cls) -> EgressForwarder | None:
        """The forwarder the container's environment asks for, or None when the sandbox has no egress."""
        path = os.environ.get(SOCKET_ENV)
        if not path:
            return None
        host, _, port = os.environ.get(LISTEN_ENV, "127.0.0.1:3128").rpartition(":")
        return cls(path, host or "127.0.0.1", int(port))

    def start(self) -> None:
        """Listen, then accept in a daemon thread."""
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(self.address)
        server.listen(128)
        threading.Thread(target=self._accept_forever, args=(server,), daemon=True).start()

    def _accept_forever(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            try:
                threading.Thread(target=self._forward, args=(conn,), daemon=True).start()
            except RuntimeError:  # no thread to be had (the sandbox is at its process limit)
                conn.close()

    def _forward(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.socket_path)
        except OSError:
            client.close()
            upstream.close()
            return
        splice(client, upstream)


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both sides have ended, passing each half-close on; then close both."""
    peers = {a: b, b: a}
    open_reads = {a, b}
    with selectors.DefaultSelector() as selector:
        for sock in peers:
            sock.setblocking(True)
            selector.register(sock, selectors.EVENT_READ)
        try:
            while open_reads:
                for key, _ in selector.select():
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    data = source.recv(CHUNK)
                    if data:
                        peers[source].sendall(data)
                        continue
                    selector.unregister(source)
                    open_reads.discard(source)
                    try:
                        peers[source].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
        except OSError:
            pass
        finally:
            a.close()
            b.close()
