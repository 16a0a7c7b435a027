"""Add the `runsc` runtime and experimental mode to a Docker daemon config (merged, other keys kept), or print them.

python3 scripts/daemon_config.py /etc/docker/daemon.json /usr/bin/runsc
python3 scripts/daemon_config.py --print /usr/bin/runsc
"""

from __future__ import annotations

import json
import os
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


if __name__ == "__main__":
    if sys.argv[1] == "--print":
        print(json.dumps(settings(sys.argv[2]), indent=2))
    else:
        merge(sys.argv[1], sys.argv[2])
