"""Background processes of a session: the seam, what they report, their output, their errors.

A sandbox's guest daemon owns its background processes (they survive a server restart); the host reads their
output from an offset out of a capped ring buffer, so a follower can always re-attach where it was.
"""

from __future__ import annotations

import abc
import builtins
from dataclasses import dataclass
from typing import Literal, Protocol

from foundation.errors import NotFound, PayloadTooLarge, QuotaExceeded

__all__ = [
    "MAX_STDIN_BYTES",
    "SIGNALS",
    "OutputChunk",
    "ProcessLimits",
    "ProcessInfo",
    "ProcessLimit",
    "ProcessNotFound",
    "ProcessOutput",
    "Processes",
    "SessionProcesses",
    "StdinTooLarge",
]

SIGNALS = ("TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT")
"""The signals a caller may send (by name, without SIG)."""
MAX_STDIN_BYTES = 1 << 20
"""The most one stdin write may carry (the guest daemon refuses more)."""
MAX_OUTPUT_WAIT_S = 30.0
"""The longest one output read waits for new bytes."""


@dataclass(frozen=True)
class ProcessLimits:
    """Per-session caps on background processes: how many run at once, how much output each keeps."""

    max_running: int = 16  # TOOLSERVER_MAX_PROCESSES_PER_SESSION
    output_bytes: int = 1 << 20  # the ring buffer of each process (TOOLSERVER_PROCESS_OUTPUT_KB)


class ProcessNotFound(NotFound):
    """No background process with that pid in the session."""

    type = "process_not_found"


class ProcessLimit(QuotaExceeded):
    """The session runs as many background processes as it may."""

    type = "process_limit"


class StdinTooLarge(PayloadTooLarge):
    """One stdin write over MAX_STDIN_BYTES."""


@dataclass(frozen=True)
class ProcessInfo:
    """One background process: what runs, where, and what became of it.

    `exit_code` is None while it runs (128 + n when signal n ended it, which `signal` names); `output_start`
    and `output_end` are the byte offsets of the output still kept.
    """

    pid: int
    command: str
    cwd: str
    status: Literal["running", "exited"]
    exit_code: int | None
    signal: str | None
    started_at: float
    ended_at: float | None
    stdin: bool
    output_start: int = 0
    output_end: int = 0


@dataclass(frozen=True)
class OutputChunk:
    """Bytes one stream wrote, at their byte offset in the process's output."""

    offset: int
    stream: Literal["stdout", "stderr"]
    data: str


@dataclass(frozen=True)
class ProcessOutput:
    """Output from an offset on; read on from `next_offset`. `done`: the process ended and this is all of it."""

    chunks: builtins.list[OutputChunk]
    next_offset: int
    done: bool
    process: ProcessInfo
    dropped: int = 0  # bytes asked for that the ring buffer no longer held


class Processes(abc.ABC):
    """One sandbox's background processes."""

    @abc.abstractmethod
    async def start(
        self,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> ProcessInfo:
        """Start `command` under bash in the background; ProcessLimit over the session's cap."""

    @abc.abstractmethod
    async def list(self) -> builtins.list[ProcessInfo]:
        """Every process the sandbox still knows (running, and the latest finished ones), oldest first."""

    @abc.abstractmethod
    async def get(self, pid: int) -> ProcessInfo:
        """One process; ProcessNotFound when the sandbox knows none with `pid`."""

    @abc.abstractmethod
    async def output(self, pid: int, offset: int = 0, wait_s: float = 0.0) -> ProcessOutput:
        """Output from `offset`, waiting up to `wait_s` seconds for some when there is none yet."""

    @abc.abstractmethod
    async def write_stdin(self, pid: int, data: bytes, eof: bool = False) -> int:
        """Write to the process's stdin (it must have been started with `stdin`); the bytes it took."""

    @abc.abstractmethod
    async def signal(self, pid: int, signal: str) -> ProcessInfo:
        """Send `signal` (a name of SIGNALS) to the process's group."""


class SessionProcesses(Protocol):
    """`Processes` addressed by session id: what a node's manager (in-process or its Ray actor) offers."""

    @abc.abstractmethod
    async def process_start(
        self,
        session_id: str,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> ProcessInfo:
        """`Processes.start` in the session's sandbox."""

    @abc.abstractmethod
    async def process_list(self, session_id: str) -> builtins.list[ProcessInfo]:
        """`Processes.list` in the session's sandbox."""

    @abc.abstractmethod
    async def process_get(self, session_id: str, pid: int) -> ProcessInfo:
        """`Processes.get` in the session's sandbox."""

    @abc.abstractmethod
    async def process_output(
        self, session_id: str, pid: int, offset: int = 0, wait_s: float = 0.0
    ) -> ProcessOutput:
        """`Processes.output` in the session's sandbox."""

    @abc.abstractmethod
    async def process_stdin(self, session_id: str, pid: int, data: bytes, eof: bool = False) -> int:
        """`Processes.write_stdin` in the session's sandbox."""

    @abc.abstractmethod
    async def process_signal(self, session_id: str, pid: int, signal: str) -> ProcessInfo:
        """`Processes.signal` in the session's sandbox."""
