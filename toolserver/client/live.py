"""Live sandboxes in the SDK: streamed shell and Python, background processes, ports (sync; aio_live.py twins it).

with ts.session() as s:
    s.shell("make test", on_stdout=print)                 # output as it comes, then the ShellResult
    for event in s.shell_events("pytest -x"): ...         # the same as an iterator of OutputEvent
    server = s.processes.start("python -m http.server 8000")
    s.ports.url(8000); s.ports.share(8000, ttl_s=3600).url
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from httpx_sse import connect_sse

from toolserver.api.ports import PortShare
from toolserver.api.processes import ProcessInfo, ProcessOutput, StdinWritten
from toolserver.client._request import Request, decode
from toolserver.client.errors import error_for

if TYPE_CHECKING:
    from toolserver.client.sync import Session

__all__ = ["OutputEvent", "Ports", "Process", "Processes", "TextSink", "raise_error", "stream_call"]

TextSink = Callable[[str], object]


@dataclass(frozen=True)
class OutputEvent:
    """One event of a streamed call or a followed process: `stdout`, `stderr`, `display`, `truncated`,
    then `result` (the answer's fields) or `exit` (a process's ProcessInfo fields) or `error`."""

    event: str
    data: Any

    @property
    def text(self) -> str:
        """The text of a `stdout` or `stderr` event (empty for the others)."""
        return str(self.data.get("data", "")) if self.event in ("stdout", "stderr") else ""


def _parsed(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def stream_call(session: Session, route: str, body: dict[str, Any]) -> Iterator[OutputEvent]:
    """The events of `POST /v1/sessions/{id}/{route}` with `"stream": true`; an error status raises."""
    path = f"/v1/sessions/{quote(session.id, safe='')}/{route}"
    with connect_sse(
        session.client._http, "POST", path, json={**body, "stream": True}, timeout=None
    ) as source:
        if source.response.status_code >= 400:
            source.response.read()
            decode(Request("POST", path, None), source.response)
        for sse in source.iter_sse():
            yield OutputEvent(sse.event, _parsed(sse.data))


def deliver(events: Iterator[OutputEvent], on_stdout: TextSink | None, on_stderr: TextSink | None) -> Any:
    """Hand text events to the sinks; the `result` event's data (an `error` event raises its ApiError)."""
    for event in events:
        if event.event == "stdout" and on_stdout is not None:
            on_stdout(event.text)
        elif event.event == "stderr" and on_stderr is not None:
            on_stderr(event.text)
        elif event.event == "error":
            raise_error(event.data)
        elif event.event == "result":
            return event.data
    raise ConnectionError("the stream ended before its result")


def raise_error(data: Any) -> None:
    """Raise the ApiError of an `error` event."""
    data = data if isinstance(data, dict) else {}
    raise error_for(int(data.get("status", 500)), {"error": data})


class Process:
    """A background process of a session: its output (stored, replayable), stdin, signals."""

    def __init__(self, session: Session, info: ProcessInfo) -> None:
        self._session = session
        self.info = info
        self.pid = info.pid

    def _path(self, tail: str = "") -> str:
        return f"/v1/sessions/{quote(self._session.id, safe='')}/processes/{self.pid}{tail}"

    def refresh(self) -> ProcessInfo:
        """The process's current status and exit code."""
        self.info = self._session.client.send(Request("GET", self._path(), ProcessInfo))
        return self.info

    def output(self, offset: int = 0, wait_s: float = 0.0) -> ProcessOutput:
        """Output kept from `offset` on (waiting up to `wait_s` for some); read on from `next_offset`."""
        params = {"offset": offset, "wait_s": wait_s}
        return self._session.client.send(Request("GET", self._path("/output"), ProcessOutput, params=params))

    def follow(self, offset: int = 0) -> Iterator[OutputEvent]:
        """Output events as they come, then `exit`; re-attaches from where it was after a `reconnect`."""
        while True:
            ended = seen = False
            for name, raw in self._session.client.events(self._path(f"/output?follow=true&offset={offset}")):
                seen = True
                event = OutputEvent(name, _parsed(raw))
                if name in ("stdout", "stderr"):
                    offset = int(event.data["offset"]) + len(event.text.encode())
                yield event
                ended = ended or name in ("exit", "error")
            if ended or not seen:
                return

    def wait(self, on_stdout: TextSink | None = None, on_stderr: TextSink | None = None) -> ProcessInfo:
        """Follow the process to its end, handing text to the sinks; its final ProcessInfo."""
        for event in self.follow():
            if event.event == "stdout" and on_stdout is not None:
                on_stdout(event.text)
            elif event.event == "stderr" and on_stderr is not None:
                on_stderr(event.text)
        return self.refresh()

    def send_stdin(self, data: str, eof: bool = False) -> int:
        """Write to stdin (the process was started with `stdin=True`); the bytes it took."""
        answer: StdinWritten = self._session.client.send(
            Request("POST", self._path("/stdin"), StdinWritten, json={"data": data, "eof": eof})
        )
        return answer.written

    def signal(self, signal: str = "TERM") -> ProcessInfo:
        """Send a signal (TERM, KILL, INT, HUP, ...) to the process's group."""
        self.info = self._session.client.send(
            Request("POST", self._path("/signal"), ProcessInfo, json={"signal": signal})
        )
        return self.info

    def kill(self) -> ProcessInfo:
        """SIGKILL the process's group."""
        return self.signal("KILL")


class Processes:
    """`s.processes`: start background commands, list them, pick one up by pid."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def _path(self) -> str:
        return f"/v1/sessions/{quote(self._session.id, safe='')}/processes"

    def start(
        self, command: str, cwd: str | None = None, env: dict[str, str] | None = None, stdin: bool = False
    ) -> Process:
        """Start `command` under bash in the background; it keeps running after this returns."""
        body: dict[str, Any] = {"command": command, "stdin": stdin}
        if cwd is not None:
            body["cwd"] = cwd
        if env:
            body["env"] = env
        return Process(
            self._session, self._session.client.send(Request("POST", self._path(), ProcessInfo, json=body))
        )

    def list(self) -> builtins.list[Process]:
        """Every process the sandbox still knows, oldest first."""
        infos: builtins.list[ProcessInfo] = self._session.client.send(
            Request("GET", self._path(), builtins.list[ProcessInfo], unwrap="processes")
        )
        return [Process(self._session, info) for info in infos]

    def get(self, pid: int) -> Process:
        """The process with `pid`."""
        return Process(
            self._session, self._session.client.send(Request("GET", f"{self._path()}/{pid}", ProcessInfo))
        )


class Ports:
    """`s.ports`: where a server inside the sandbox is reached, and preview URLs for anyone."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def url(self, port: int, path: str = "") -> str:
        """The proxied URL of `port` (it needs the API key, as every /v1 call)."""
        base = str(self._session.client._http.base_url).rstrip("/")
        return f"{base}/v1/sessions/{quote(self._session.id, safe='')}/ports/{port}/{path.lstrip('/')}"

    def share(self, port: int, ttl_s: float = 3600.0) -> PortShare:
        """A preview URL of `port` that works without the key until `ttl_s` is over or it is revoked."""
        path = f"/v1/sessions/{quote(self._session.id, safe='')}/ports/{port}/share"
        return self._session.client.send(Request("POST", path, PortShare, json={"ttl_s": ttl_s}))

    def revoke(self, share: PortShare) -> None:
        """End a share: its URL answers 404 from now on."""
        path = f"/v1/sessions/{quote(self._session.id, safe='')}/ports/{share.port}/share/{share.id}"
        self._session.client.send(Request("DELETE", path, None))
