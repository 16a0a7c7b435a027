"""The asynchronous client"s groups of operations; the same methods as the synchronous ones, as coroutines."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from typing import Any

from toolserver import api
from toolserver.client._events import EnvironmentCursor, RunCursor, RunEvent
from toolserver.client._ops import Ops
from toolserver.client._ops_agents import AgentOps, EnvironmentOps, MemoryOps
from toolserver.client._request import AsyncSender

__all__ = [
    "AsyncAgents",
    "AsyncEnvironments",
    "AsyncHumans",
    "AsyncKeys",
    "AsyncMemory",
    "AsyncRuns",
    "AsyncSecrets",
    "AsyncTools",
]


class _AsyncGroup:
    def __init__(self, client: AsyncSender) -> None:
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
