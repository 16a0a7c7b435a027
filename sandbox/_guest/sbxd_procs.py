"""Process plumbing of the guest daemon: start a child in a session of its own, reap it, kill its session."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time

OWN_TMPFS = "/run/sbxd"  # the daemon's own tmpfs, when the host gave one


def session_members(sid: int) -> list[int]:
    """Pids of living (not zombie) processes whose session is `sid` (Linux /proc)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != b"Z":
            pids.append(int(name))
    return pids


def kill_session(sid: int, timeout: float = 2.0) -> None:
    """SIGKILL a whole session, background jobs in their own groups included, and wait until it is gone.

    A SIGKILLed process lives on until the kernel schedules its death; waiting makes "closed" mean "no job left".
    """
    deadline = time.monotonic() + timeout
    while members := session_members(sid):  # by session, not by pid: a reaped leader's pid may be reused
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if time.monotonic() >= deadline:
            return
        time.sleep(0.005)


def scratch_dir() -> str:
    """A fresh private directory: in the daemon's own tmpfs when there is one, so a full /tmp does no harm."""
    base = OWN_TMPFS if os.path.isdir(OWN_TMPFS) and os.access(OWN_TMPFS, os.W_OK) else None
    return tempfile.mkdtemp(prefix=".sbxd-", dir=base)


def spawn(argv: list[str], cwd: str, stdio: int, env: dict | None) -> subprocess.Popen:
    """Start `argv` in a session (and so a process group) of its own, with all three stdio on `stdio`."""
    return subprocess.Popen(
        argv, cwd=cwd, stdin=stdio, stdout=stdio, stderr=stdio, env=env, start_new_session=True
    )


def watch_exit(proc: subprocess.Popen, done: threading.Event, wake_fd: int | None = None) -> None:
    """Reap `proc` in a thread, so its death is known at once."""

    def wait() -> None:
        proc.wait()
        if wake_fd is not None:  # before `done`, so whoever waits on `done` may close the other end
            os.write(wake_fd, b"x")
            os.close(wake_fd)
        done.set()

    threading.Thread(target=wait, name=f"reap-{proc.pid}", daemon=True).start()
