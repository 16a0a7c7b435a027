"""Environment agents: `EchoAgent` (tests), `LoopAgent` (an LLM through `AgentLoop`), and `build_agent`.

Agents are rebuilt from JSON configs (`{"kind": "loop", ...}`) when they move to another node, so a
config holds only data: no code, no secrets. How an agent's LLM client and tools are made is the host's to
say, through the `AgentRuntime` given to `build_agent` (by default `OFFLINE`: scripted models, local tools).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent_core.environment.base import EnvironmentAgent
from agent_core.environment.errors import AgentFailed
from agent_core.environment.messages import Message, check_name, check_topic
from agent_core.environment.runtime import OFFLINE, AgentRuntime
from agent_core.llm.base import LLMClient
from agent_core.llm.config import OpenAIConfig, parse_llm_config
from agent_core.loop import AgentLoop, LoopSettings
from agent_core.tools import LocalToolExecutor, ToolExecutor
from foundation.errors import ValidationFailed

__all__ = [
    "AGENT_KINDS",
    "EchoAgent",
    "LoopAgent",
    "build_agent",
    "render_inbox",
]

_SEEN_LIMIT = 1_000

AgentFactory = Callable[[Mapping[str, Any], AgentRuntime], EnvironmentAgent]


class EchoAgent(EnvironmentAgent):
    """Answers every message with `prefix + content`; stops answering after `max_replies` if given."""

    def __init__(self, name: str, role: str = "echo", *, prefix: str = "", max_replies: int | None = None):
        self.name = check_name(name, "name", what="agent name")
        self.role = check_name(role, "role", what="role")
        self.prefix = prefix
        self.max_replies = max_replies
        self.replies = 0
        self.seen: deque[Message] = deque(maxlen=_SEEN_LIMIT)  # the latest only: it may live for long

    async def act(self, inbox: list[Message]) -> list[Message]:
        """One echo per message of `inbox`, up to `max_replies` in all."""
        self.seen.extend(inbox)
        out = []
        for message in inbox:
            if self.max_replies is not None and self.replies >= self.max_replies:
                break
            self.replies += 1
            out.append(message.reply(self.name, f"{self.prefix}{message.content}"))
        return out

    def config(self) -> dict[str, Any]:
        """The JSON config that rebuilds this agent."""
        return {
            "kind": "echo",
            "name": self.name,
            "role": self.role,
            "prefix": self.prefix,
            "max_replies": self.max_replies,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], runtime: AgentRuntime = OFFLINE) -> EchoAgent:
        """The agent its `config()` describes (it needs nothing of the runtime)."""
        return cls(
            config["name"],
            config.get("role", "echo"),
            prefix=str(config.get("prefix", "")),
            max_replies=config.get("max_replies"),
        )


class LoopAgent(EnvironmentAgent):
    """An LLM agent: each `act` is one `AgentLoop` run whose task is the inbox; the answer is the reply.

    The reply goes on `topic` (default: the topic of the last inbox message) without recipients, so
    the task center's router decides who gets it. A run that fails raises `AgentFailed`.
    """

    def __init__(
        self,
        name: str,
        role: str,
        llm: LLMClient,
        *,
        system_prompt: str,
        tools: ToolExecutor | None = None,
        max_steps: int = 10,
        topic: str | None = None,
        llm_config: Mapping[str, Any] | None = None,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = check_name(name, "name", what="agent name")
        self.role = check_name(role, "role", what="role")
        self.llm = llm
        self.system_prompt = system_prompt
        self.tools: ToolExecutor = tools if tools is not None else LocalToolExecutor()
        self.max_steps = max_steps
        self.topic = check_topic(topic) if topic is not None else None
        self._llm_config = dict(llm_config) if llm_config is not None else None
        self._extra_config = dict(extra_config or {})

    async def act(self, inbox: list[Message]) -> list[Message]:
        """One loop run over the whole inbox; its answer is the reply (none when empty)."""
        if not inbox:
            return []
        settings = LoopSettings(system_prompt=self.system_prompt, max_steps=self.max_steps)
        loop = AgentLoop(self.llm, self.tools, settings)
        state = await loop.start(render_inbox(inbox))
        if state.status != "succeeded":
            reason = (state.error or {}).get("message") or f"the run ended {state.status}"
            if state.status == "waiting_human":
                reason = "it asked a human, which environments do not relay yet"
            raise AgentFailed(self.name, reason)
        last = inbox[-1]
        answer = state.answer or ""
        return [last.reply(self.name, answer, topic=self.topic or last.topic)] if answer.strip() else []

    def config(self) -> dict[str, Any]:
        """The JSON config that rebuilds this agent; `{}` when it was given a client object."""
        if self._llm_config is None:
            return {}
        return {
            "kind": "loop",
            "name": self.name,
            "role": self.role,
            "system_prompt": self.system_prompt,
            "max_steps": self.max_steps,
            "topic": self.topic,
            "llm": self._llm_config,
            **self._extra_config,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], runtime: AgentRuntime = OFFLINE) -> LoopAgent:
        """The agent its `config()` describes, with its LLM client and tools made by `runtime`."""
        llm_config = config.get("llm")
        if not isinstance(llm_config, Mapping):
            raise ValidationFailed("a loop agent needs an 'llm' object", field="config.llm")
        parsed = parse_llm_config(llm_config, field="config.llm")
        if isinstance(parsed, OpenAIConfig):
            for key in ("api_key", "api_key_secret"):
                if getattr(parsed, key):
                    raise ValidationFailed(
                        "an environment agent's config is stored and shown: name the environment variable "
                        "that holds the key in api_key_env instead",
                        field=f"config.llm.{key}",
                    )
        return cls(
            config["name"],
            config["role"],
            runtime.make_llm(parsed),
            system_prompt=str(config.get("system_prompt", "")),
            max_steps=int(config.get("max_steps", 10)),
            topic=config.get("topic"),
            llm_config=llm_config,
            tools=runtime.make_tools(config),
            extra_config={k: config[k] for k in ("sandbox", "tools") if k in config},
        )


def render_inbox(inbox: Sequence[Message]) -> str:
    """The task text an LLM agent gets: each message with its sender."""
    return "\n\n".join(f"From {m.sender}:\n{m.content}" for m in inbox)


AGENT_KINDS: dict[str, AgentFactory] = {"echo": EchoAgent.from_config, "loop": LoopAgent.from_config}
"""How `build_agent` turns a config's `kind` into an agent. Python callers may add kinds; configs that
arrive over HTTP can only name kinds registered in the process that builds them."""


def build_agent(config: Mapping[str, Any], runtime: AgentRuntime = OFFLINE) -> EnvironmentAgent:
    """An agent from its JSON config, served by `runtime`; ValidationFailed names the field that is wrong."""
    if not isinstance(config, Mapping):
        raise ValidationFailed("an agent config must be a JSON object", field="config")
    kind = config.get("kind")
    factory = AGENT_KINDS.get(kind) if isinstance(kind, str) else None
    if factory is None:
        raise ValidationFailed(
            f"unknown agent kind {kind!r}; known: {', '.join(sorted(AGENT_KINDS))}", field="config.kind"
        )
    for key in ("name", "role"):
        check_name(config.get(key), f"config.{key}", what=key)
    return factory(config, runtime)
