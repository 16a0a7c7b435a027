"""Ray Serve's high-throughput ingress: HAProxy on the server's port, straight to the replicas' own ports.

Measured on a 2-core machine (bench/server_bench.py): a trivial tool call costs about 4 ms of server CPU
this way against about 10 ms through Serve's default Python proxy. It needs the `haproxy` binary, and it
applies when `toolserver up` starts Ray itself (on a joined cluster, set these variables for `ray start`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from foundation.errors import UserError

__all__ = ["haproxy_binary", "haproxy_env", "haproxy_state_dir"]


def haproxy_binary() -> str | None:
    """The HAProxy executable, or None when it is not installed."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def haproxy_state_dir(home: Path) -> Path:
    """A short directory for one server's HAProxy files.

    Ray nests a 56-character node id under it, and HAProxy caps its socket path at 97 bytes.
    """
    digest = hashlib.sha1(str(home.resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"tsha-{os.getuid()}-{digest}"


def haproxy_env(state_dir: Path) -> dict[str, str]:
    """The environment that switches Serve to HAProxy, with its files in `state_dir` (not a shared /tmp)."""
    binary = haproxy_binary()
    if binary is None:
        raise UserError("--fast-ingress needs HAProxy: install it (Debian: apt-get install haproxy)")
    state_dir.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": binary,
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state_dir / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state_dir / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state_dir),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state_dir / "server-state"),
    }
