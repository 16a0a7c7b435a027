"""Sandboxes for environment agents: a `"sandbox": true` agent gets its own session and runs next to it.

At creation the server opens a session in the tenant's namespace, pins the agent's actor to the session's
node, and writes into the agent's config (`SERVER_TOOLS`) the tools it may call and where. The agent's calls
come back to the environment center, which runs them through the tool service like any other call: tenancy,
argument checks and the audit apply, and the node that holds the sandbox runs them. Anything a tenant wrote
under `SERVER_TOOLS` is dropped by the manager first. Environment agents cannot pause for a human (`ask_human` is refused).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent_core.environment.agents import SERVER_TOOLS
from agent_core.tools import ASK_HUMAN_TOOL
from foundation.errors import ToolServerError, ValidationFailed
from toolserver.http.models import SessionCreate
from toolserver.service.principal import Principal
from toolserver.service.sessions import SessionService
from toolserver.service.tools import ToolService
from toolserver.tools.formats import to_openai

__all__ = ["DEFAULT_AGENT_TOOLS", "EnvironmentTools"]

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

    async def provision(self, namespace: str, config: Any, index: int) -> tuple[Any, str | None]:
        """(the config to start the agent from, the session opened for it or None)."""
        if not isinstance(config, Mapping) or not config.get("sandbox"):
            return config, None
        config = dict(config)  # the manager has already dropped whatever the tenant wrote under SERVER_TOOLS
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
        config[SERVER_TOOLS] = {
            "actor": self.actor,
            "ray_namespace": self.ray_namespace,
            "namespace": namespace,
            "session": session["id"],
            "schemas": schemas,
        }
        return config, session["id"]

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
        principal = Principal(namespace=namespace, key_id="environment")
        for session_id in session_ids:
            try:
                await self.sessions.delete(principal, session_id)
            except ToolServerError:
                pass  # already gone (expired, or its node was lost)
