"""Ray Serve's high-throughput ingress: HAProxy on the server's port, straight to the replicas' own ports.

Measured on a 2-core machine (bench/server_bench.py): a trivial tool call costs about 4 ms of server CPU
this way against about 10 ms through Serve's default Python proxy. It needs the `haproxy` binary, and it
applies when `toolserver up` starts Ray itself (on a joined cluster, set these variables for `ray start`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from foundation.errors import UserError

__all__ = [
    "check_port_free",
    "direct_env",
    "free_port",
    "haproxy_binary",
    "haproxy_env",
    "haproxy_state_dir",
    "ingress_kind",
]


def haproxy_binary() -> str | None:
    """The HAProxy executable, or None when it is not installed."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def ingress_kind(
    fast_ingress: bool | None, joined_cluster: bool, replicas: int | None = None, direct: bool = True
) -> str:
    """Which ingress serves clients: "haproxy" when asked for; "direct" for one replica on one machine (the
    replica serves the server's port itself, no proxy hop); else "serve" (Serve's Python proxy).

    HAProxy is not the default: Ray's configuration of it binds its stats page and Prometheus listener on
    every interface, whatever the server's own bind address (see `haproxy_env`). On a joined cluster Ray's
    processes were started by `ray start`, not by us: the operator's variables decide.
    """
    if joined_cluster:
        return "serve"
    if fast_ingress:
        return "haproxy"
    return "direct" if direct and (replicas or 1) == 1 else "serve"


def direct_env(port: int, replica: bool = False) -> dict[str, str]:
    """The environment that makes the one ingress replica serve HTTP on `port` itself (Serve's direct ingress).

    The port range (read by Serve's controller, which hands ports out) is set for the whole Ray instance;
    the switch only for the ingress replica (`replica=True`, its runtime environment), so that no other
    application, a deployment tool least of all, listens on a port of its own. Serve's Python proxy still
    runs, on a port of its own (`free_port`); clients never need it. A stopping replica is drained for a
    second, not Serve's default 30 (no load balancer has to notice it).
    """
    env = {
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 1),  # a range that ends before its maximum
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
    }
    if replica:
        env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
    return env


def check_port_free(host: str, port: int, wait_s: float = 10.0) -> None:
    """UserError when `host:port` cannot be bound within `wait_s` (the direct ingress binds it once Ray is up;
    the replica of a server that just crashed may hold it for a few seconds more)."""
    deadline = time.monotonic() + wait_s
    while True:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise UserError(
                        f"Failed to bind {host}:{port}: {exc.strerror}; choose another --port"
                    ) from None
        time.sleep(0.5)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = "0.0.0.0") -> list[int]:
    """`count` distinct ports nothing listens on now (each socket is held until all are bound)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def haproxy_state_dir(home: Path) -> Path:
    """A short directory for one server's HAProxy files.

    Ray nests a 56-character node id under it, and HAProxy caps its socket path at 97 bytes.
    """
    digest = hashlib.sha1(str(home.resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"tsha-{os.getuid()}-{digest}"


def haproxy_env(state_dir: Path) -> dict[str, str]:
    """The environment that switches Serve to HAProxy, with its files in `state_dir` (not a shared /tmp).

    HAProxy's stats page and Prometheus listener get ports of their own (Ray's fixed 8404 and 9101 would make
    a second server on the machine fail to start); Ray binds both on every interface.
    """
    binary = haproxy_binary()
    if binary is None:
        raise UserError("--fast-ingress needs HAProxy: install it (Debian: apt-get install haproxy)")
    state_dir.mkdir(parents=True, exist_ok=True)
    stats_port, metrics_port = free_ports(2)  # Ray binds both on every interface
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": binary,
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state_dir / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state_dir / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state_dir),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state_dir / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
    }
