"""Kernel supervision in the guest: start, restart, interrupt and watch `sbxkernel.py` (an IPython kernel)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from sbxd_procs import scratch_dir, spawn, watch_exit
from sbxd_wire import RequestError

KERNEL_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sbxkernel.py")


class Kernel:
    """Supervises `sbxkernel.py -f <connection file>` (an IPython kernel) in its own process group.

    The kernel connects to sockets the host listens on; those it binds itself go to a private directory.
    """

    def __init__(self, connection_file: str, cwd: str) -> None:
        self.connection_file = connection_file
        self.cwd = cwd
        self.private_dir = scratch_dir()
        self.lock = threading.RLock()
        self.proc: subprocess.Popen | None = None
        self.exited = threading.Event()
        self.restarts = 0

    @property
    def alive(self) -> bool:
        """Whether a kernel was started and has not exited."""
        return self.proc is not None and not self.exited.is_set()

    def status(self) -> dict:
        """The reply to `kernel_status`: alive, pid, and how many restarts so far."""
        pid = self.proc.pid if self.alive and self.proc else None
        return {"ok": True, "alive": self.alive, "pid": pid, "restarts": self.restarts}

    def start(self) -> dict:
        """Start the kernel unless it is alive; it needs the host's connection file."""
        with self.lock:
            if self.alive:
                return self.status()
            if not os.path.isfile(self.connection_file):
                raise RequestError("internal", f"no kernel connection file at {self.connection_file}")
            self._clear_private_dir()
            argv = [sys.executable, KERNEL_LAUNCHER, "-f", self.connection_file]
            # The shell keeps the image's headless Agg backend; the kernel shows figures inline.
            env = {
                **os.environ,
                "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                "SBXD_KERNEL_DIR": self.private_dir,
            }
            self.proc = spawn(argv, self.cwd, subprocess.DEVNULL, env)
            self.exited = threading.Event()
            watch_exit(self.proc, self.exited)
            return self.status()

    def _clear_private_dir(self) -> None:
        """Remove a dead kernel's socket files (the user may have removed the directory too)."""
        if not os.path.isdir(self.private_dir):
            self.private_dir = scratch_dir()
        for name in os.listdir(self.private_dir):
            try:
                os.unlink(os.path.join(self.private_dir, name))
            except OSError:
                pass

    def stop(self) -> None:
        """SIGKILL the kernel's process group and wait for it to be reaped."""
        with self.lock:
            if self.proc is not None and self.alive:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.exited.wait(5.0)

    def restart(self) -> dict:
        """A fresh kernel (the old one's state is lost)."""
        with self.lock:
            self.stop()
            self.restarts += 1
            return self.start()

    def interrupt(self) -> dict:
        """SIGINT the kernel, as Jupyter's interrupt does: the running cell gets a KeyboardInterrupt."""
        with self.lock:
            if self.proc is not None and self.alive:
                try:
                    os.kill(self.proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
            return self.status()
