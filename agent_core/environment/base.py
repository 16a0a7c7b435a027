"""The environment's two seams: the hub API (local `Hub` or `RemoteHub` to the Ray actor) and the agent."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from agent_core.environment.messages import Message
from agent_core.environment.registry import AgentInfo

__all__ = ["EnvironmentAgent", "HubAPI"]


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
