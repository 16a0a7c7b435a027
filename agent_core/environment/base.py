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
    ) -> AgentInfo: ...

    async def unregister_agent(self, name: str) -> list[Message]: ...

    async def agents(self) -> list[AgentInfo]: ...

    async def agent(self, name: str) -> AgentInfo: ...

    async def heartbeat(
        self, name: str, node_id: str | None = None, incarnation: int | None = None
    ) -> AgentInfo: ...

    async def set_status(self, name: str, status: str, error: str | None = None) -> AgentInfo: ...

    async def relocate(self, name: str, node_id: str) -> AgentInfo: ...

    async def dead(self, timeout_s: float) -> list[AgentInfo]: ...

    async def subscribe(self, topic: str, *, agent: str | None = None, role: str | None = None) -> None: ...

    async def unsubscribe(self, topic: str, *, agent: str | None = None, role: str | None = None) -> None: ...

    async def subscribers(self, topic: str, *, exclude: str | None = None) -> list[str]: ...

    async def publish(self, message: Message, *, deliver_to: Sequence[str] | None = None) -> Message: ...

    async def read(self, name: str, max_count: int | None = None) -> list[Message]: ...

    async def requeue(self, name: str, messages: Sequence[Message]) -> None: ...

    async def pending(self) -> dict[str, int]: ...

    async def history(
        self, *, after: int = 0, limit: int = 100, topic: str | None = None
    ) -> list[Message]: ...

    async def describe(self) -> dict[str, Any]: ...


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
        return {"kind": self.kind, "finished": self.finished}


def check_known(names: Sequence[str], agents: Sequence[str], field: str) -> None:
    """ValidationFailed naming `field` when `names` has one that is not among `agents`."""
    missing = [n for n in names if n not in agents]
    if missing:
        raise ValidationFailed(
            f"{field} names {missing[0]!r}, which is not an agent of this environment", field=field
        )
