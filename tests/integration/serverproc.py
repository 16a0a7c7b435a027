"""Run `toolserver up` as a real process for tests: start, crash (SIGKILL the whole group), stop cleanly."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A free port below the kernel's ephemeral range, where Ray's own random ports do not land."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 30000")


def _session_members(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: session id (after pid and comm)
            pids.append(int(entry))
    return pids


class ServerProcess:
    """One `toolserver up` process with its own state directory and port."""

    def __init__(self, home: Path, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.env = {**os.environ, "TOOLSERVER_HOME": str(home), **(env or {})}
        self.env.pop("RAY_ADDRESS", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_key(self) -> str:
        return (self.home / "admin.key").read_text().strip()

    def start(self, timeout_s: float = 180.0, attempts: int = 3) -> None:
        """Start and wait until healthy; a port lost to another process is replaced by a new one."""
        for attempt in range(attempts):
            try:
                self._start_once(timeout_s)
                return
            except RuntimeError:
                if attempt == attempts - 1 or "Failed to bind" not in self.tail(200):
                    raise
                self.port = free_port()

    def _start_once(self, timeout_s: float) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "toolserver.cli", "up", "--no-image-build", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"toolserver up exited with {self.proc.returncode}:\n{self.tail()}")
            if self._started_by_us():
                try:
                    if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        raise TimeoutError(f"toolserver did not come up in {timeout_s} s:\n{self.tail()}")

    def _started_by_us(self) -> bool:
        """`toolserver up` writes server.json once start-up is complete."""
        try:
            return json.loads((self.home / "server.json").read_text()).get("pid") == self.proc.pid  # type: ignore[union-attr]
        except (OSError, ValueError):
            return False

    def crash(self) -> None:
        """SIGKILL the server and every process of its session (Ray included): no cleanup runs."""
        assert self.proc is not None
        sid = os.getsid(self.proc.pid)
        for _ in range(3):
            for pid in _session_members(sid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self, timeout_s: float = 90.0) -> None:
        """SIGTERM, as `toolserver down` does: the server removes its sandboxes and exits."""
        if self.proc is None:
            return
        sid = os.getsid(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        finally:
            for pid in _session_members(sid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc = None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
