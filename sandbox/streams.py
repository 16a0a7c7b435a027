"""Streamed shell commands and cells: they run in the node's manager, their output kept for readers to poll.

A reader (an ingress replica, perhaps on another node) asks for events from an index on, waiting a while when
there are none yet; a reader that goes away leaves the run going. The output cap holds over the whole stream:
past it one `truncated` event stands for the rest, and the final result keeps its own capped head and tail.
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import dataclasses
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from foundation.errors import NotFound, QuotaExceeded

__all__ = [
    "MAX_STREAMS_PER_SESSION",
    "SessionStreams",
    "StreamEvent",
    "StreamLimit",
    "StreamNotFound",
    "StreamRead",
    "StreamRun",
    "StreamRuns",
]

StreamKind = Literal["shell", "python"]
MAX_STREAMS_PER_SESSION = 4
"""Streamed commands and cells one session may have under way (they queue on its shell and kernel anyway)."""
DISPLAY_BYTES = 8 << 20
MAX_EVENTS = 20_000  # per streamed run, whatever their sizes: the node keeps them until read or expired
EVENT_OVERHEAD = 64  # what an event costs the display budget besides its data
MAX_READ_EVENTS = 256
MAX_WAIT_S = 30.0
KEEP_S = 300.0  # how long a finished run's events stay for a late reader


class StreamNotFound(NotFound):
    """No streamed run with that id in the session (or it ended a while ago)."""

    type = "stream_not_found"


class StreamLimit(QuotaExceeded):
    """The session has as many streamed runs under way as it may."""

    type = "stream_limit"


@dataclass(frozen=True)
class StreamEvent:
    """One piece of a run's output: `stdout` or `stderr` text, a `display` item, or `truncated`."""

    event: str
    data: Any


@dataclass(frozen=True)
class StreamRead:
    """Events from an index on; read on from `next_offset`. Once `done`, `result` (or `error`) is the answer."""

    events: builtins.list[StreamEvent]
    next_offset: int
    done: bool
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass
class StreamRun:
    """One streamed command or cell: its events so far, and its answer once it ends."""

    session_id: str
    kind: StreamKind
    limit: int
    id: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    events: builtins.list[StreamEvent] = field(default_factory=list)
    text_bytes: int = 0
    display_bytes: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    ended_at: float | None = None
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, event: str, data: Any) -> None:
        """Take one piece of output (the sandbox's sink); past the caps only one `truncated` event is kept."""
        if len(self.events) >= MAX_EVENTS:  # many tiny or empty pieces cost events, whatever their bytes
            return self._truncated()
        if event == "display":
            data = (
                dataclasses.asdict(data)
                if dataclasses.is_dataclass(data) and not isinstance(data, type)
                else data
            )
            size = EVENT_OVERHEAD + (len(str(data.get("data", ""))) if isinstance(data, dict) else 0)
            if self.display_bytes + size > DISPLAY_BYTES:
                return self._truncated()
            self.display_bytes += size
        else:
            text = str(data)
            if not text:
                return None  # an empty chunk says nothing: it is not kept
            room = self.limit - self.text_bytes
            raw = text.encode("utf-8", "replace")
            if room <= 0:
                return self._truncated()
            if len(raw) > room:
                text = raw[:room].decode("utf-8", "ignore")
                self.events.append(StreamEvent(event, text))
                self.text_bytes = self.limit
                return self._truncated()
            self.text_bytes += len(raw)
            data = text
        self.events.append(StreamEvent(event, data))
        self.changed.set()

    def _truncated(self) -> None:
        if not self.events or self.events[-1].event != "truncated":
            self.events.append(StreamEvent("truncated", {"limit": self.limit}))
            self.changed.set()

    def finish(self, result: dict[str, Any] | None, error: dict[str, Any] | None = None) -> None:
        """The run ended with `result` (the non-streamed answer's fields) or `error`."""
        self.result, self.error, self.ended_at = result, error, time.time()
        self.changed.set()

    async def read(self, offset: int, wait_s: float) -> StreamRead:
        """Events from `offset`, waiting up to `wait_s` seconds while there are none and the run goes on."""
        deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
        while offset >= len(self.events) and self.ended_at is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                break
        events = self.events[offset : offset + MAX_READ_EVENTS]
        next_offset = max(offset, 0) + len(events)
        done = self.ended_at is not None and next_offset >= len(self.events)
        return StreamRead(
            events, next_offset, done, self.result if done else None, self.error if done else None
        )


class StreamRuns:
    """A node's streamed runs, by id; each belongs to one session."""

    def __init__(self, per_session: int = MAX_STREAMS_PER_SESSION) -> None:
        self.per_session = per_session
        self._runs: dict[str, StreamRun] = {}

    def new(self, session_id: str, kind: StreamKind, limit: int) -> StreamRun:
        """A new run of the session; StreamLimit when it has `per_session` under way."""
        self._forget_old()
        going = sum(1 for r in self._runs.values() if r.session_id == session_id and r.ended_at is None)
        if going >= self.per_session:
            raise StreamLimit(
                f"session {session_id} has {going} streamed runs under way, the most it may",
                limit=self.per_session,
            )
        run = StreamRun(session_id, kind, limit)
        self._runs[run.id] = run
        return run

    def get(self, session_id: str, run_id: str) -> StreamRun:
        """The session's run `run_id`; StreamNotFound for another session's or an unknown one."""
        run = self._runs.get(run_id)
        if run is None or run.session_id != session_id:
            raise StreamNotFound(f"no streamed run {run_id!r} in session {session_id}", session_id=session_id)
        return run

    def _forget_old(self) -> None:
        now = time.time()
        for run_id in [i for i, r in self._runs.items() if r.ended_at and now - r.ended_at > KEEP_S]:
            del self._runs[run_id]


class SessionStreams(Protocol):
    """Streamed shell commands and cells addressed by session id: what a node's manager offers."""

    @abc.abstractmethod
    async def stream_start(
        self, session_id: str, kind: StreamKind, source: str, timeout_s: float = 30.0
    ) -> str:
        """Start a streamed shell command or cell; its run id."""

    @abc.abstractmethod
    async def stream_read(
        self, session_id: str, run_id: str, offset: int = 0, wait_s: float = 0.0
    ) -> StreamRead:
        """The run's events from `offset`, waiting up to `wait_s` seconds for some."""

    @abc.abstractmethod
    async def stream_cancel(self, session_id: str, run_id: str) -> None:
        """Interrupt the run (its shell command or cell), as a timeout would."""
