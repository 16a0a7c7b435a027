"""Helpers shared by the benchmarks that start a server or sandboxes: processes, clean-up, signals, machine."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
from pathlib import Path
from typing import Any

__all__ = [
    "interrupt",
    "interrupted",
    "machine_summary",
    "processes",
    "remove_containers_named",
    "stop_server",
    "sweep_instance",
]


def processes() -> list[tuple[int, int, int]]:
    """(pid, session id, CPU ticks used) of every process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found.append((int(entry), int(fields[3]), int(fields[11]) + int(fields[12])))  # sid, utime + stime
    return found


def stop_server(server: Any) -> None:
    """`ServerProcess.stop`, or, when `toolserver up` already died, an end to what its session left running."""
    if server.proc is None:
        return
    if server.proc.poll() is None:
        server.stop()
        return
    session = server.proc.pid  # `toolserver up` runs as a session leader (start_new_session)
    for pid, sid, _ in processes():
        if sid == session:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    server.proc = None


def sweep_instance(instance_id: str) -> int:
    """Remove the containers labelled `toolserver.instance=<instance_id>` and its runtime directory; how many."""
    from sandbox.config import SandboxConfig

    shutil.rmtree(os.path.join(SandboxConfig().runtime_dir, instance_id), ignore_errors=True)
    removed = 0
    with contextlib.suppress(Exception):
        import docker

        client = docker.from_env()
        for container in client.containers.list(
            all=True, filters={"label": f"toolserver.instance={instance_id}"}
        ):
            container.remove(force=True)
            removed += 1
    return removed


def remove_containers_named(prefix: str) -> int:
    """Remove every container whose name starts with `prefix` (Docker's name filter is a substring); how many."""
    removed = 0
    with contextlib.suppress(Exception):
        import docker

        for container in docker.from_env().containers.list(all=True, filters={"name": prefix}):
            if container.name.startswith(prefix):
                container.remove(force=True)
                removed += 1
    return removed


interrupted: list[int] = []  # the signals `interrupt` received


def interrupt(signum: int, frame: Any) -> None:
    """A SIGINT/SIGTERM handler: remember the signal and stop the run with KeyboardInterrupt."""
    interrupted.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def machine_summary() -> str:
    """One line: cores, CPU model, kernel, Python, Ray and httpx versions, load average now."""
    import httpx
    import ray

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"machine: {os.cpu_count()} cores ({cpu or platform.processor()}), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, Ray {ray.__version__}, "
        f"httpx {httpx.__version__}; load average at start {os.getloadavg()[0]:.1f}"
    )
