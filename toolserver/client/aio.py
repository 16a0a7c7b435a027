"""The asynchronous client: `AsyncClient`, its sessions and groups; the same methods as `AsyncClient`, as coroutines."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Generator
from typing import Any, TypeVar

import httpx
from httpx_sse import aconnect_sse

from toolserver import api
from toolserver.client._events import EnvironmentCursor, RunCursor, RunEvent
from toolserver.client._ops import Ops
from toolserver.client._ops_agents import AgentOps, EnvironmentOps, MemoryOps
from toolserver.client._request import Request, decode, default_connection, headers_for
from toolserver.client._retry import RetryPolicy

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
    ) -> SessionStart:
        """A new sandbox session: `await` it, or `async with` it to delete it on exit unless `keep`."""
        return SessionStart(self, Ops.create_session(image, limits, network, ttl_s, runtime), keep)

    async def attach(self, session_id: str) -> AsyncSession:
        """A handle on an existing session (kept on exit)."""
        return AsyncSession(self, await self.send(Ops.session(session_id)), keep=True)

    async def sessions(self) -> builtins.list[api.Session]:
        """The caller's sessions."""
        return await self.send(Ops.sessions())

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

    async def shell(self, command: str, timeout_s: float = 30.0) -> api.ShellResult:
        """Run `command` in the session's bash; `cd` and `export` carry over to the next call."""
        return await self.client.send(Ops.shell(self.id, command, timeout_s))

    async def python(self, code: str, timeout_s: float = 30.0) -> api.PythonResult:
        """Run `code` in the session's IPython kernel; variables carry over."""
        return await self.client.send(Ops.python(self.id, code, timeout_s))

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

    async def delete(self) -> None:
        """Destroy the session and its container."""
        await self.client.send(Ops.delete_session(self.id))

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.keep:
            await self.delete()


class _AsyncGroup:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client


class AsyncTools(_AsyncGroup):
    """AsyncTools: register, list, search, inspect, call, remove, import."""

    async def list(self, format: str = "native") -> builtins.list[dict[str, Any]]:
        """The caller's tools as `native`, `openai` (pass as `tools=`) or `mcp` entries."""
        return await self._client.send(Ops.tools(format))

    async def search(self, query: str, k: int = 10) -> builtins.list[dict[str, Any]]:
        """The `k` tools whose names and descriptions match `query` best."""
        return await self._client.send(Ops.search_tools(query, k))

    async def register(self, **spec: Any) -> api.Tool:
        """Register a `python`, `http` or `deployment` tool (the fields of `POST /v1/tools`)."""
        return await self._client.send(Ops.register_tool(spec))

    async def get(self, name: str) -> api.Tool:
        """One tool."""
        return await self._client.send(Ops.tool(name))

    async def delete(self, name: str) -> None:
        """Remove one of the caller's tools."""
        await self._client.send(Ops.delete_tool(name))

    async def call(
        self, name: str, arguments: dict[str, Any] | None = None, session_id: str | None = None
    ) -> api.ToolCallResult | api.WaitingHuman:
        """Call a tool; a tool that asks a human answers `WaitingHuman`."""
        return await self._client.send(Ops.call_tool(name, arguments, session_id))

    async def import_openapi(
        self, document: dict[str, Any] | str, base_url: str | None = None, prefix: str = ""
    ) -> builtins.list[api.Tool]:
        """Every operation of an OpenAPI document becomes an `http` tool."""
        return await self._client.send(Ops.import_openapi(document, base_url, prefix))

    async def import_mcp(self, url: str, prefix: str = "", **options: Any) -> builtins.list[api.Tool]:
        """Every tool of an MCP server (Streamable HTTP) becomes a tool of the caller."""
        return await self._client.send(Ops.import_mcp(url, prefix=prefix, **options))


class AsyncAgents(_AsyncGroup):
    """Agent definitions."""

    async def define(self, name: str, llm: dict[str, Any], **spec: Any) -> api.Agent:
        """Define or redefine an agent (the fields of `POST /v1/agents`)."""
        return await self._client.send(AgentOps.define({"name": name, "llm": llm, **spec}))

    async def list(self) -> builtins.list[api.Agent]:
        """The caller's agents."""
        return await self._client.send(AgentOps.agents())

    async def get(self, name: str) -> api.Agent:
        """One agent."""
        return await self._client.send(AgentOps.agent(name))


class AsyncRuns(_AsyncGroup):
    """Agent runs and their events."""

    async def start(self, agent: str, task: str, session_id: str | None = None) -> api.RunStarted:
        """Start a run of `agent` on `task` (in `session_id`'s sandbox, or one of its own)."""
        return await self._client.send(AgentOps.start_run(agent, task, session_id))

    async def get(self, run_id: str) -> api.Run:
        """A run with every step."""
        return await self._client.send(AgentOps.run(run_id))

    async def list(self, status: str | None = None) -> builtins.list[api.Run]:
        """The caller's runs, optionally of one status."""
        return await self._client.send(AgentOps.runs(status))

    async def events(self, run_id: str, after: int = -1) -> AsyncIterator[RunEvent]:
        """The run's events as they happen, until `end`; reconnects where the server asks it to."""
        cursor = RunCursor(run_id, after)
        while not cursor.done:
            reconnect = False
            async for event, raw in self._client.events(cursor.path()):
                seen = cursor.see(event, raw)
                if seen is None:
                    reconnect = True
                    break
                yield seen
                if cursor.done:
                    return
            if not reconnect:
                return


class AsyncHumans(_AsyncGroup):
    """Questions agents asked humans (AskHumanForHelp)."""

    async def list(self, status: str | None = "pending") -> builtins.list[api.HumanRequest]:
        """Requests of a status (`pending` by default; None: all)."""
        return await self._client.send(AgentOps.human_requests(status))

    async def get(self, request_id: str, wait_s: float = 0.0) -> api.HumanRequest:
        """One request; with `wait_s` waits up to that long for its answer."""
        return await self._client.send(AgentOps.human_request(request_id, wait_s))

    async def answer(self, request_id: str, answer: str) -> api.HumanRequest:
        """Answer a request; the waiting run resumes."""
        return await self._client.send(AgentOps.answer(request_id, answer))


class AsyncMemory(_AsyncGroup):
    """Scoped memories of the caller's namespace."""

    async def add(self, scope: str, text: str, metadata: dict[str, Any] | None = None) -> api.MemoryItem:
        """Remember `text` in `scope`."""
        return await self._client.send(MemoryOps.add(scope, text, metadata))

    async def search(self, scope: str, query: str, k: int = 5) -> builtins.list[api.MemoryItem]:
        """The `k` memories of `scope` that match `query` best."""
        return await self._client.send(MemoryOps.search(scope, query, k))

    async def recent(self, scope: str, k: int = 20) -> builtins.list[api.MemoryItem]:
        """The `k` newest memories of `scope`."""
        return await self._client.send(MemoryOps.recent(scope, k))

    async def get(self, scope: str, item_id: str) -> api.MemoryItem:
        """One memory."""
        return await self._client.send(MemoryOps.get(scope, item_id))

    async def delete(self, scope: str, item_id: str) -> None:
        """Forget one memory."""
        await self._client.send(MemoryOps.delete(scope, item_id))

    async def clear(self, scope: str) -> int:
        """Forget every memory of `scope`; how many went."""
        return await self._client.send(MemoryOps.clear(scope))


class AsyncEnvironments(_AsyncGroup):
    """Multi-agent environments."""

    async def create(self, name: str, agents: builtins.list[dict[str, Any]], **spec: Any) -> api.Environment:
        """Create an environment of `agents` (router, subscriptions, act_timeout_s as in the API)."""
        return await self._client.send(EnvironmentOps.create(name, agents, **spec))

    async def list(self) -> builtins.list[str]:
        """The caller's environment names."""
        return await self._client.send(EnvironmentOps.names())

    async def get(self, name: str, after: int = 0, limit: int = 100) -> api.Environment:
        """An environment's agents, task center and a page of history."""
        return await self._client.send(EnvironmentOps.describe(name, after, limit))

    async def post(self, name: str, content: str, **message: Any) -> api.HubMessage:
        """Post a message (sender, recipients, topic, metadata as in the API)."""
        return await self._client.send(EnvironmentOps.post(name, content, **message))

    async def step(self, name: str, steps: int = 1) -> builtins.list[api.StepReport]:
        """Step the task center up to `steps` times."""
        return await self._client.send(EnvironmentOps.step(name, steps))

    async def delete(self, name: str) -> None:
        """Remove an environment, its agents and their sessions."""
        await self._client.send(EnvironmentOps.delete(name))

    async def events(self, name: str, after: int = 0, follow: bool = True) -> AsyncIterator[api.HubMessage]:
        """Messages after position `after`; with `follow`, new ones as they come (reconnecting as asked)."""
        cursor = EnvironmentCursor(name, after, follow)
        while True:
            ended_by_server = False
            async for event, raw in self._client.events(cursor.path()):
                message = cursor.see(event, raw)
                if message is not None:
                    yield message
                elif event == "reconnect":
                    ended_by_server = True
                    break
            if not (follow and ended_by_server):
                return


class AsyncKeys(_AsyncGroup):
    """API keys (an admin key is needed)."""

    async def create(self, namespace: str, name: str = "", admin: bool = False) -> api.NewApiKey:
        """A new key for `namespace`; its secret is in the answer this once."""
        return await self._client.send(Ops.create_key(namespace, name, admin))

    async def list(self) -> builtins.list[api.ApiKey]:
        """Every key (never their secrets)."""
        return await self._client.send(Ops.keys())

    async def revoke(self, key_id: str) -> None:
        """Revoke a key; its open streams end."""
        await self._client.send(Ops.revoke_key(key_id))


class AsyncSecrets(_AsyncGroup):
    """The caller's secrets (write-only values; names can be listed)."""

    async def put(self, name: str, value: str) -> None:
        """Store or replace a secret."""
        await self._client.send(Ops.put_secret(name, value))

    async def list(self) -> builtins.list[str]:
        """The names of the caller's secrets."""
        return await self._client.send(Ops.secrets())
