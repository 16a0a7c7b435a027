"""Errors of the multi-agent environment, placed in the project's tree (`foundation.errors`).

    AgentError (agent_core.errors)
    └── EnvError                              root of what the environment raises on purpose
        ├── UnknownAgent       (NotFound)     no agent of that name in this environment
        ├── AgentExists        (Conflict)     an agent of that name is already registered
        ├── InvalidTransition  (Conflict)     a status change the agent lifecycle forbids
        ├── InboxFull          (UserError)    a recipient's bounded inbox is full (429); nothing was stored
        ├── AgentFailed        (RuntimeFailure) an agent's `act` raised; its inbox was put back
        ├── NoLivingNode       (Unavailable)  no alive Ray node can take an agent
        └── NoRoomForAgent     (Unavailable)  the chosen node has no resources left for another agent actor

Bad messages and bad router or SOP specs raise `foundation.errors.ValidationFailed` with the failing
`field`; an oversized content `PayloadTooLarge`. All errors are picklable (they cross Ray actors).
"""

from __future__ import annotations

from typing import Any

from agent_core.errors import AgentError
from foundation.errors import Conflict, NotFound, RuntimeFailure, Unavailable, UserError

__all__ = [
    "AgentExists",
    "AgentFailed",
    "EnvError",
    "InboxFull",
    "InvalidTransition",
    "NoLivingNode",
    "NoRoomForAgent",
    "UnknownAgent",
]


class EnvError(AgentError):
    """Root of the environment's exceptions."""

    type = "environment_error"


class UnknownAgent(EnvError, NotFound):
    """No agent of that name in the environment."""

    type = "unknown_agent"

    def __init__(self, agent: str, environment: str = "", **details: Any) -> None:
        where = f" in environment {environment!r}" if environment else ""
        super().__init__(f"no agent {agent!r}{where}", agent=agent, **details)
        self.agent = agent


class AgentExists(EnvError, Conflict):
    """An agent of that name is already registered."""

    type = "agent_exists"

    def __init__(self, agent: str, **details: Any) -> None:
        super().__init__(f"an agent named {agent!r} is already registered", agent=agent, **details)
        self.agent = agent


class InvalidTransition(EnvError, Conflict):
    """An agent's status cannot move from its current one to the one asked for."""

    type = "invalid_status_transition"

    def __init__(self, agent: str, current: str, wanted: str, allowed: list[str]) -> None:
        super().__init__(
            f"agent {agent!r} cannot go from {current!r} to {wanted!r} (allowed from {current!r}: "
            f"{', '.join(allowed) or 'none'})",
            agent=agent,
            current=current,
            wanted=wanted,
        )
        self.agent, self.current, self.wanted = agent, current, wanted


class InboxFull(EnvError, UserError):
    """Back-pressure: the message was refused as a whole (no recipient got it, history has no trace)."""

    status = 429
    type = "inbox_full"

    def __init__(self, agent: str, limit: int) -> None:
        super().__init__(
            f"the inbox of agent {agent!r} is full ({limit} unread messages); nothing was delivered. "
            "Let the agent read its inbox, then publish again.",
            agent=agent,
            limit=limit,
        )
        self.agent, self.limit = agent, limit


class AgentFailed(EnvError, RuntimeFailure):
    """An agent's act raised or its run did not succeed."""

    type = "agent_failed"

    def __init__(self, agent: str, reason: str) -> None:
        super().__init__(f"agent {agent!r} failed: {reason}", agent=agent)
        self.agent = agent


class NoLivingNode(EnvError, Unavailable):
    """No alive node satisfies an agent's placement."""

    type = "no_living_node"


class NoRoomForAgent(EnvError, Unavailable):
    """Ray could not place an agent's actor in time: the cluster's agents hold what it has."""

    type = "no_room_for_agent"

    def __init__(self, agent: str, waited_s: float) -> None:
        super().__init__(
            f"no room on the cluster for agent {agent!r}: its actor was not placed within {waited_s:g} s",
            agent=agent,
        )
        self.agent = agent
