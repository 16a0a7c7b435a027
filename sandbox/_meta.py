"""What a sandbox's private directory records about its session, and the SandboxInfo re-attach rebuilds from it.

Container labels are fixed at creation, so facts that change or that labels cannot hold (the owner of a pooled
sandbox, its limits, its creation time) live in `meta.json` beside the sandbox's sockets.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from typing import Any

from sandbox import _labels
from sandbox.base import Limits, Network, SandboxInfo, VolumeMount

__all__ = ["info_from_container", "read_meta", "write_meta"]

_META_FILE = "meta.json"


def write_meta(host_dir: str, info: SandboxInfo) -> None:
    """Record the session's owner, creation time and limits (atomically: a reader never sees half)."""
    meta = {
        "session_id": info.session_id,
        "owner": info.owner,
        "created_at": info.created_at,
        "limits": asdict(info.limits),
        "runtime": info.runtime,
        "network": info.network,
        "egress": list(info.egress),
        "volumes": [asdict(m) for m in info.volumes],
    }
    tmp = os.path.join(host_dir, _META_FILE + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(meta, fh)
    os.replace(tmp, os.path.join(host_dir, _META_FILE))


def read_meta(host_dir: str) -> dict[str, Any]:
    """What `write_meta` recorded; empty when nothing readable is there."""
    try:
        with open(os.path.join(host_dir, _META_FILE)) as fh:
            data = json.load(fh)
            return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def info_from_container(
    container: Any, session_id: str, host_dir: str, *, node_id: str, default_image: str
) -> SandboxInfo:
    """The SandboxInfo of a running container found again: its directory's record, else what the engine knows."""
    meta = read_meta(host_dir)
    labels = container.labels
    host_config = container.attrs.get("HostConfig", {})
    try:
        limits = Limits(**meta["limits"])
    except (KeyError, TypeError):  # metadata of an older server: what the engine knows
        limits = Limits(
            memory_mb=int(host_config.get("Memory", 0) // (1024 * 1024)) or Limits().memory_mb,
            cpus=(host_config.get("NanoCpus", 0) or 1e9) / 1e9,
            pids=int(host_config.get("PidsLimit") or Limits().pids),
        )
    network = _network(meta, host_config)
    return SandboxInfo(
        session_id=session_id,
        container_id=container.id,
        owner=str(meta.get("owner", labels.get(_labels.OWNER, ""))),
        image=container.attrs.get("Config", {}).get("Image", default_image),
        node_id=node_id,
        network=network,
        limits=limits,
        created_at=float(meta.get("created_at", time.time())),
        runtime="runsc" if host_config.get("Runtime") == "runsc" else "runc",  # what the engine runs it under
        egress=tuple(str(e) for e in meta.get("egress") or ()) if network == "egress" else (),
        volumes=_volumes(meta),
    )


def _volumes(meta: dict[str, Any]) -> tuple[VolumeMount, ...]:
    """The volumes the record says the session mounts (an older record: none)."""
    try:
        return tuple(
            VolumeMount(str(m["volume_id"]), str(m["path"]), bool(m.get("read_only")))
            for m in meta.get("volumes") or ()
        )
    except (KeyError, TypeError):
        return ()


def _network(meta: dict[str, Any], host_config: dict[str, Any]) -> Network:
    """The engine's network mode, with "egress" (no network but the proxy's socket) from the record."""
    if host_config.get("NetworkMode") not in ("none", "", None):
        return "bridge"
    return "egress" if meta.get("network") == "egress" else "none"
