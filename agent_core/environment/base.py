"""The environment's seams: the hub API (local `Hub` or `RemoteHub` to the Ray actor), the agent, the router."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from agent_core.environment.messages import Message
from agent_core.environment.registry import AgentInfo
from foundation.errors import ValidationFailed

__all__ = ["EnvironmentAgent", "HubAPI", "Router", "check_known"]


@runtime_checkable
class HubAPI(Protocol):
    """What the task center and the HTTP routes call; `Hub` in process, `RemoteHub` through Ray."""

    async def register_agent(
        self, name: str, role: str, *, node_id: str | None = None, config: Mapping[str, Any] | None = None
    ) -> AgentInfo:
        """Add an agent (with its inbox) and store it; AgentExists if the name is taken."""
        ...

    async def unregister_agent(self, name: str) -> list[Message]:
        """Remove an agent; the messages still in its inbox."""
        ...

    async def agents(self) -> list[AgentInfo]:
        """Every registered agent."""
        ...

    async def agent(self, name: str) -> AgentInfo:
        """One agent; UnknownAgent if there is none of that name."""
        ...

    async def heartbeat(
        self, name: str, node_id: str | None = None, incarnation: int | None = None
    ) -> AgentInfo:
        """Record that the agent is alive (on `node_id`, as `incarnation`)."""
        ...

    async def set_status(self, name: str, status: str, error: str | None = None) -> AgentInfo:
        """Move the agent to `status`; InvalidTransition when that move is not allowed."""
        ...

    async def relocate(self, name: str, node_id: str) -> AgentInfo:
        """Record that the agent restarts on `node_id`, as its next incarnation."""
        ...

    async def dead(self, timeout_s: float) -> list[AgentInfo]:
        """Agents whose last heartbeat is older than `timeout_s`."""
        ...

    async def subscribe(self, topic: str, *, agent: str | None = None, role: str | None = None) -> None:
        """Deliver messages on `topic` to `agent`, or to every agent of `role`."""
        ...

    async def unsubscribe(self, topic: str, *, agent: str | None = None, role: str | None = None) -> None:
        """Undo a `subscribe`."""
        ...

    async def subscribers(self, topic: str, *, exclude: str | None = None) -> list[str]:
        """Names of the agents that get messages on `topic` (but `exclude`)."""
        ...

    async def publish(self, message: Message, *, deliver_to: Sequence[str] | None = None) -> Message:
        """Number, store and deliver a message (to `deliver_to`, its recipients, or the topic's subscribers)."""
        ...

    async def read(self, name: str, max_count: int | None = None) -> list[Message]:
        """Drain up to `max_count` messages of an agent's inbox, oldest first."""
        ...

    async def requeue(self, name: str, messages: Sequence[Message]) -> None:
        """Put messages back at the front of an agent's inbox (an act that failed)."""
        ...

    async def pending(self) -> dict[str, int]:
        """How many messages wait in each agent's inbox."""
        ...

    async def history(self, *, after: int = 0, limit: int = 100, topic: str | None = None) -> list[Message]:
        """Stored messages after position `after` (on `topic` if given), oldest first."""
        ...

    async def describe(self) -> dict[str, Any]:
        """The environment as the API shows it: names, agents, subscriptions, counts."""
        ...


class EnvironmentAgent(abc.ABC):
    """Something that acts on its inbox: reads the messages it was given, answers with drafts.

    The task center fills in the sender (an agent cannot speak for another) and routes drafts
    without recipients. `config()` is the JSON that `build_agent` recreates the agent from, on any node.
    """

    name: str
    role: str

    @abc.abstractmethod
    async def act(self, inbox: list[Message]) -> list[Message]:
        """React to `inbox` (oldest first); return the messages to publish (possibly none)."""

    def config(self) -> dict[str, Any]:
        """The agent's stored configuration; `{}` when it cannot be rebuilt from JSON."""
        return {}


class Router(abc.ABC):
    """Decides the recipients of messages published without any; may keep state (turns, SOP state)."""

    kind: ClassVar[str]

    @property
    def finished(self) -> bool:
        """True when the conversation reached its end (an SOP's terminal state)."""
        return False

    def check(self, agents: Sequence[str]) -> None:  # noqa: B027 (optional hook)
        """Raise ValidationFailed if the router names agents the environment does not have."""

    @abc.abstractmethod
    def route(self, message: Message, agents: Sequence[AgentInfo]) -> list[str] | None:
        """Recipients of `message` (None: the hub's topic subscriptions)."""

    def describe(self) -> dict[str, Any]:
        """The router's kind and state, as the API shows it."""
        return {"kind": self.kind, "finished": self.finished}


def check_known(names: Sequence[str], agents: Sequence[str], field: str) -> None:
    """ValidationFailed naming `field` when `names` has one that is not among `agents`."""
    missing = [n for n in names if n not in agents]
    if missing:
        raise ValidationFailed(
            f"{field} names {missing[0]!r}, which is not an agent of this environment", field=field
        )
