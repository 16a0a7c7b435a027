"""Background processes of the guest daemon: started on request, owned here, their output in a capped ring buffer.

The daemon, not the host, owns them, so they outlive any host connection and a server restart: the host
re-attaches and reads on from an offset. Output is one byte stream (stdout and stderr chunks, each tagged),
of which the newest `buffer` bytes are kept; an offset that fell out of the buffer reads on from its start.
"""

from __future__ import annotations

import collections
import os
import select
import signal
import socket
import subprocess
import threading
import time

from sbxd_procs import kill_session, session_members
from sbxd_wire import CHUNK, Payload, RequestError, number, send_frame

MAX_PROCESSES = 256  # the most a host may allow at once; the host's own cap comes with each start
MAX_FINISHED = 64  # finished processes kept for their output and exit code, the oldest dropped first
DEFAULT_BUFFER = 1 << 20
MAX_BUFFER = 64 << 20
MAX_READ = 4 << 20
MAX_WAIT_S = 30.0
MAX_STDIN = 1 << 20
STDIN_WRITE_S = 5.0
MAX_ENV = 256
SIGNALS = {
    name: getattr(signal, f"SIG{name}")
    for name in ("TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT")
}


def complete_utf8(data: bytes) -> int:
    """How many leading bytes of `data` end on a whole UTF-8 character (a cut sequence waits for the next read)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return len(data) - back if need > back else len(data)
    return len(data)


class RingBuffer:
    """Tagged chunks of one output stream at absolute byte offsets; at most `limit` bytes are kept."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, CHUNK)
        self.chunks: collections.deque[tuple[int, str, bytes]] = collections.deque()
        self.start = 0  # the offset of the oldest byte kept
        self.end = 0  # the offset after the newest byte
        self.size = 0

    def add(self, stream: str, data: bytes) -> None:
        """Append a chunk; drop the oldest ones past the limit."""
        self.chunks.append((self.end, stream, data))
        self.end += len(data)
        self.size += len(data)
        while self.size > self.limit and len(self.chunks) > 1:
            _, _, dropped = self.chunks.popleft()
            self.size -= len(dropped)
            self.start = self.chunks[0][0]

    def read(self, offset: int, max_bytes: int) -> list[tuple[int, str, bytes]]:
        """The chunks from `offset` (or the oldest kept byte) on, at most `max_bytes` in all."""
        out: list[tuple[int, str, bytes]] = []
        offset = max(offset, self.start)
        budget = max_bytes
        for at, stream, data in self.chunks:
            if at + len(data) <= offset:
                continue
            piece = data[max(0, offset - at) :][:budget]
            out.append((max(at, offset), stream, piece))
            budget -= len(piece)
            if budget <= 0:
                break
        return out


class Process:
    """One background process: its Popen, its output buffer and what became of it."""

    def __init__(self, proc: subprocess.Popen, command: str, cwd: str, buffer: int, stdin: bool) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.command = command
        self.cwd = cwd
        self.output = RingBuffer(buffer)
        self.stdin_open = stdin
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.streams_open = 2

    @property
    def running(self) -> bool:
        return self.ended_at is None

    def describe(self) -> dict:
        code = self.proc.returncode
        killed_by = None
        if code is not None and code < 0:
            killed_by = next((n for n, s in SIGNALS.items() if s == -code), str(-code))
        return {
            "pid": self.pid,
            "command": self.command,
            "cwd": self.cwd,
            "status": "running" if self.running else "exited",
            "exit_code": None if self.running else (code if code >= 0 else 128 - code),
            "signal": killed_by,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "stdin": self.stdin_open,
            "output_start": self.output.start,
            "output_end": self.output.end,
        }


class Processes:
    """The daemon's background processes, keyed by pid; every method runs on a connection thread."""

    def __init__(self, workspace: str) -> None:
        self.workspace = workspace
        self.changed = threading.Condition()
        self.table: dict[int, Process] = {}

    def start(self, header: dict) -> dict:
        """Start `bash -c command` in a session of its own, within the host's cap on running processes."""
        command = header.get("command")
        if not isinstance(command, str) or not command:
            raise RequestError("bad_request", "'command' must be a non-empty string")
        cap = int(number(header, "max_processes", 16, MAX_PROCESSES))
        buffer = int(number(header, "buffer", DEFAULT_BUFFER, MAX_BUFFER))
        cwd = self._cwd(header.get("cwd"))
        env = self._env(header.get("env"))
        with self.changed:
            running = sum(1 for p in self.table.values() if p.running)
            if running >= cap:
                raise RequestError("process_limit", f"{running} background processes run, the cap is {cap}")
            try:
                proc = subprocess.Popen(
                    ["bash", "-c", command],
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.PIPE if header.get("stdin") is True else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError as exc:
                raise RequestError("internal", f"cannot start the process: {exc.strerror or exc}") from None
            record = Process(proc, command, cwd, buffer, proc.stdin is not None)
            try:
                for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                    threading.Thread(target=self._pump, args=(record, name, pipe), daemon=True).start()
                threading.Thread(target=self._reap, args=(record,), daemon=True).start()
            except RuntimeError:  # no thread to be had: the sandbox is at its process limit
                kill_session(proc.pid)
                raise RequestError("process_limit", "no room for another process in the sandbox") from None
            self.table[record.pid] = record
            self._forget_oldest()
            return {"ok": True, **record.describe()}

    def _cwd(self, cwd: object) -> str:
        if cwd is None or cwd == "":
            return self.workspace
        if not isinstance(cwd, str) or "\0" in cwd:
            raise RequestError("bad_request", "'cwd' must be a string")
        path = os.path.normpath(os.path.join(self.workspace, cwd))
        if not os.path.isdir(path):
            raise RequestError("bad_request", f"cwd {cwd!r} is not a directory")
        return path

    def _env(self, given: object) -> dict:
        env = dict(os.environ, TERM="dumb", PAGER="cat", PYTHONUNBUFFERED="1")
        if given is None:
            return env
        if not isinstance(given, dict) or len(given) > MAX_ENV:
            raise RequestError("bad_request", f"'env' must be an object of at most {MAX_ENV} strings")
        for name, value in given.items():
            if not name or "=" in name or "\0" in name or not isinstance(value, str) or "\0" in value:
                raise RequestError(
                    "bad_request", f"env {name!r}: names and values are strings without = or NUL"
                )
            env[name] = value
        return env

    def _forget_oldest(self) -> None:
        finished = sorted((p for p in self.table.values() if not p.running), key=lambda p: p.ended_at or 0)
        for record in finished[: max(0, len(finished) - MAX_FINISHED)]:
            del self.table[record.pid]

    def _pump(self, record: Process, stream: str, pipe: object) -> None:
        fd = pipe.fileno()  # type: ignore[attr-defined]
        held = b""
        try:
            while data := os.read(fd, CHUNK):
                data = held + data
                cut = complete_utf8(data)
                data, held = data[:cut], data[cut:]
                if data:
                    with self.changed:
                        record.output.add(stream, data)
                        self.changed.notify_all()
        except OSError:
            pass
        finally:
            pipe.close()  # type: ignore[attr-defined]
            with self.changed:
                if held:
                    record.output.add(stream, held)
                record.streams_open -= 1
                self.changed.notify_all()

    def _reap(self, record: Process) -> None:
        record.proc.wait()
        with self.changed:
            record.ended_at = time.time()
            self.changed.notify_all()

    def _get(self, header: dict) -> Process:
        pid = header.get("pid")
        record = self.table.get(pid) if isinstance(pid, int) and not isinstance(pid, bool) else None
        if record is None:
            raise RequestError("no_process", f"no background process with pid {pid!r}")
        return record

    def list(self, header: dict) -> dict:
        """Every process still known, oldest first."""
        with self.changed:
            records = sorted(self.table.values(), key=lambda p: p.started_at)
            return {"ok": True, "processes": [p.describe() for p in records]}

    def get(self, header: dict) -> dict:
        """One process."""
        with self.changed:
            return {"ok": True, **self._get(header).describe()}

    def output(self, header: dict, sock: socket.socket) -> None:
        """Output from `offset`, waiting up to `wait` seconds for some; the bytes follow as the payload."""
        offset = int(number(header, "offset", 0, 1 << 62))
        wait = float(number(header, "wait", 0.0, MAX_WAIT_S, float))
        max_bytes = int(number(header, "max_bytes", MAX_READ, MAX_READ))
        deadline = time.monotonic() + wait
        with self.changed:
            record = self._get(header)
            while record.output.end <= offset and (record.running or record.streams_open):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(left)
            chunks = record.output.read(offset, max_bytes)
            done = (
                not record.running
                and not record.streams_open
                and (not chunks or chunks[-1][0] + len(chunks[-1][2]) >= record.output.end)
            )
            reply = {
                "ok": True,
                "chunks": [
                    {"offset": at, "stream": stream, "size": len(data)} for at, stream, data in chunks
                ],
                "next_offset": chunks[-1][0] + len(chunks[-1][2])
                if chunks
                else max(offset, record.output.start),
                "done": done,
                "process": record.describe(),
            }
        payload = b"".join(data for _, _, data in chunks)
        send_frame(sock, reply | {"payload": len(payload)}, payload)

    def stdin(self, header: dict, sock: socket.socket) -> dict:
        """Write the payload to the process's stdin (within a few seconds), then close it when `eof` is set."""
        size = int(number(header, "payload", 0, MAX_STDIN + 1))
        payload = Payload(sock, size)
        if size > MAX_STDIN:
            payload.discard()
            raise RequestError("too_large", f"{size} bytes of stdin is over the {MAX_STDIN} byte cap")
        data = b"".join(payload.chunks())
        with self.changed:
            record = self._get(header)
            pipe = record.proc.stdin
            if pipe is None or not record.stdin_open:
                raise RequestError("bad_request", f"process {record.pid} has no open stdin")
        written = _write_within(pipe.fileno(), data, STDIN_WRITE_S) if data else 0
        if header.get("eof") is True:
            with self.changed:
                record.stdin_open = False
            try:
                pipe.close()
            except OSError:
                pass
        return {"ok": True, "written": written}

    def signal(self, header: dict) -> dict:
        """Send a signal to the process's group; once it has ended, to what is left of its session."""
        name = header.get("signal")
        if name not in SIGNALS:
            raise RequestError("bad_request", f"'signal' must be one of {', '.join(SIGNALS)}")
        with self.changed:
            record = self._get(header)
            targets = [] if record.running else session_members(record.pid)
            try:
                if record.running:
                    os.killpg(record.pid, SIGNALS[name])
                for pid in targets:
                    os.kill(pid, SIGNALS[name])
            except OSError:
                pass
            return {"ok": True, **record.describe()}

    def shutdown(self) -> None:
        """Kill every process's whole session."""
        for record in list(self.table.values()):
            kill_session(record.pid, timeout=0.5)


def _write_within(fd: int, data: bytes, timeout: float) -> int:
    """Write as much of `data` to a pipe as the reader takes within `timeout` seconds; the count written."""
    os.set_blocking(fd, False)
    deadline = time.monotonic() + timeout
    written = 0
    try:
        while written < len(data):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                break
            try:
                written += os.write(fd, data[written : written + CHUNK])
            except BlockingIOError:
                continue
    except OSError:  # the reader is gone
        pass
    return written
