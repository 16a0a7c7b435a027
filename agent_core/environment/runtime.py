"""What environment agents are built with: the seam through which their host injects LLM clients and tools.

An agent's JSON config says *what* it is (its prompt, its `llm`); the host decides *how* that is served:
which endpoints a client may reach with which key, and where tool calls run. The host hands an
`AgentRuntime` to whatever builds agents (`build_agent`, `RayEnvironment`, `AgentActor`), and Ray pickles it
to the nodes, so an implementation holds only data (policies, names of actors), never open connections.

    build_agent(config)                                  # OFFLINE: scripted models, local tools only
    build_agent(config, ProcessRuntime())                # library use: endpoints with this process's keys
    build_agent(config, server_runtime)                  # the tool server's (see toolserver.service)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agent_core.llm.base import LLMClient
from agent_core.llm.config import LLMConfig, OpenAIConfig, ScriptedConfig
from agent_core.llm.openai import OpenAICompatibleClient
from agent_core.tools import LocalTool, LocalToolExecutor, ToolExecutor
from foundation.errors import ValidationFailed

__all__ = ["OFFLINE", "AgentRuntime", "OfflineRuntime", "ProcessRuntime"]


@runtime_checkable
class AgentRuntime(Protocol):
    """Makes an environment agent's LLM client and tool executor; picklable, since Ray ships it to nodes."""

    def make_llm(self, config: LLMConfig) -> LLMClient:
        """The client for the agent's parsed `llm` config; ValidationFailed when this host refuses it."""
        ...

    def make_tools(self, agent: Mapping[str, Any]) -> ToolExecutor:
        """The tools of the agent whose JSON config is `agent`."""
        ...


@dataclass(frozen=True)
class OfflineRuntime:
    """Scripted models only, and the same local tools (none by default) for every agent."""

    tools: tuple[LocalTool, ...] = ()

    def make_llm(self, config: LLMConfig) -> LLMClient:
        """A scripted model, replayed from its first reply; an endpoint is refused."""
        if isinstance(config, ScriptedConfig):
            return config.model()
        return self._endpoint(config)

    def make_tools(self, agent: Mapping[str, Any]) -> ToolExecutor:
        """A fresh executor of the local tools."""
        return LocalToolExecutor(self.tools)

    def _endpoint(self, config: OpenAIConfig) -> LLMClient:
        raise ValidationFailed(
            "this process runs scripted models only; give build_agent a runtime that serves endpoints "
            "(ProcessRuntime, or the tool server's)",
            field="config.llm",
        )


@dataclass(frozen=True)
class ProcessRuntime(OfflineRuntime):
    """Library use outside the server: endpoints too, keyed from this process's environment.

    The key is read from the variable named by `api_key_env`, else from `OPENAI_API_KEY` (the client's own
    fallback), in the process that runs the agent.
    """

    def _endpoint(self, config: OpenAIConfig) -> LLMClient:
        env = config.api_key_env
        return OpenAICompatibleClient(**config.client_options(), api_key=os.environ.get(env) if env else None)


OFFLINE = OfflineRuntime()
"""The default runtime: what an agent built without one gets."""
