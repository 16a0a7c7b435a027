"""The guest daemon's memory watch: where no kernel kills one process at the memory limit, the daemon does.

Under runc the host kernel's OOM killer ends the biggest process of a container at its memory limit and the
sandbox lives on. Under gVisor the host only sees the sandbox as a whole: at the host's limit the whole sandbox
dies. So the host sets its own limit above the session's and tells the daemon the session's
(`TOOLSERVER_MEMORY_LIMIT_MB`); the daemon reads gVisor's accounting (`/proc/meminfo`, the whole sandbox's
memory, tmpfs files included, as a memory cgroup counts it) and SIGKILLs the process with the most resident
memory, never itself nor init, when the sandbox reaches the limit. It looks more often the nearer the limit is,
so that memory growing as fast as a process can fault it in is caught before it crosses the host's limit.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable

LIMIT_ENV = "TOOLSERVER_MEMORY_LIMIT_MB"
ASSUMED_GROWTH = 2 << 30  # bytes per second: faster than gVisor lets one process fault pages in on 2 cores
MIN_INTERVAL_S = 0.005
MAX_INTERVAL_S = 0.25


def used_bytes(meminfo: str = "/proc/meminfo") -> int:
    """Memory the whole (gVisor) sandbox uses: MemTotal minus MemAvailable."""
    fields = {}
    with open(meminfo, "rb") as f:
        for line in f.read().splitlines():
            name, _, rest = line.partition(b":")
            if name in (b"MemTotal", b"MemAvailable"):
                fields[name] = int(rest.split()[0]) * 1024
    return fields[b"MemTotal"] - fields[b"MemAvailable"]


def every_process() -> list[int]:
    """The pids of the sandbox (its own /proc)."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def biggest_process(pids: Iterable[int], spare: set[int]) -> tuple[int, int, str] | None:
    """(pid, resident bytes, name) of the process with the most resident memory, not counting `spare`."""
    best: tuple[int, int, str] | None = None
    for pid in pids:
        if pid in spare:
            continue
        name = str(pid)
        try:
            with open(f"/proc/{name}/statm", "rb") as f:
                resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{name}/comm", "rb") as f:
                comm = f.read().strip().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if best is None or resident > best[1]:
            best = (pid, resident, comm)
    return best


class MemoryWatch:
    """A daemon thread that keeps the sandbox under `limit` bytes by killing its biggest process."""

    def __init__(
        self,
        limit: int,
        *,
        used: Callable[[], int] = used_bytes,
        candidates: Callable[[], Iterable[int]] = every_process,
    ) -> None:
        self.limit = limit
        self._used = used
        self._candidates = candidates
        self.kills: list[tuple[int, int, str]] = []
        self._stop = threading.Event()

    @classmethod
    def from_environment(cls) -> MemoryWatch | None:
        """The watch the host asked for in the environment, or None (runc: the host kernel does it)."""
        value = os.environ.get(LIMIT_ENV, "")
        if not value.isdigit() or int(value) <= 0:
            return None
        return cls(int(value) << 20)

    def start(self) -> None:
        threading.Thread(target=self._run, name="memory-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> float:
        """Kill the biggest process if the sandbox is at its limit; returns how long until the next look."""
        used = self._used()
        if used >= self.limit:
            victim = biggest_process(self._candidates(), {1, os.getpid()})
            if victim is not None:
                try:
                    os.kill(victim[0], signal.SIGKILL)
                except OSError:
                    pass
                else:
                    self.kills.append(victim)
                    print(
                        f"sbxd: memory at {used >> 20} of {self.limit >> 20} MiB: killed pid {victim[0]}"
                        f" ({victim[2]}, {victim[1] >> 20} MiB resident)",
                        file=sys.stderr,
                        flush=True,
                    )
            return MIN_INTERVAL_S * 4  # let the kill free its memory before looking again
        room = (self.limit - used) / ASSUMED_GROWTH
        return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, room))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.check()
            except (OSError, KeyError, ValueError):
                delay = MAX_INTERVAL_S
            time.sleep(delay)
