"""Add the `runsc` runtime and experimental mode to a Docker daemon config (merged, other keys kept), or print them.

python3 scripts/daemon_config.py /etc/docker/daemon.json /usr/bin/runsc
python3 scripts/daemon_config.py --print /usr/bin/runsc
python3 scripts/daemon_config.py --checkpoints-enabled   # exit 0 when the engine serves `docker checkpoint`
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys

# --network=none: the engine makes the network namespace (runsc cannot run in the root one here);
# --host-uds=all: the host's server and the sandbox's daemon talk over unix sockets in a bind mount.
RUNSC_ARGS = ["--network=none", "--host-uds=all"]


def runtime_entry(path: str) -> dict[str, object]:
    """The daemon.json `runtimes` entry for runsc at `path`."""
    return {"runsc": {"path": path, "runtimeArgs": RUNSC_ARGS}}


def settings(path: str) -> dict[str, object]:
    """What the sandboxes need of the engine: runsc, and experimental mode for `docker checkpoint` (pause under runsc)."""
    return {"runtimes": runtime_entry(path), "experimental": True}


def merge(config_path: str, runsc_path: str) -> None:
    """Write `config_path` with the runsc runtime added; the file's other settings are kept."""
    config: dict[str, object] = {}
    if os.path.exists(config_path):
        with open(config_path) as f:
            config = json.load(f)
    runtimes = dict(config.get("runtimes") or {})  # type: ignore[call-overload]
    runtimes.update(runtime_entry(runsc_path))
    config["runtimes"] = runtimes
    config["experimental"] = True
    os.makedirs(os.path.dirname(config_path) or ".", exist_ok=True)
    tmp = config_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, config_path)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self._path)


def checkpoints_enabled(docker_socket: str = "/var/run/docker.sock") -> bool:
    """Whether the engine's API serves checkpoints: its ping says `Docker-Experimental: true`.

    `docker info` reports experimental mode as soon as a config reload turns it on, but the checkpoint
    routes are only there when the engine started with it (they answer 501 after a reload).
    """
    connection = _UnixConnection(docker_socket)
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().getheader("Docker-Experimental", "").lower() == "true"
    except OSError:
        return False
    finally:
        connection.close()


if __name__ == "__main__":
    if sys.argv[1] == "--checkpoints-enabled":
        sys.exit(0 if checkpoints_enabled() else 1)
    if sys.argv[1] == "--print":
        print(json.dumps(settings(sys.argv[2]), indent=2))
    else:
        merge(sys.argv[1], sys.argv[2])
