"""Background processes of the fake sandbox, in memory: what each command "prints" is what a handler says.

A handler maps a command to a `FakeProgram`: the output it writes at once, and whether it then exits (with its
exit code) or keeps running until it is signalled (a server), echoing its stdin if it takes any. The caps, the
offsets of the output ring buffer, waiting for output and the errors are those of the guest daemon's.
"""

from __future__ import annotations

import asyncio
import builtins
import signal as signals
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from foundation.errors import UserError
from sandbox._paths import workspace_relative
from sandbox.processes import (
    MAX_OUTPUT_WAIT_S,
    MAX_STDIN_BYTES,
    SIGNALS,
    OutputChunk,
    Processes,
    ProcessInfo,
    ProcessLimit,
    ProcessLimits,
    ProcessNotFound,
    ProcessOutput,
    StdinTooLarge,
)

__all__ = ["FakeProcesses", "FakeProgram", "ProgramHandler", "echo_program"]

KEEP_EXITED = 64  # finished processes the fake still lists, as the guest daemon keeps its latest ones


@dataclass(frozen=True)
class FakeProgram:
    """What a fake process does: writes `output`, then exits with `exit_code` (None: runs until signalled)."""

    output: str = ""
    exit_code: int | None = 0
    echoes_stdin: bool = False


ProgramHandler = Callable[[str], FakeProgram]


def echo_program(command: str) -> FakeProgram:
    """The default: the command's own text as its output, then exit 0 (nothing runs)."""
    return FakeProgram(output=command + "\n")


@dataclass
class _Process:
    info: ProcessInfo
    program: FakeProgram
    chunks: builtins.list[OutputChunk] = field(default_factory=list)
    end: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class FakeProcesses(Processes):
    """One fake sandbox's background processes."""

    def __init__(self, program: ProgramHandler = echo_program, limits: ProcessLimits | None = None) -> None:
        self._program = program
        self.limits = limits or ProcessLimits()
        self._table: dict[int, _Process] = {}
        self._next_pid = 100

    async def start(
        self,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> ProcessInfo:
        """A new process running the handler's program for `command`; ProcessLimit over the cap."""
        running = sum(1 for p in self._table.values() if p.info.status == "running")
        if running >= self.limits.max_running:
            raise ProcessLimit(
                f"the session runs {running} background processes, the most it may",
                limit=self.limits.max_running,
            )
        rel = workspace_relative(cwd, allow_root=True) if cwd else ""
        program = self._program(command)
        self._next_pid += 1
        info = ProcessInfo(
            pid=self._next_pid,
            command=command,
            cwd="/workspace" + (f"/{rel}" if rel else ""),
            status="running",
            exit_code=None,
            signal=None,
            started_at=time.time(),
            ended_at=None,
            stdin=stdin,
        )
        process = self._table[info.pid] = _Process(info, program)
        self._write(process, program.output)
        if program.exit_code is not None:
            self._exit(process, program.exit_code, None)
        self._forget_oldest()
        return process.info

    async def list(self) -> builtins.list[ProcessInfo]:
        """Every process still known, oldest first."""
        return [p.info for p in self._table.values()]

    async def get(self, pid: int) -> ProcessInfo:
        """One process; ProcessNotFound for an unknown pid."""
        return self._find(pid).info

    async def output(self, pid: int, offset: int = 0, wait_s: float = 0.0) -> ProcessOutput:
        """Output from `offset` (what the ring buffer still holds), waiting a while for some while it runs."""
        process = self._find(pid)
        if offset >= process.end and process.info.status == "running" and wait_s > 0:
            process.changed.clear()
            try:
                await asyncio.wait_for(process.changed.wait(), min(wait_s, MAX_OUTPUT_WAIT_S))
            except asyncio.TimeoutError:
                pass
        start = process.info.output_start
        dropped = max(0, start - offset)
        chunks = [
            _from(c, max(offset, start)) for c in process.chunks if c.offset + _size(c) > max(offset, start)
        ]
        done = process.info.status == "exited"
        return ProcessOutput(chunks, max(offset, process.end), done, process.info, dropped)

    async def write_stdin(self, pid: int, data: bytes, eof: bool = False) -> int:
        """Take `data` (echoed when the program echoes); with `eof`, an echoing program exits 0."""
        if len(data) > MAX_STDIN_BYTES:
            raise StdinTooLarge(f"{len(data)} bytes of stdin is over the {MAX_STDIN_BYTES} byte cap")
        process = self._find(pid)
        if not process.info.stdin or process.info.status != "running":
            raise UserError(f"process {pid} has no open stdin", field="pid")
        if process.program.echoes_stdin:
            self._write(process, data.decode("utf-8", "replace"))
            if eof:
                self._exit(process, 0, None)
        return len(data)

    async def signal(self, pid: int, signal: str) -> ProcessInfo:
        """A running process ends with 128 + the signal's number (STOP and CONT leave it running)."""
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(SIGNALS)}")
        process = self._find(pid)
        if process.info.status == "running" and signal not in ("STOP", "CONT"):
            self._exit(process, 128 + int(getattr(signals, "SIG" + signal)), signal)
        return process.info

    def _find(self, pid: int) -> _Process:
        try:
            return self._table[pid]
        except KeyError:
            raise ProcessNotFound(f"no background process {pid} in the session", pid=pid) from None

    def _write(self, process: _Process, text: str) -> None:
        if not text:
            return
        process.chunks.append(OutputChunk(process.end, "stdout", text))
        process.end += len(text.encode("utf-8"))
        while process.end - process.chunks[0].offset > self.limits.output_bytes and len(process.chunks) > 1:
            process.chunks.pop(0)
        start = process.chunks[0].offset
        process.info = replace(process.info, output_start=start, output_end=process.end)
        process.changed.set()

    def _exit(self, process: _Process, code: int, signal: str | None) -> None:
        process.info = replace(
            process.info, status="exited", exit_code=code, signal=signal, ended_at=time.time()
        )
        process.changed.set()

    def _forget_oldest(self) -> None:
        exited = [pid for pid, p in self._table.items() if p.info.status == "exited"]
        for pid in exited[: max(0, len(exited) - KEEP_EXITED)]:
            del self._table[pid]


def _size(chunk: OutputChunk) -> int:
    return len(chunk.data.encode("utf-8"))


def _from(chunk: OutputChunk, offset: int) -> OutputChunk:
    """The part of `chunk` from byte `offset` on."""
    if offset <= chunk.offset:
        return chunk
    cut = chunk.data.encode("utf-8")[offset - chunk.offset :].decode("utf-8", "replace")
    return OutputChunk(offset, chunk.stream, cut)
