"""Each sandbox's two host directories: a private one the container never sees, and the shared `/sbx`.

    <root>/<session>/              0700, the server's: kernel.host.json, meta.json
    <root>/<session>/sbx/          mounted at /sbx: sockets, and kernel.json (server-owned, 0644)

The shared directory is sticky (1777), so the sandbox cannot replace the files the server put there,
and, where the server may mount (root), it is a small tmpfs so the sandbox cannot fill the host's disk
through it. Nothing the server trusts is ever read back from it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

__all__ = ["make_dirs", "remove_dirs", "shared_dir"]

log = logging.getLogger(__name__)

_SHARED = "sbx"
_warned = False


def shared_dir(private: str) -> str:
    return os.path.join(private, _SHARED)


def make_dirs(root: str, session_id: str, shared_cap_mb: int) -> str:
    """Create the private and shared directories of a session; returns the private one."""
    global _warned
    os.makedirs(root, mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    private = os.path.join(root, session_id)
    os.makedirs(private, mode=0o700)
    shared = shared_dir(private)
    os.makedirs(shared)
    os.chmod(shared, 0o1777)
    if shared_cap_mb > 0 and os.geteuid() == 0:
        options = f"size={shared_cap_mb}m,mode=1777,nosuid,nodev,noexec"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tsbx", shared], capture_output=True, text=True
        )
        if done.returncode != 0 and not _warned:
            _warned = True
            log.warning("could not cap /sbx with a tmpfs (%s); it shares the host disk", done.stderr.strip())
    elif shared_cap_mb > 0 and not _warned:
        _warned = True
        log.warning("not root: each sandbox's /sbx directory is not size-capped")
    return private


def _is_mountpoint(path: str) -> bool:
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as fh:
            return any(line.split()[4] == real for line in fh)
    except OSError:
        return False


def remove_dirs(private: str) -> None:
    """Unmount the shared tmpfs (if any) and delete both directories."""
    shared = shared_dir(private)
    if _is_mountpoint(shared):
        subprocess.run(["umount", "-l", shared], capture_output=True)
    shutil.rmtree(private, ignore_errors=True)
