"""Container runtimes: what a node's engine offers, and how each runtime is told a session's limits.

runc runs the sandbox on the host kernel, whose cgroups and rlimits enforce every limit per process. runsc
(gVisor) puts a kernel of its own between the sandbox and the host; the host cgroup then holds gVisor's own
processes too, so it becomes the backstop, and the limits that must fail one call (not end the sandbox) are
enforced inside: RLIMIT_NPROC for processes, the guest daemon's memory watch for memory.
"""

from __future__ import annotations

from typing import Any

from sandbox.base import Limits, Runtime
from sandbox.errors import RuntimeUnavailable

__all__ = ["EngineRuntimes", "resource_options"]


class EngineRuntimes:
    """The runtimes a Docker engine has registered, asked again when one is missing (a reload may add it)."""

    def __init__(self) -> None:
        self._known: frozenset[str] = frozenset()

    def names(self, client: Any) -> tuple[str, ...]:
        """The engine's runtime names, sorted (fresh from `docker info`)."""
        runtimes = client.info().get("Runtimes") or {}
        self._known = frozenset(runtimes)
        return tuple(sorted(self._known))

    def require(self, client: Any, runtime: Runtime, node_id: str) -> None:
        """RuntimeUnavailable, naming the fix, unless the engine has `runtime`."""
        if runtime in self._known or runtime in self.names(client):
            return
        raise RuntimeUnavailable(
            f"the Docker engine of node {node_id} has no runtime {runtime!r} (it has:"
            f" {', '.join(sorted(self._known)) or 'none'}); scripts/setup.sh installs gVisor and registers"
            " it, or add it to the engine's daemon.json and reload the engine",
            runtime=runtime,
        )


# Measured here (gVisor 2022, ptrace platform): an idle sandbox's gVisor processes hold ~110 host tasks and
# ~30 MiB beyond what the guest itself uses; each guest process adds a stub process of ~9 host threads (up to
# ~10 under a fork bomb at the limit; 16 leaves room).
RUNSC_HOST_TASKS_BASE = 256
RUNSC_HOST_TASKS_PER_PROCESS = 16
RUNSC_MEMORY_HEADROOM_MB = 128
MEMORY_LIMIT_ENV = "TOOLSERVER_MEMORY_LIMIT_MB"
"""Tells the guest daemon to watch memory itself (runsc): the memory the sandbox may use, in MiB."""


def resource_options(runtime: Runtime, limits: Limits, file_cap: int) -> dict[str, Any]:
    """The container-create arguments that carry `limits` under `runtime`."""
    import docker.types

    ulimits = [
        docker.types.Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
        docker.types.Ulimit(name="core", soft=0, hard=0),
        docker.types.Ulimit(name="fsize", soft=file_cap, hard=file_cap),
    ]
    if runtime == "runc":
        memory = f"{limits.memory_mb}m"
        return {
            "runtime": runtime,
            "mem_limit": memory,
            "memswap_limit": memory,
            "pids_limit": limits.pids,
            "ulimits": ulimits,
            "environment": {},
        }
    # runsc: gVisor's kernel counts the sandbox's tasks per uid (a fork past the limit gets EAGAIN, as runc's
    # pids cgroup gives), and the guest daemon kills the biggest process when memory reaches the limit (as
    # runc's OOM killer does). The host cgroup, which also holds gVisor itself, is the backstop above both.
    ulimits.append(docker.types.Ulimit(name="nproc", soft=limits.pids, hard=limits.pids))
    memory = f"{limits.memory_mb + RUNSC_MEMORY_HEADROOM_MB}m"
    return {
        "runtime": runtime,
        "mem_limit": memory,
        "memswap_limit": memory,
        "pids_limit": RUNSC_HOST_TASKS_BASE + RUNSC_HOST_TASKS_PER_PROCESS * limits.pids,
        "ulimits": ulimits,
        "environment": {MEMORY_LIMIT_ENV: str(limits.memory_mb)},
    }
