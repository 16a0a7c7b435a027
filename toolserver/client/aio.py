"""The asynchronous client: `AsyncClient`, its sessions and groups; the same methods as `AsyncClient`, as coroutines."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Generator, Sequence
from typing import Any, TypeVar

import httpx
from httpx_sse import aconnect_sse

from toolserver import api
from toolserver.client import aio_live
from toolserver.client._ops import Ops
from toolserver.client._request import Request, decode, default_connection, headers_for
from toolserver.client._retry import RetryPolicy
from toolserver.client.aio_groups import (
    AsyncAgents,
    AsyncEnvironments,
    AsyncHumans,
    AsyncKeys,
    AsyncMemory,
    AsyncRuns,
    AsyncSecrets,
    AsyncTools,
)
from toolserver.client.live import OutputEvent, TextSink

__all__ = ["AsyncClient", "AsyncSession", "SessionStart"]

T = TypeVar("T")


class AsyncClient:
    """A connection to a tool server; URL and key default to TOOLSERVER_URL / TOOLSERVER_API_KEY or `toolserver up`'s."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, self.api_key = default_connection(url, api_key)
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers_for(self.api_key), timeout=timeout_s, transport=transport
        )
        self.tools = AsyncTools(self)
        self.agents = AsyncAgents(self)
        self.runs = AsyncRuns(self)
        self.humans = AsyncHumans(self)
        self.memory = AsyncMemory(self)
        self.environments = AsyncEnvironments(self)
        self.keys = AsyncKeys(self)
        self.secrets = AsyncSecrets(self)

    async def send(self, request: Request[T]) -> T:
        """Send one request (retried as `retry` says) and return its typed answer."""
        async for attempt in self.retry.async_retrying():
            with attempt:
                response = await self._http.request(
                    request.method,
                    request.path,
                    json=request.json,
                    params=request.params,
                    content=request.content,
                )
                return decode(request, response)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def events(self, path: str) -> AsyncIterator[tuple[str, str]]:
        """(event, raw data) of one server-sent-event stream at `path`; an error status raises its ApiError."""
        async with aconnect_sse(self._http, "GET", path, timeout=None) as source:
            if source.response.status_code >= 400:
                await source.response.aread()
                decode(Request("GET", path, None), source.response)
            async for sse in source.aiter_sse():
                yield sse.event, sse.data

    async def health(self) -> api.Health:
        """The server's health: nodes, sandboxes running, pool size."""
        return await self.send(Ops.health())

    def session(
        self,
        image: str | None = None,
        limits: dict[str, Any] | None = None,
        network: str | None = None,
        ttl_s: float | None = None,
        runtime: str | None = None,
        keep: bool = False,
        egress: Sequence[str] | None = None,
    ) -> SessionStart:
        """A new sandbox session: `await` it, or `async with` it to delete it on exit unless `keep`.

        `egress` (names, `*.domains`, either with `:port`) gives it network "egress": only those, through its
        node's proxy.
        """
        return SessionStart(self, Ops.create_session(image, limits, network, ttl_s, runtime, egress), keep)

    async def attach(self, session_id: str) -> AsyncSession:
        """A handle on an existing session (kept on exit)."""
        return AsyncSession(self, await self.send(Ops.session(session_id)), keep=True)

    async def sessions(self) -> builtins.list[api.Session]:
        """The caller's sessions."""
        return await self.send(Ops.sessions())

    async def fork(
        self, snapshot_id: str, count: int = 1, ttl_s: float | None = None
    ) -> builtins.list[AsyncSession]:
        """`count` new sessions (1-10), each with its own copy of the snapshot's files (kept on exit)."""
        forks = await self.send(Ops.fork(snapshot_id, count, ttl_s))
        return [AsyncSession(self, info, keep=True) for info in forks.forks]

    async def snapshots(self) -> builtins.list[api.Snapshot]:
        """The caller's snapshots."""
        return await self.send(Ops.snapshots())

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete one of the caller's snapshots (the sessions forked from it keep their files)."""
        await self.send(Ops.delete_snapshot(snapshot_id))

    async def audit(self, limit: int = 100) -> builtins.list[api.AuditEntry]:
        """The caller's most recent tool calls."""
        return await self.send(Ops.audit(limit))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SessionStart:
    """A session being created: awaitable, and an async context manager that deletes it on exit."""

    def __init__(self, client: AsyncClient, request: Request[api.Session], keep: bool) -> None:
        self._client = client
        self._request = request
        self._keep = keep
        self._session: AsyncSession | None = None

    async def _create(self) -> AsyncSession:
        self._session = AsyncSession(self._client, await self._client.send(self._request), keep=self._keep)
        return self._session

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self._create().__await__()

    async def __aenter__(self) -> AsyncSession:
        return await self._create()

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.__aexit__(*exc)


class AsyncFiles:
    """The files of a session's workspace."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def write(self, path: str, data: bytes | str) -> api.FileEntry:
        """Write `data` (text is UTF-8) to `path` in the workspace, creating parent directories."""
        raw = data.encode() if isinstance(data, str) else data
        return await self._session.client.send(Ops.write_file(self._session.id, path, raw))

    async def read(self, path: str) -> bytes:
        """The bytes of a workspace file."""
        return await self._session.client.send(Ops.read_file(self._session.id, path))

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A workspace file as text."""
        return (await self.read(path)).decode(encoding)

    async def list(self, dir: str = "") -> builtins.list[api.FileEntry]:
        """The entries of a workspace directory (its root by default)."""
        return await self._session.client.send(Ops.list_files(self._session.id, dir))


class AsyncSession:
    """One sandbox session: its persistent shell and kernel, its files, and the tools that run in it."""

    def __init__(self, client: AsyncClient, info: api.Session, keep: bool = False) -> None:
        self.client = client
        self.info = info
        self.id = info.id
        self.keep = keep
        self.files = AsyncFiles(self)
        self.processes = aio_live.AsyncProcesses(self)
        self.ports = aio_live.AsyncPorts(self)

    async def shell(
        self,
        command: str,
        timeout_s: float = 30.0,
        on_stdout: TextSink | None = None,
        on_stderr: TextSink | None = None,
    ) -> api.ShellResult:
        """Run `command` in the session's bash; `cd` and `export` carry over (streamed to `on_stdout`)."""
        if on_stdout is None and on_stderr is None:
            return await self.client.send(Ops.shell(self.id, command, timeout_s))
        result = await aio_live.adeliver(self.shell_events(command, timeout_s), on_stdout, on_stderr)
        return api.ShellResult.model_validate(result)

    async def shell_events(
        self, command: str, timeout_s: float = 30.0, cancel_on_disconnect: bool = False
    ) -> AsyncIterator[OutputEvent]:
        """`shell` as its stream of events: `stdout` text as it comes, then `result`."""
        body = {"command": command, "timeout_s": timeout_s, "cancel_on_disconnect": cancel_on_disconnect}
        async for event in aio_live.astream_call(self, "shell", body):
            yield event

    async def python(
        self,
        code: str,
        timeout_s: float = 30.0,
        on_stdout: TextSink | None = None,
        on_stderr: TextSink | None = None,
    ) -> api.PythonResult:
        """Run `code` in the session's IPython kernel; variables carry over (streamed like `shell`)."""
        if on_stdout is None and on_stderr is None:
            return await self.client.send(Ops.python(self.id, code, timeout_s))
        result = await aio_live.adeliver(self.python_events(code, timeout_s), on_stdout, on_stderr)
        return api.PythonResult.model_validate(result)

    async def python_events(
        self, code: str, timeout_s: float = 30.0, cancel_on_disconnect: bool = False
    ) -> AsyncIterator[OutputEvent]:
        """`python` as its stream: `stdout`, `stderr` and `display` events, then `result`."""
        body = {"code": code, "timeout_s": timeout_s, "cancel_on_disconnect": cancel_on_disconnect}
        async for event in aio_live.astream_call(self, "python", body):
            yield event

    async def egress(self) -> api.EgressReport:
        """What the session's egress proxy let through and refused (network "egress": its allow-list)."""
        return await self.client.send(Ops.egress(self.id))

    async def restart_python(self) -> None:
        """A fresh kernel (variables are gone; files stay)."""
        await self.client.send(Ops.restart_python(self.id))

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None
    ) -> api.ToolCallResult | api.WaitingHuman:
        """Call a tool with this session as its sandbox."""
        return await self.client.send(Ops.call_tool(name, arguments, self.id))

    async def refresh(self) -> api.Session:
        """The session's current record (status, expiry)."""
        self.info = await self.client.send(Ops.session(self.id))
        return self.info

    async def pause(self) -> api.Session:
        """Stop the session's container, keeping its files (and its memory under runsc); `info.kept` says what."""
        self.info = await self.client.send(Ops.pause_session(self.id))
        return self.info

    async def resume(self) -> api.Session:
        """Bring a paused session back (any call does it too); `info.resumed` says what came back."""
        self.info = await self.client.send(Ops.resume_session(self.id))
        return self.info

    async def snapshot(self) -> api.Snapshot:
        """Keep a copy of the session's files on its node, to fork new sessions from (`AsyncClient.fork`)."""
        return await self.client.send(Ops.create_snapshot(self.id))

    async def delete(self) -> None:
        """Destroy the session and its container."""
        await self.client.send(Ops.delete_session(self.id))

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.keep:
            await self.delete()
