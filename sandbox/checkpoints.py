"""Keeping a session while its container is gone: the workspace archive, the engine's checkpoint, the record.

A paused session's directory (`<paused_dir>/<session>/`, 0700, the server's; no sandbox ever sees it) holds
`state.json` (what the session was: image, limits, network, volumes, when it was last used, what was kept) and
`workspace.tar`, the contents of /workspace and /tmp (its volumes left out: they keep their own data).

The archive is made and unpacked by `tar` running inside the sandbox, as the sandbox's user: the server only
counts and stores the bytes (up to a cap) and never parses what the sandbox wrote. Every function here blocks
(the Docker SDK is synchronous): callers run them in a thread.
"""

from __future__ import annotations

import abc
import json
import os
import shutil
import socket
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from sandbox.base import Limits, SandboxInfo, VolumeMount
from sandbox.errors import PauseTooLarge, SandboxError

__all__ = [
    "ARCHIVE_FILE",
    "CHECKPOINT_NAME",
    "NodePausing",
    "PausedState",
    "archive_workspace",
    "checkpoint_bytes",
    "checkpoint_container",
    "delete_checkpoint",
    "load_state",
    "paused_dirs",
    "remove_state",
    "restore_workspace",
    "save_state",
    "start_from_checkpoint",
    "state_dir",
]

ARCHIVE_FILE = "workspace.tar"
CHECKPOINT_NAME = "tspause"
_STATE_FILE = "state.json"
ARCHIVED = ("workspace", "tmp")
"""What the archive holds, relative to the sandbox's root: its two writable filesystems."""
_KERNEL_OWN = ("tmp/.ipython",)
"""Left out: the kernel's own files (its history database), which a fresh kernel has open already."""
_CHUNK = 1024 * 1024
ARCHIVE_BASE_S = 30.0
ARCHIVE_MIN_BYTES_PER_S = 8 * 1024 * 1024
"""archive-deadline: an archive gets 30 s plus its cap at 8 MiB/s (the sandbox can stop its tar at will)."""


class NodePausing(Protocol):
    """A node's pause and resume of its sessions (the manager in-process, or its Ray actor)."""

    @abc.abstractmethod
    async def pause(self, session_id: str) -> dict[str, Any]:
        """Stop the session's container keeping its files (and memory where the runtime can): `{status, kept}`."""

    @abc.abstractmethod
    async def resume(self, session_id: str) -> dict[str, Any]:
        """Bring a paused session back: `{status, resumed}` (`resumed` None when it was running)."""


@dataclass
class PausedState:
    """A paused session as its node keeps it: what it was, when it was used, what was kept and how."""

    info: SandboxInfo
    paused_at: float
    last_used: float
    ttl_s: float
    kept: dict[str, Any] = field(default_factory=dict)  # {"filesystem": bool, "memory": bool, "note"?: str}
    checkpointed: bool = False  # the container is stopped with a memory checkpoint, not removed
    archive_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """The state as JSON (its SandboxInfo as fields)."""
        data = asdict(self)
        data["info"] = asdict(self.info)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PausedState:
        """The state `to_json` wrote."""
        raw = dict(data["info"])
        raw["limits"] = Limits(**raw["limits"])
        raw["egress"] = tuple(raw.get("egress") or ())
        raw["volumes"] = tuple(VolumeMount(**m) for m in raw.get("volumes") or ())
        return cls(
            info=SandboxInfo(**raw),
            paused_at=float(data["paused_at"]),
            last_used=float(data["last_used"]),
            ttl_s=float(data["ttl_s"]),
            kept=dict(data.get("kept") or {}),
            checkpointed=bool(data.get("checkpointed")),
            archive_bytes=int(data.get("archive_bytes") or 0),
        )


def state_dir(paused_dir: str, session_id: str, *, create: bool = False) -> str:
    """The private directory of one paused session (made 0700 under a 0700 parent when `create`)."""
    path = os.path.join(paused_dir, session_id)
    if create:
        os.makedirs(paused_dir, mode=0o700, exist_ok=True)
        os.chmod(paused_dir, 0o700)
        os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def paused_dirs(paused_dir: str) -> list[str]:
    """The session ids that have a paused directory on this node."""
    try:
        return sorted(n for n in os.listdir(paused_dir) if os.path.isdir(os.path.join(paused_dir, n)))
    except OSError:
        return []


def save_state(directory: str, state: PausedState) -> None:
    """Write the session's state atomically."""
    tmp = os.path.join(directory, _STATE_FILE + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(state.to_json(), fh)
    os.replace(tmp, os.path.join(directory, _STATE_FILE))


def load_state(directory: str) -> PausedState | None:
    """The state `save_state` wrote; None when there is none (or it cannot be read)."""
    try:
        with open(os.path.join(directory, _STATE_FILE)) as fh:
            return PausedState.from_json(json.load(fh))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_state(directory: str) -> None:
    """Delete a paused session's directory and all it holds."""
    shutil.rmtree(directory, ignore_errors=True)


def _excludes(volumes: tuple[VolumeMount, ...]) -> list[str]:
    return [f"--exclude={p}" for p in (*_KERNEL_OWN, *(m.path.strip("/") for m in volumes))]


def archive_workspace(
    client: Any, container_id: str, dest: str, volumes: tuple[VolumeMount, ...], cap_bytes: int
) -> int:
    """Stream /workspace and /tmp of a running container into `dest`; returns its size.

    PauseTooLarge (and no file) when the archive passes `cap_bytes`: the container is left as it was.
    """
    command = ["tar", "-C", "/", "--anchored", *_excludes(volumes), "-cf", "-", *ARCHIVED]
    exec_id = client.api.exec_create(container_id, command, stdout=True, stderr=True)["Id"]
    size = 0
    stream = client.api.exec_start(exec_id, stream=True, demux=True)
    timed_out = threading.Event()  # archive-deadline: the stream is closed under a stalled tar

    def expire() -> None:
        timed_out.set()
        _close(stream)

    watchdog = threading.Timer(ARCHIVE_BASE_S + cap_bytes / ARCHIVE_MIN_BYTES_PER_S, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        with open(dest + ".part", "wb") as fh:
            for out, _err in stream:
                if not out:
                    continue
                size += len(out)
                if size > cap_bytes:
                    raise PauseTooLarge(
                        f"the session's /workspace and /tmp hold more than {cap_bytes // (1024 * 1024)} MiB, the"
                        " cap of what a pause keeps (TOOLSERVER_MAX_PAUSE_ARCHIVE_MB); delete files first",
                        limit_mb=cap_bytes // (1024 * 1024),
                    )
                fh.write(out)
        if timed_out.is_set():
            raise SandboxError("archiving the workspace took too long (its tar was stopped or too slow)")
    except BaseException as exc:
        _close(stream)
        _unlink(dest + ".part")
        if timed_out.is_set() and not isinstance(exc, SandboxError):  # archive-deadline
            raise SandboxError(
                "archiving the workspace took too long (its tar was stopped or too slow)"
            ) from None
        raise
    finally:
        watchdog.cancel()
    code = client.api.exec_inspect(exec_id).get("ExitCode")
    if code not in (0, 1) or size == 0:  # 1: a file changed while it was read, which tar still archived
        _unlink(dest + ".part")
        raise SandboxError(f"archiving the workspace failed (tar exited with {code})")
    os.replace(dest + ".part", dest)
    return size


def restore_workspace(client: Any, container_id: str, source: str) -> None:
    """Unpack an archive `archive_workspace` made into a new container, as the sandbox's user."""
    exec_id = client.api.exec_create(
        container_id, ["tar", "-C", "/", "-xpf", "-"], stdin=True, stdout=True, stderr=True
    )["Id"]
    conn = client.api.exec_start(exec_id, socket=True)
    raw: socket.socket = getattr(conn, "_sock", conn)
    try:
        with open(source, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                raw.sendall(chunk)
        raw.shutdown(socket.SHUT_WR)
        while raw.recv(65536):  # tar's messages, if any; the end of the stream is the end of tar
            pass
    finally:
        _close(conn)
    code = client.api.exec_inspect(exec_id).get("ExitCode")
    if code not in (0, None):
        raise SandboxError(f"restoring the workspace failed (tar exited with {code})")


def checkpoint_container(client: Any, container_id: str) -> None:
    """Checkpoint a running container's memory and stop it (`docker checkpoint create`; experimental mode).

    A container restored before keeps its previous checkpoint under the same name, which is dropped first.
    """
    api = client.api
    delete_checkpoint(client, container_id)
    api._raise_for_status(
        api._post_json(
            api._url("/containers/{0}/checkpoints", container_id),
            data={"CheckpointID": CHECKPOINT_NAME, "Exit": True},
        )
    )


def delete_checkpoint(client: Any, container_id: str) -> None:
    """Drop the container's memory checkpoint, if it has one (once restored, or before a new one is taken)."""
    import docker.errors

    api = client.api
    try:
        api._raise_for_status(
            api._delete(api._url("/containers/{0}/checkpoints/{1}", container_id, CHECKPOINT_NAME))
        )
    except docker.errors.APIError as exc:  # none: this engine answers 500 "... does not exist", others 404
        if not isinstance(exc, docker.errors.NotFound) and "does not exist" not in str(exc):
            raise


def checkpoint_bytes(client: Any, container_id: str) -> int | None:
    """The size of a container's memory checkpoint on the engine's disk; None where this process cannot read it."""
    root = str(client.info().get("DockerRootDir") or "")
    if not root:
        return None
    path = os.path.join(root, "containers", container_id, "checkpoints", CHECKPOINT_NAME)
    if not os.path.isdir(path):
        return None
    total = 0
    try:
        for folder, _, files in os.walk(path, onerror=_raise):
            total += sum(os.lstat(os.path.join(folder, name)).st_size for name in files)
    except OSError:
        return None
    return total


def _raise(exc: OSError) -> None:
    raise exc


def start_from_checkpoint(client: Any, container_id: str) -> None:
    """Start a checkpointed container from its checkpoint (`docker start --checkpoint`)."""
    api = client.api
    api._raise_for_status(
        api._post(api._url("/containers/{0}/start", container_id), params={"checkpoint": CHECKPOINT_NAME})
    )


def _close(thing: Any) -> None:
    try:
        thing.close()
    except Exception:
        pass


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
