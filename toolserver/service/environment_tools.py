"""How the server builds environment agents: its `AgentRuntime`, and a session for each sandboxed agent.

A `"sandbox": true` agent gets its own session and runs next to it: at creation the server opens a session
in the tenant's namespace and pins the agent's actor to the session's node. The agent's tool calls come back
to the environment center (`CenterRoute`, through Ray; or straight to `EnvironmentTools` in process), which
runs them through the tool service like any other call: tenancy, argument checks and the audit apply, and
the node that holds the sandbox runs them. Which session an agent uses is the server's (`ServerAgentRuntime`),
never in the tenant's config. Environment agents cannot pause for a human (`ask_human` is refused).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray
from ray.exceptions import RayError

from agent_core.llm import LLMClient, LLMConfig, ScriptedConfig
from agent_core.tools import ASK_HUMAN_TOOL, LocalToolExecutor, ToolExecutor, ToolOutcome
from foundation.errors import ToolServerError, ValidationFailed
from toolserver.api.requests import SessionCreate
from toolserver.runs.llm import LLMPolicy, tenant_llm
from toolserver.service.principal import Principal
from toolserver.service.sessions import SessionService
from toolserver.service.tools import ToolService
from toolserver.tools.formats import to_openai

__all__ = [
    "DEFAULT_AGENT_TOOLS",
    "AgentSession",
    "CenterRoute",
    "EnvironmentTools",
    "ServerAgentRuntime",
    "SessionToolExecutor",
    "ToolRoute",
]

DEFAULT_AGENT_TOOLS = ("shell", "python", "read_file", "write_file")


class EnvironmentTools:
    """Opens, serves and closes the sessions of an environment's sandboxed agents."""

    def __init__(
        self, sessions: SessionService, tools: ToolService, *, actor: str, ray_namespace: str
    ) -> None:
        self.sessions = sessions
        self.tools = tools
        self.actor = actor
        self.ray_namespace = ray_namespace

    async def provision(self, namespace: str, config: Any, index: int) -> tuple[Any, AgentSession | None]:
        """(the config to start the agent from, the session opened for it or None)."""
        if not isinstance(config, Mapping) or not config.get("sandbox"):
            return config, None
        config = dict(config)
        if config.get("kind") != "loop":
            raise ValidationFailed("only loop agents can have a sandbox", field=f"agents[{index}].sandbox")
        names = config.get("tools", list(DEFAULT_AGENT_TOOLS))
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValidationFailed("tools must be a list of tool names", field=f"agents[{index}].tools")
        if ASK_HUMAN_TOOL in names:
            raise ValidationFailed(
                "environment agents cannot pause for a human; run an agent (POST /v1/runs) to use ask_human",
                field=f"agents[{index}].tools",
            )
        principal = Principal(namespace=namespace, key_id="environment")
        schemas = [to_openai(await self.tools.get(principal, name)) for name in names]  # NotFound names it
        session = await self.sessions.create(principal, SessionCreate())
        config["placement"] = f"node:{session['node_id']}"  # the agent runs where its sandbox is
        return config, AgentSession(session["id"], tuple(schemas))

    def route(self) -> ToolRoute:
        """How an agent's calls reach these tools: through the center actor on Ray, else directly."""
        return CenterRoute(self.actor, self.ray_namespace) if self.actor else self

    async def call(
        self, namespace: str, session_id: str, allowed: list[str], name: str, arguments: dict[str, Any]
    ) -> tuple[bool, str]:
        """Run one of an agent's tools in its session; (ok, what goes back to the model)."""
        if name not in allowed:
            return False, json.dumps({"error": {"type": "not_found", "message": f"no tool {name!r} here"}})
        principal = Principal(namespace=namespace, key_id="environment")
        try:
            response = await self.tools.call(principal, name, arguments, session_id)
        except ToolServerError as exc:
            return False, json.dumps({"error": exc.to_dict()})
        if response.get("ok"):
            return True, json.dumps(response.get("result"), default=str)
        return False, json.dumps({"error": response.get("error")}, default=str)

    async def release(self, namespace: str, session_ids: list[str]) -> None:
        """Close the sessions of an environment's agents; one already gone is skipped."""
        principal = Principal(namespace=namespace, key_id="environment")
        for session_id in session_ids:
            try:
                await self.sessions.delete(principal, session_id)
            except ToolServerError:
                pass  # already gone (expired, or its node was lost)


class ToolRoute(Protocol):
    """Where a sandboxed agent's tool call goes: `EnvironmentTools.call` itself, or `CenterRoute` to it."""

    async def call(
        self, namespace: str, session_id: str, allowed: list[str], name: str, arguments: dict[str, Any]
    ) -> tuple[bool, str]:
        """(ok, what goes back to the model) of one call in the agent's session."""
        ...


@dataclass
class CenterRoute:
    """An agent actor's way to `EnvironmentTools`: the named center actor's `agent_tool_call`, on any node."""

    actor: str
    ray_namespace: str
    _handle: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"actor": self.actor, "ray_namespace": self.ray_namespace, "_handle": None}

    async def call(
        self, namespace: str, session_id: str, allowed: list[str], name: str, arguments: dict[str, Any]
    ) -> tuple[bool, str]:
        """(ok, content) from the center, which routes the call to the node that holds the session."""
        if self._handle is None:
            self._handle = ray.get_actor(self.actor, namespace=self.ray_namespace)
        ok, content = await self._handle.call.remote(
            "agent_tool_call", namespace, session_id, allowed, name, arguments
        )
        return bool(ok), str(content)


@dataclass(frozen=True)
class AgentSession:
    """A sandboxed agent's session and the OpenAI schemas of the tools it may call there."""

    session_id: str
    schemas: tuple[dict[str, Any], ...]


class SessionToolExecutor:
    """An environment agent's tools, run in its session through `route`."""

    def __init__(self, route: ToolRoute, namespace: str, session: AgentSession) -> None:
        self.route, self.namespace, self.session = route, namespace, session

    def tool_schemas(self) -> list[dict[str, Any]]:
        """The schemas of the tools the server gave the agent."""
        return list(self.session.schemas)

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run one tool in the session; a lost center is a failed call, not a failed agent."""
        allowed = [schema["function"]["name"] for schema in self.session.schemas]
        try:
            ok, content = await self.route.call(
                self.namespace, self.session.session_id, allowed, name, arguments
            )
        except RayError as exc:
            return ToolOutcome.failure(f"Error: the tool server could not run {name}: {type(exc).__name__}")
        return ToolOutcome(ok, content)


@dataclass(frozen=True)
class ServerAgentRuntime:
    """The server's `AgentRuntime`: LLM clients under its policy, sandboxed agents' tools in their sessions.

    `sessions` maps an agent's name to its session; other agents get no tools. Picklable when `route` is
    (a `CenterRoute`), so Ray ships it to the agent actors.
    """

    policy: LLMPolicy
    namespace: str = ""
    route: ToolRoute | None = None
    sessions: Mapping[str, AgentSession] = field(default_factory=dict)

    def make_llm(self, config: LLMConfig) -> LLMClient:
        """A scripted model, or a client whose endpoint and shared key the server's policy allows."""
        if isinstance(config, ScriptedConfig):
            return config.model()
        options, key_env = config.client_options(), config.api_key_env
        return tenant_llm(options, self.policy, api_key="", api_key_env=key_env, field="config.llm")

    def make_tools(self, agent: Mapping[str, Any]) -> ToolExecutor:
        """The tools of the agent's session, or none."""
        session = self.sessions.get(str(agent.get("name")))
        if session is None or self.route is None:
            return LocalToolExecutor()
        return SessionToolExecutor(self.route, self.namespace, session)
