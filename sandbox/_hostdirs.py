"""Each sandbox's host directories: a private one the container never sees, and `/sbx`, which it cannot write.

    <root>/<session>/              0700, the server's: kernel.host.json, meta.json, the host's kernel sockets
    <root>/<session>/sbx/          0755, the server's, mounted at /sbx: kernel.json, the kernel relays' sockets
    <root>/<session>/sbx/guest/    the guest daemon's socket; 0777 until that socket exists, then 0755

The sandbox can create nothing in /sbx: the host binds the sockets the kernel connects to, and the guest
daemon binds its own in `guest/` when the container starts, before any user code can run; the server then
freezes `guest/` (it owns it; the sandbox's uid is never the server's). So /sbx cannot fill the host's disk
or its inode table, and no socket there can be swapped for a link. Where the server may mount (root), /sbx
is a small tmpfs as well. Nothing the server trusts is ever read back from it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import subprocess

__all__ = [
    "clean_guest_dir",
    "freeze_guest_dir",
    "guest_socket",
    "guest_socket_bound",
    "make_dirs",
    "remove_dirs",
    "reopen_guest_dir",
    "shared_dir",
    "shared_dir_contained",
]

log = logging.getLogger(__name__)

_SHARED = "sbx"
_GUEST = "guest"
GUEST_SOCKET = "sbxd.sock"
SHARED_INODES = 256  # /sbx holds about 15 entries: connection files, relay sockets, the daemon's socket
_warned = False


def shared_dir(private: str) -> str:
    """The host's path of the directory mounted read-only at /sbx in the sandbox."""
    return os.path.join(private, _SHARED)


def guest_socket(private: str) -> str:
    """The host's path of the guest daemon's socket."""
    return os.path.join(private, _SHARED, _GUEST, GUEST_SOCKET)


def make_dirs(root: str, session_id: str, shared_cap_mb: int) -> str:
    """Create the private and shared directories of a session; returns the private one."""
    global _warned
    os.makedirs(root, mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    private = os.path.join(root, session_id)
    os.makedirs(private, mode=0o700)
    shared = shared_dir(private)
    os.makedirs(shared)
    os.chmod(shared, 0o755)
    if shared_cap_mb > 0 and os.geteuid() == 0:
        options = f"size={shared_cap_mb}m,nr_inodes={SHARED_INODES},mode=0755,nosuid,nodev,noexec"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tsbx", shared], capture_output=True, text=True
        )
        if done.returncode != 0 and not _warned:
            _warned = True
            log.warning(
                "could not mount a tmpfs on /sbx (%s); it is read-only to sandboxes", done.stderr.strip()
            )
    guest = os.path.join(shared, _GUEST)
    os.mkdir(guest)
    os.chmod(guest, 0o777)  # for the daemon's socket, until freeze_guest_dir
    return private


def freeze_guest_dir(private: str) -> None:
    """Make the guest daemon's directory read-only to the sandbox, now that its socket is there."""
    os.chmod(os.path.join(private, _SHARED, _GUEST), 0o755)


def _remove_entries(directory: str, keep: str = "") -> bool:
    """Remove every entry of `directory` but `keep` (never following a link); whether only `keep` is left."""
    for name in os.listdir(directory):
        if name == keep:
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return set(os.listdir(directory)) <= {keep}


def reopen_guest_dir(private: str) -> None:
    """Empty the guest daemon's directory and let it bind there again (after a checkpoint's restore)."""
    guest = os.path.join(private, _SHARED, _GUEST)
    if not _remove_entries(guest):
        raise OSError(f"the guest directory {guest} could not be emptied")
    os.chmod(guest, 0o777)


def clean_guest_dir(private: str) -> bool:
    """Remove every entry of the (frozen) guest directory but the daemon's socket; whether only that is left."""
    return _remove_entries(os.path.join(private, _SHARED, _GUEST), keep=GUEST_SOCKET)


def shared_dir_contained(private: str) -> bool:
    """Whether /sbx is a small tmpfs of its own (the server runs as root), which bounds what lands there."""
    return _is_mountpoint(shared_dir(private))


def guest_socket_bound(private: str) -> bool:
    """Whether the daemon's socket is there and is a socket (never a link: the host would follow it)."""
    try:
        return stat.S_ISSOCK(os.lstat(guest_socket(private)).st_mode)
    except FileNotFoundError:
        return False


def _is_mountpoint(path: str) -> bool:
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as fh:
            return any(line.split()[4] == real for line in fh)
    except OSError:
        return False


def remove_dirs(private: str) -> None:
    """Unmount the shared tmpfs (if any) and delete both directories (blocking: call it in a thread)."""
    shared = shared_dir(private)
    if _is_mountpoint(shared):
        subprocess.run(["umount", "-l", shared], capture_output=True)
    shutil.rmtree(private, ignore_errors=True)
