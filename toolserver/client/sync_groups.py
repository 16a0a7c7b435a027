"""The synchronous client"s groups of operations: tools, agents, runs, humans, memory, environments, keys, secrets."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

from toolserver import api
from toolserver.client._events import EnvironmentCursor, RunCursor, RunEvent
from toolserver.client._ops import Ops
from toolserver.client._ops_agents import AgentOps, EnvironmentOps, MemoryOps
from toolserver.client._request import Sender

__all__ = ["Agents", "Environments", "Humans", "Keys", "Memory", "Runs", "Secrets", "Tools"]


class _Group:
    def __init__(self, client: Sender) -> None:
        self._client = client


class Tools(_Group):
    """Tools: register, list, search, inspect, call, remove, import."""

    def list(self, format: str = "native") -> builtins.list[dict[str, Any]]:
        """The caller's tools as `native`, `openai` (pass as `tools=`) or `mcp` entries."""
        return self._client.send(Ops.tools(format))

    def search(self, query: str, k: int = 10) -> builtins.list[dict[str, Any]]:
        """The `k` tools whose names and descriptions match `query` best."""
        return self._client.send(Ops.search_tools(query, k))

    def register(self, **spec: Any) -> api.Tool:
        """Register a `python`, `http` or `deployment` tool (the fields of `POST /v1/tools`)."""
        return self._client.send(Ops.register_tool(spec))

    def get(self, name: str) -> api.Tool:
        """One tool."""
        return self._client.send(Ops.tool(name))

    def delete(self, name: str) -> None:
        """Remove one of the caller's tools."""
        self._client.send(Ops.delete_tool(name))

    def call(
        self, name: str, arguments: dict[str, Any] | None = None, session_id: str | None = None
    ) -> api.ToolCallResult | api.WaitingHuman:
        """Call a tool; a tool that asks a human answers `WaitingHuman`."""
        return self._client.send(Ops.call_tool(name, arguments, session_id))

    def import_openapi(
        self, document: dict[str, Any] | str, base_url: str | None = None, prefix: str = ""
    ) -> builtins.list[api.Tool]:
        """Every operation of an OpenAPI document becomes an `http` tool."""
        return self._client.send(Ops.import_openapi(document, base_url, prefix))

    def import_mcp(self, url: str, prefix: str = "", **options: Any) -> builtins.list[api.Tool]:
        """Every tool of an MCP server (Streamable HTTP) becomes a tool of the caller."""
        return self._client.send(Ops.import_mcp(url, prefix=prefix, **options))


class Agents(_Group):
    """Agent definitions."""

    def define(self, name: str, llm: dict[str, Any], **spec: Any) -> api.Agent:
        """Define or redefine an agent (the fields of `POST /v1/agents`)."""
        return self._client.send(AgentOps.define({"name": name, "llm": llm, **spec}))

    def list(self) -> builtins.list[api.Agent]:
        """The caller's agents."""
        return self._client.send(AgentOps.agents())

    def get(self, name: str) -> api.Agent:
        """One agent."""
        return self._client.send(AgentOps.agent(name))


class Runs(_Group):
    """Agent runs and their events."""

    def start(self, agent: str, task: str, session_id: str | None = None) -> api.RunStarted:
        """Start a run of `agent` on `task` (in `session_id`'s sandbox, or one of its own)."""
        return self._client.send(AgentOps.start_run(agent, task, session_id))

    def get(self, run_id: str) -> api.Run:
        """A run with every step."""
        return self._client.send(AgentOps.run(run_id))

    def list(self, status: str | None = None) -> builtins.list[api.Run]:
        """The caller's runs, optionally of one status."""
        return self._client.send(AgentOps.runs(status))

    def events(self, run_id: str, after: int = -1) -> Iterator[RunEvent]:
        """The run's events as they happen, until `end`; reconnects where the server asks it to."""
        cursor = RunCursor(run_id, after)
        while not cursor.done:
            reconnect = False
            for event, raw in self._client.events(cursor.path()):
                seen = cursor.see(event, raw)
                if seen is None:
                    reconnect = True
                    break
                yield seen
                if cursor.done:
                    return
            if not reconnect:
                return


class Humans(_Group):
    """Questions agents asked humans (AskHumanForHelp)."""

    def list(self, status: str | None = "pending") -> builtins.list[api.HumanRequest]:
        """Requests of a status (`pending` by default; None: all)."""
        return self._client.send(AgentOps.human_requests(status))

    def get(self, request_id: str, wait_s: float = 0.0) -> api.HumanRequest:
        """One request; with `wait_s` waits up to that long for its answer."""
        return self._client.send(AgentOps.human_request(request_id, wait_s))

    def answer(self, request_id: str, answer: str) -> api.HumanRequest:
        """Answer a request; the waiting run resumes."""
        return self._client.send(AgentOps.answer(request_id, answer))


class Memory(_Group):
    """Scoped memories of the caller's namespace."""

    def add(self, scope: str, text: str, metadata: dict[str, Any] | None = None) -> api.MemoryItem:
        """Remember `text` in `scope`."""
        return self._client.send(MemoryOps.add(scope, text, metadata))

    def search(self, scope: str, query: str, k: int = 5) -> builtins.list[api.MemoryItem]:
        """The `k` memories of `scope` that match `query` best."""
        return self._client.send(MemoryOps.search(scope, query, k))

    def recent(self, scope: str, k: int = 20) -> builtins.list[api.MemoryItem]:
        """The `k` newest memories of `scope`."""
        return self._client.send(MemoryOps.recent(scope, k))

    def get(self, scope: str, item_id: str) -> api.MemoryItem:
        """One memory."""
        return self._client.send(MemoryOps.get(scope, item_id))

    def delete(self, scope: str, item_id: str) -> None:
        """Forget one memory."""
        self._client.send(MemoryOps.delete(scope, item_id))

    def clear(self, scope: str) -> int:
        """Forget every memory of `scope`; how many went."""
        return self._client.send(MemoryOps.clear(scope))


class Environments(_Group):
    """Multi-agent environments."""

    def create(self, name: str, agents: builtins.list[dict[str, Any]], **spec: Any) -> api.Environment:
        """Create an environment of `agents` (router, subscriptions, act_timeout_s as in the API)."""
        return self._client.send(EnvironmentOps.create(name, agents, **spec))

    def list(self) -> builtins.list[str]:
        """The caller's environment names."""
        return self._client.send(EnvironmentOps.names())

    def get(self, name: str, after: int = 0, limit: int = 100) -> api.Environment:
        """An environment's agents, task center and a page of history."""
        return self._client.send(EnvironmentOps.describe(name, after, limit))

    def post(self, name: str, content: str, **message: Any) -> api.HubMessage:
        """Post a message (sender, recipients, topic, metadata as in the API)."""
        return self._client.send(EnvironmentOps.post(name, content, **message))

    def step(self, name: str, steps: int = 1) -> builtins.list[api.StepReport]:
        """Step the task center up to `steps` times."""
        return self._client.send(EnvironmentOps.step(name, steps))

    def delete(self, name: str) -> None:
        """Remove an environment, its agents and their sessions."""
        self._client.send(EnvironmentOps.delete(name))

    def events(self, name: str, after: int = 0, follow: bool = True) -> Iterator[api.HubMessage]:
        """Messages after position `after`; with `follow`, new ones as they come (reconnecting as asked)."""
        cursor = EnvironmentCursor(name, after, follow)
        while True:
            ended_by_server = False
            for event, raw in self._client.events(cursor.path()):
                message = cursor.see(event, raw)
                if message is not None:
                    yield message
                elif event == "reconnect":
                    ended_by_server = True
                    break
            if not (follow and ended_by_server):
                return


class Keys(_Group):
    """API keys (an admin key is needed)."""

    def create(self, namespace: str, name: str = "", admin: bool = False) -> api.NewApiKey:
        """A new key for `namespace`; its secret is in the answer this once."""
        return self._client.send(Ops.create_key(namespace, name, admin))

    def list(self) -> builtins.list[api.ApiKey]:
        """Every key (never their secrets)."""
        return self._client.send(Ops.keys())

    def revoke(self, key_id: str) -> None:
        """Revoke a key; its open streams end."""
        self._client.send(Ops.revoke_key(key_id))


class Secrets(_Group):
    """The caller's secrets (write-only values; names can be listed)."""

    def put(self, name: str, value: str) -> None:
        """Store or replace a secret."""
        self._client.send(Ops.put_secret(name, value))

    def list(self) -> builtins.list[str]:
        """The names of the caller's secrets."""
        return self._client.send(Ops.secrets())
