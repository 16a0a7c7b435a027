"""The sandbox seam: what a session's execution environment can do, independent of the backend."""

from __future__ import annotations

import abc
import builtins
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "Display",
    "FileEntry",
    "Limits",
    "PythonError",
    "PythonResult",
    "RUNTIMES",
    "Runtime",
    "Sandbox",
    "VolumeMount",
    "SandboxBackend",
    "SandboxInfo",
    "SandboxOps",
    "SandboxSpec",
    "SessionOps",
    "ShellResult",
]


@dataclass(frozen=True)
class VolumeMount:
    """A volume in a session: its id (the node's name for it), where the sandbox sees it, and how."""

    volume_id: str
    path: str  # absolute, below /workspace
    read_only: bool = False


Network = Literal["none", "bridge", "egress"]
"""`none`: no network; `bridge`: the open network; `egress`: only the names of `egress`, through the node's proxy."""
Runtime = Literal["runc", "runsc"]
RUNTIMES: tuple[Runtime, ...] = ("runc", "runsc")
"""The container runtimes a sandbox may run under: runc (the host kernel) or runsc (gVisor's own kernel)."""


@dataclass(frozen=True)
class Limits:
    """Hard resource limits of one sandbox."""

    memory_mb: int = 1024
    cpus: float = 1.0
    pids: int = 256
    disk_mb: int = 512
    nofile: int = 1024
    tmp_mb: int = 64

    def within(self, maximum: Limits) -> builtins.list[str]:
        """Names of the limits that exceed `maximum` (empty when all fit)."""
        over = []
        for name in ("memory_mb", "cpus", "pids", "disk_mb", "nofile", "tmp_mb"):
            value, cap = getattr(self, name), getattr(maximum, name)
            if value <= 0 or value > cap:
                over.append(name)
        return over


@dataclass(frozen=True)
class SandboxSpec:
    """What a new sandbox should look like."""

    image: str | None = None  # None: the backend's default image
    limits: Limits = field(default_factory=Limits)
    network: Network = "none"
    owner: str = ""  # the tenant namespace that owns the session
    runtime: Runtime | None = None  # None: the backend's default runtime
    egress: tuple[str, ...] = ()  # network "egress": the allowed `host`, `*.domain` or `host:port` entries
    volumes: tuple[VolumeMount, ...] = ()  # this node's volumes, bound under /workspace


@dataclass(frozen=True)
class SandboxInfo:
    """Where a sandbox lives and what it is."""

    session_id: str
    container_id: str
    owner: str
    image: str
    node_id: str
    network: Network
    limits: Limits
    created_at: float
    runtime: Runtime = "runc"
    egress: tuple[str, ...] = ()  # network "egress": what the node's proxy lets it reach
    volumes: tuple[VolumeMount, ...] = ()  # the volumes bound into it


@dataclass(frozen=True)
class ShellResult:
    """What one shell command did: `exit_code` is None when it timed out or its shell died."""

    exit_code: int | None
    output: str
    timed_out: bool
    truncated: bool
    cwd: str
    shell_restarted: bool = False


@dataclass(frozen=True)
class Display:
    """One rich output of a cell; `data` is text, or base64 for binary mime types."""

    mime: str
    data: str


@dataclass(frozen=True)
class PythonError:
    """The exception a cell raised, as the kernel reported it."""

    ename: str
    evalue: str
    traceback: builtins.list[str]


@dataclass(frozen=True)
class PythonResult:
    """What one cell did: its streams, its value's text, rich displays and the error, if any."""

    status: Literal["ok", "error", "timeout"]
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    display: builtins.list[Display] = field(default_factory=list)
    error: PythonError | None = None
    truncated: bool = False


@dataclass(frozen=True)
class FileEntry:
    """One workspace file or directory."""

    path: str  # relative to the workspace
    size: int
    is_dir: bool
    mtime: float


class SandboxOps(Protocol):
    """What one session's sandbox does: a persistent shell, a kernel, a workspace.

    `SessionOps` is the same surface addressed by session id (a node's manager); `Sandbox` adds where the
    sandbox lives and what to release. The contract suite (tests/contract) holds every implementation to it.
    """

    @abc.abstractmethod
    async def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        """Run `command` in the session's persistent bash; a timeout kills the command, not the shell."""

    @abc.abstractmethod
    async def python(self, code: str, timeout_s: float = 30.0) -> PythonResult:
        """Run a cell in the session's kernel; a timeout interrupts the cell and keeps the kernel's state."""

    @abc.abstractmethod
    async def restart_python(self) -> None:
        """Replace the kernel with a fresh one."""

    @abc.abstractmethod
    async def write_file(self, path: str, data: bytes) -> FileEntry:
        """Write `data` to a workspace-relative `path`, creating parent directories."""

    @abc.abstractmethod
    async def read_file(self, path: str) -> bytes:
        """Read a workspace-relative file."""

    @abc.abstractmethod
    async def list_files(self, path: str = "") -> builtins.list[FileEntry]:
        """Entries of a workspace directory (not recursive), sorted by path."""


class SessionOps(Protocol):
    """`SandboxOps` addressed by session id: each method takes the session first, then the same arguments.

    A node's `SandboxManager` implements it in-process and `toolserver.nodes` over Ray (`NodeClient`, which
    adds the session lifecycle); tests/contract/test_surfaces.py checks that the two stay mirrors.
    """

    @abc.abstractmethod
    async def shell(self, session_id: str, command: str, timeout_s: float = 30.0) -> ShellResult:
        """`SandboxOps.shell` in the session's sandbox."""

    @abc.abstractmethod
    async def python(self, session_id: str, code: str, timeout_s: float = 30.0) -> PythonResult:
        """`SandboxOps.python` in the session's sandbox."""

    @abc.abstractmethod
    async def restart_python(self, session_id: str) -> None:
        """`SandboxOps.restart_python` in the session's sandbox."""

    @abc.abstractmethod
    async def write_file(self, session_id: str, path: str, data: bytes) -> FileEntry:
        """`SandboxOps.write_file` in the session's sandbox."""

    @abc.abstractmethod
    async def read_file(self, session_id: str, path: str) -> bytes:
        """`SandboxOps.read_file` in the session's sandbox."""

    @abc.abstractmethod
    async def list_files(self, session_id: str, path: str = "") -> builtins.list[FileEntry]:
        """`SandboxOps.list_files` in the session's sandbox."""


class Sandbox(SandboxOps, abc.ABC):
    """One session's private execution environment: its operations, where it lives, what to release."""

    @property
    @abc.abstractmethod
    def info(self) -> SandboxInfo:
        """Where this sandbox lives and what it is."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release host-side resources (connections); the sandbox itself stays."""


class SandboxBackend(abc.ABC):
    """Creates, finds and destroys sandboxes on one engine."""

    @abc.abstractmethod
    async def create(self, spec: SandboxSpec, session_id: str | None = None) -> Sandbox:
        """A new, ready sandbox for `spec` (under `session_id` when given)."""

    @abc.abstractmethod
    async def get(self, session_id: str) -> Sandbox:
        """The live sandbox of a session; raises SandboxNotFound."""

    @abc.abstractmethod
    async def destroy(self, session_id: str) -> None:
        """Remove the sandbox and everything it holds; a no-op when already gone."""

    @abc.abstractmethod
    async def list(self) -> builtins.list[SandboxInfo]:
        """Every live sandbox of this backend."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Remove every sandbox this backend owns."""

    async def check_alive(self, session_id: str) -> None:  # noqa: B027 - optional hook
        """Raise SandboxGone when the session's sandbox has died; a no-op where that cannot happen."""

    async def reconcile(
        self,
        live_session_ids: set[str],
        adopt_from: set[str] | None = None,
        checkpointed: set[str] | None = None,
    ) -> dict[str, builtins.list[str]]:
        """Match the engine to the registry: re-attach live sessions, remove the rest.

        `checkpointed` names paused sessions whose stopped container holds their memory: those are kept.
        """
        return {"attached": [], "removed": []}

    def egress_report(self, session_id: str) -> dict[str, Any]:
        """What the session's egress proxy let through and refused (empty where there is no proxy)."""
        return {"rules": [], "connections": [], "allowed": 0, "denied": 0}

    def egress_totals(self) -> dict[str, int]:
        """Connections this backend's egress proxies allowed and denied since it started."""
        return {"allowed": 0, "denied": 0}
