"""Live sandboxes in the async SDK: the twins of live.py's streamed calls, processes and ports."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from httpx_sse import aconnect_sse

from toolserver.api.ports import PortShare
from toolserver.api.processes import ProcessInfo, ProcessOutput, StdinWritten
from toolserver.client._request import Request, decode
from toolserver.client.live import OutputEvent, TextSink, _parsed, raise_error

if TYPE_CHECKING:
    from toolserver.client.aio import AsyncSession

__all__ = ["AsyncPorts", "AsyncProcess", "AsyncProcesses", "astream_call"]


async def astream_call(session: AsyncSession, route: str, body: dict[str, Any]) -> AsyncIterator[OutputEvent]:
    """The events of `POST /v1/sessions/{id}/{route}` with `"stream": true`; an error status raises."""
    path = f"/v1/sessions/{quote(session.id, safe='')}/{route}"
    http = session.client._http
    async with aconnect_sse(http, "POST", path, json={**body, "stream": True}, timeout=None) as source:
        if source.response.status_code >= 400:
            await source.response.aread()
            decode(Request("POST", path, None), source.response)
        async for sse in source.aiter_sse():
            yield OutputEvent(sse.event, _parsed(sse.data))


async def adeliver(
    events: AsyncIterator[OutputEvent], on_stdout: TextSink | None, on_stderr: TextSink | None
) -> Any:
    """Hand text events to the sinks; the `result` event's data (an `error` event raises its ApiError)."""
    async for event in events:
        if event.event == "stdout" and on_stdout is not None:
            on_stdout(event.text)
        elif event.event == "stderr" and on_stderr is not None:
            on_stderr(event.text)
        elif event.event == "error":
            raise_error(event.data)
        elif event.event == "result":
            return event.data
    raise ConnectionError("the stream ended before its result")


class AsyncProcess:
    """A background process of a session (see live.Process)."""

    def __init__(self, session: AsyncSession, info: ProcessInfo) -> None:
        self._session = session
        self.info = info
        self.pid = info.pid

    def _path(self, tail: str = "") -> str:
        return f"/v1/sessions/{quote(self._session.id, safe='')}/processes/{self.pid}{tail}"

    async def refresh(self) -> ProcessInfo:
        """The process's current status and exit code."""
        self.info = await self._session.client.send(Request("GET", self._path(), ProcessInfo))
        return self.info

    async def output(self, offset: int = 0, wait_s: float = 0.0) -> ProcessOutput:
        """Output kept from `offset` on (waiting up to `wait_s` for some)."""
        params = {"offset": offset, "wait_s": wait_s}
        return await self._session.client.send(
            Request("GET", self._path("/output"), ProcessOutput, params=params)
        )

    async def follow(self, offset: int = 0) -> AsyncIterator[OutputEvent]:
        """Output events as they come, then `exit`; re-attaches after a `reconnect`."""
        while True:
            ended = seen = False
            async for name, raw in self._session.client.events(
                self._path(f"/output?follow=true&offset={offset}")
            ):
                seen = True
                event = OutputEvent(name, _parsed(raw))
                if name in ("stdout", "stderr"):
                    offset = int(event.data["offset"]) + len(event.text.encode())
                yield event
                ended = ended or name in ("exit", "error")
            if ended or not seen:
                return

    async def wait(self, on_stdout: TextSink | None = None, on_stderr: TextSink | None = None) -> ProcessInfo:
        """Follow the process to its end, handing text to the sinks; its final ProcessInfo."""
        async for event in self.follow():
            if event.event == "stdout" and on_stdout is not None:
                on_stdout(event.text)
            elif event.event == "stderr" and on_stderr is not None:
                on_stderr(event.text)
        return await self.refresh()

    async def send_stdin(self, data: str, eof: bool = False) -> int:
        """Write to stdin (the process was started with `stdin=True`); the bytes it took."""
        request: Request[StdinWritten] = Request(
            "POST", self._path("/stdin"), StdinWritten, json={"data": data, "eof": eof}
        )
        answer: StdinWritten = await self._session.client.send(request)
        return answer.written

    async def signal(self, signal: str = "TERM") -> ProcessInfo:
        """Send a signal (TERM, KILL, INT, HUP, ...) to the process's group."""
        request: Request[ProcessInfo] = Request(
            "POST", self._path("/signal"), ProcessInfo, json={"signal": signal}
        )
        self.info = await self._session.client.send(request)
        return self.info

    async def kill(self) -> ProcessInfo:
        """SIGKILL the process's group."""
        return await self.signal("KILL")


class AsyncProcesses:
    """`s.processes` of an AsyncSession."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def _path(self) -> str:
        return f"/v1/sessions/{quote(self._session.id, safe='')}/processes"

    async def start(
        self, command: str, cwd: str | None = None, env: dict[str, str] | None = None, stdin: bool = False
    ) -> AsyncProcess:
        """Start `command` under bash in the background."""
        body: dict[str, Any] = {"command": command, "stdin": stdin}
        if cwd is not None:
            body["cwd"] = cwd
        if env:
            body["env"] = env
        info: ProcessInfo = await self._session.client.send(
            Request("POST", self._path(), ProcessInfo, json=body)
        )
        return AsyncProcess(self._session, info)

    async def list(self) -> builtins.list[AsyncProcess]:
        """Every process the sandbox still knows, oldest first."""
        request: Request[builtins.list[ProcessInfo]] = Request(
            "GET", self._path(), builtins.list[ProcessInfo], unwrap="processes"
        )
        infos: builtins.list[ProcessInfo] = await self._session.client.send(request)
        return [AsyncProcess(self._session, info) for info in infos]

    async def get(self, pid: int) -> AsyncProcess:
        """The process with `pid`."""
        info: ProcessInfo = await self._session.client.send(
            Request("GET", f"{self._path()}/{pid}", ProcessInfo)
        )
        return AsyncProcess(self._session, info)


class AsyncPorts:
    """`s.ports` of an AsyncSession."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def url(self, port: int, path: str = "") -> str:
        """The proxied URL of `port` (it needs the API key)."""
        base = str(self._session.client._http.base_url).rstrip("/")
        return f"{base}/v1/sessions/{quote(self._session.id, safe='')}/ports/{port}/{path.lstrip('/')}"

    async def share(self, port: int, ttl_s: float = 3600.0) -> PortShare:
        """A preview URL of `port` that works without the key until `ttl_s` is over or it is revoked."""
        path = f"/v1/sessions/{quote(self._session.id, safe='')}/ports/{port}/share"
        return await self._session.client.send(Request("POST", path, PortShare, json={"ttl_s": ttl_s}))

    async def revoke(self, share: PortShare) -> None:
        """End a share."""
        path = f"/v1/sessions/{quote(self._session.id, safe='')}/ports/{share.port}/share/{share.id}"
        await self._session.client.send(Request("DELETE", path, None))
