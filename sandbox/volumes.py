"""Volumes of one node: size-capped ext4 images, loop-mounted on the host, bind-mounted into sessions.

    <volumes_dir>/<volume id>.img    a sparse file of the volume's size, formatted ext4 (owned by the sandbox uid)
    <volumes_dir>/mnt/<volume id>/   where the node keeps it mounted (loop, nosuid, nodev), 0700 on the host

A filesystem of its own is what makes the size hold: a sandbox that fills its volume reads ENOSPC and no other
disk fills. The images outlive sessions and server restarts (a restarted node mounts them again; a mount a dead
node left is used as it is). Nodes of one machine share the directory and so its volumes: a lock file keeps two
of them from mounting one image twice. Loop mounts need root: a node that is not root refuses volumes with a
clear error. Every call here blocks (a thread runs
it); volume ids come from the server (`vol_` and hex), never from a tenant.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from sandbox.errors import SandboxError, SandboxUnavailable

__all__ = ["NodeVolumes", "VolumeHost", "VolumeInfo"]

_ID = re.compile(r"^vol_[0-9a-f]{8,40}$")


@dataclass(frozen=True)
class VolumeInfo:
    """A volume on this node: its size cap and what it holds now."""

    volume_id: str
    size_mb: int
    used_bytes: int
    mounted: bool


class VolumeHost:
    """The images and mounts of one node's volumes."""

    def __init__(self, volumes_dir: str, uid: int) -> None:
        self.volumes_dir = volumes_dir
        self.uid = uid

    def create(self, volume_id: str, size_mb: int) -> VolumeInfo:
        """A new, empty volume of `size_mb`, mounted and ready for sessions."""
        self._require_root()
        image, mount = self._paths(volume_id)
        os.makedirs(os.path.dirname(mount), mode=0o700, exist_ok=True)
        with self._locked():
            if os.path.exists(image):
                raise SandboxError(f"volume {volume_id} already exists on this node")
            try:
                with open(image, "xb") as fh:
                    # Reserved, not sparse: the host's disk cannot be promised twice (ENOSPC here, not later).
                    os.posix_fallocate(fh.fileno(), 0, size_mb * 1024 * 1024)
                options = (
                    f"root_owner={self.uid}:{self.uid},nodiscard"  # discard would punch the reservation out
                )
                _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", options, image)
                self._mount(volume_id)
            except BaseException:
                self._remove(volume_id)
                raise
        return self.info(volume_id)

    def attach_all(self) -> builtins.list[str]:
        """Mount every volume image found here that is not mounted (after a restart); their ids."""
        if not os.path.isdir(self.volumes_dir) or os.geteuid() != 0:
            return []
        attached = []
        with self._locked():
            for name in sorted(os.listdir(self.volumes_dir)):
                volume_id = name.removesuffix(".img")
                if not (name.endswith(".img") and _ID.match(volume_id)):
                    continue
                if not os.path.ismount(self._paths(volume_id)[1]):  # a dead node's mount is used as it is
                    self._mount(volume_id)
                    attached.append(volume_id)
        return attached

    def source(self, volume_id: str) -> str:
        """The host directory a session's container binds; SandboxError when this node has no such volume."""
        _, mount = self._paths(volume_id)
        if not os.path.ismount(mount):
            raise SandboxError(f"volume {volume_id} is not on this node")
        return mount

    def info(self, volume_id: str) -> VolumeInfo:
        """The volume's size cap and use."""
        image, mount = self._paths(volume_id)
        if not os.path.exists(image):
            raise SandboxError(f"volume {volume_id} is not on this node")
        mounted = os.path.ismount(mount)
        used = 0
        if mounted:
            stat = os.statvfs(mount)
            used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
        return VolumeInfo(volume_id, os.path.getsize(image) // (1024 * 1024), used, mounted)

    def remove(self, volume_id: str) -> None:
        """Unmount and delete the volume (a no-op when it is gone); the caller checks no session uses it."""
        with self._locked():
            self._remove(volume_id)

    def _remove(self, volume_id: str) -> None:
        image, mount = self._paths(volume_id)
        if os.path.ismount(mount):
            _run("umount", mount)
        shutil.rmtree(mount, ignore_errors=True)
        if os.path.exists(image):
            os.unlink(image)

    def _mount(self, volume_id: str) -> None:
        image, mount = self._paths(volume_id)
        os.makedirs(mount, mode=0o700, exist_ok=True)
        _run("mount", "-o", "loop,nosuid,nodev", image, mount)
        os.chmod(mount, 0o700)  # the mount's root (the sandbox's uid owns it): no other host user looks in

    def _paths(self, volume_id: str) -> tuple[str, str]:
        if not _ID.match(volume_id):
            raise SandboxError(f"not a volume id: {volume_id!r}")
        return (
            os.path.join(self.volumes_dir, f"{volume_id}.img"),
            os.path.join(self.volumes_dir, "mnt", volume_id),
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the directory's lock: the nodes of one machine mount, make and remove one at a time."""
        os.makedirs(self.volumes_dir, mode=0o700, exist_ok=True)
        with open(os.path.join(self.volumes_dir, ".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _require_root(self) -> None:
        if os.geteuid() != 0:
            raise SandboxUnavailable(
                "volumes need the sandbox node to run as root (each volume is a loop-mounted filesystem of its"
                " own, so that its size holds)"
            )


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SandboxError(f"{argv[0]} failed: {(done.stderr or done.stdout).strip()[:300]}")


class NodeVolumes(Protocol):
    """A node's volume operations, as the service calls them (the manager in-process, or over Ray)."""

    @abc.abstractmethod
    async def volume_create(self, volume_id: str, size_mb: int) -> VolumeInfo:
        """Make an empty volume of `size_mb` on this node."""

    @abc.abstractmethod
    async def volume_info(self, volume_id: str) -> VolumeInfo:
        """The volume's size cap, use, and whether it is mounted."""

    @abc.abstractmethod
    async def volume_delete(self, volume_id: str) -> None:
        """Delete the volume; Conflict (409) while a session mounts it."""
