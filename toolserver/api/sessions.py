"""Sessions, and what their shell, kernel and files answer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from toolserver.api.base import Reply
from toolserver.api.pause import PauseKept, SessionResumed  # pause: its models
from toolserver.api.volumes import VolumeMountInfo

__all__ = [
    "Display",
    "FileEntry",
    "FileList",
    "PythonError",
    "PythonRestarted",
    "EgressConnection",
    "EgressReport",
    "SessionEgress",
    "PythonResult",
    "Session",
    "SessionLimits",
    "SessionList",
    "ShellResult",
]


class SessionLimits(Reply):
    """The limits a session's sandbox runs under."""

    memory_mb: int
    cpus: float
    pids: int
    disk_mb: int
    nofile: int | None = None
    tmp_mb: int | None = None


class SessionEgress(Reply):
    """A session network that reaches only these names, through its node's egress proxy."""

    egress: list[str]


class EgressConnection(Reply):
    """One connection a sandbox asked its egress proxy for."""

    time: float
    host: str
    port: int
    method: str = Field(description="CONNECT, or the plain HTTP request's method")
    allowed: bool
    reason: str = Field("", description="why it was denied")
    bytes_up: int = Field(0, description="bytes from the sandbox")
    bytes_down: int = Field(0, description="bytes to the sandbox")
    duration_s: float | None = Field(None, description="set when an allowed connection has ended")


class EgressReport(Reply):
    """`GET /v1/sessions/{id}/egress`: the allow-list, counts since the proxy started, recent connections."""

    rules: list[str]
    allowed: int
    denied: int
    connections: list[EgressConnection]


class Session(Reply):
    """A sandbox session: `status` is `running`, `paused`, `stopped`, `expired`, `lost` or `failed`."""

    id: str
    node_id: str | None = None
    status: str
    created_at: float
    last_used_at: float | None = None
    image: str | None = None
    limits: SessionLimits | None = None
    network: str | SessionEgress | None = None
    volumes: list[VolumeMountInfo] = Field(default_factory=list, description="the volumes it mounts")
    ttl_s: float | None = None
    expires_at: float | None = None
    paused_at: float | None = Field(None, description="when it was paused (pause: status `paused`)")
    kept: PauseKept | None = Field(None, description="what its last pause kept")
    resumed: SessionResumed | None = Field(None, description="what its last resume restored")


class SessionList(Reply):
    """`GET /v1/sessions`."""

    sessions: list[Session]


class ShellResult(Reply):
    """One command in the session's persistent bash."""

    exit_code: int | None
    output: str
    timed_out: bool
    truncated: bool
    cwd: str
    shell_restarted: bool = False


class Display(Reply):
    """A rich output of a cell: `mime` type and its data (text, or base64 for binary types)."""

    mime: str
    data: str


class PythonError(Reply):
    """The exception a cell raised."""

    ename: str
    evalue: str
    traceback: list[str]


class PythonResult(Reply):
    """One cell in the session's persistent kernel."""

    status: Literal["ok", "error", "timeout"]
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    display: list[Display] = []
    error: PythonError | None = None
    truncated: bool = False


class PythonRestarted(Reply):
    """`POST /v1/sessions/{id}/python/restart`."""

    restarted: bool


class FileEntry(Reply):
    """A file or directory of the workspace; `path` is relative to it."""

    path: str
    size: int
    is_dir: bool
    mtime: float


class FileList(Reply):
    """`GET /v1/sessions/{id}/files`."""

    entries: list[FileEntry]
