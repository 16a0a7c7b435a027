"""Background processes of a session: the request bodies and what the routes answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from toolserver.api.base import Reply

__all__ = [
    "OutputChunk",
    "ProcessInfo",
    "ProcessList",
    "ProcessOutput",
    "ProcessSignal",
    "ProcessStart",
    "ProcessStdin",
    "StdinWritten",
]

SignalName = Literal["TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT"]
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProcessStart(_Body):
    """`POST /v1/sessions/{id}/processes`: a command run by bash in the background."""

    command: str = Field(min_length=1, max_length=1 << 20)
    cwd: str | None = Field(None, max_length=4096, description="relative to the workspace, or absolute")
    env: dict[str, str] | None = Field(None, max_length=256, description="added to the sandbox's environment")
    stdin: bool = Field(False, description="keep stdin open for POST .../stdin (else it reads /dev/null)")


class ProcessStdin(_Body):
    """`POST .../processes/{pid}/stdin`: text for the process's stdin; `eof` closes it afterwards."""

    data: str = Field("", description="UTF-8 text, at most 1 MiB once encoded (413 past it)")
    eof: bool = False


class ProcessSignal(_Body):
    """`POST .../processes/{pid}/signal`."""

    signal: SignalName = "TERM"


class ProcessInfo(Reply):
    """One background process; `exit_code` is 128 + n when signal n (named by `signal`) ended it."""

    pid: int
    command: str
    cwd: str
    status: Literal["running", "exited"]
    exit_code: int | None = None
    signal: str | None = None
    started_at: float
    ended_at: float | None = None
    stdin: bool = False
    output_start: int = Field(0, description="byte offset of the oldest output still kept")
    output_end: int = Field(0, description="byte offset after the newest output")


class ProcessList(Reply):
    """`GET /v1/sessions/{id}/processes`."""

    processes: list[ProcessInfo]


class OutputChunk(Reply):
    """Text one stream wrote, at its byte offset in the process's output."""

    offset: int
    stream: Literal["stdout", "stderr"]
    data: str


class ProcessOutput(Reply):
    """Output from an offset; read on from `next_offset`. `done`: the process ended and this is all of it."""

    chunks: list[OutputChunk]
    next_offset: int
    done: bool
    dropped: int = Field(0, description="bytes before the first chunk that the ring buffer no longer held")
    process: ProcessInfo


class StdinWritten(Reply):
    """How many bytes the process took (it may take fewer when it does not read)."""

    written: int
