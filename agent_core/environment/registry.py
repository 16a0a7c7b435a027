"""The agent registry of one environment: role, node, status, heartbeats, and who is dead."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from agent_core.environment.errors import AgentExists, InvalidTransition, UnknownAgent
from agent_core.environment.messages import check_name
from foundation.errors import ValidationFailed

__all__ = ["AGENT_STATUSES", "TRANSITIONS", "AgentInfo", "AgentRegistry", "AgentStatus"]

AgentStatus = Literal["idle", "running", "waiting_human", "failed"]
AGENT_STATUSES: frozenset[str] = frozenset(get_args(AgentStatus))

TRANSITIONS: Mapping[str, frozenset[str]] = {
    "idle": frozenset({"running", "failed"}),
    "running": frozenset({"idle", "waiting_human", "failed"}),
    "waiting_human": frozenset({"running", "idle", "failed"}),
    "failed": frozenset({"idle"}),  # restarted (possibly elsewhere)
}
"""Allowed status changes; staying in the same status is always allowed."""


@dataclass(frozen=True)
class AgentInfo:
    """What the environment knows about one agent. `config` rebuilds the agent (see `build_agent`)."""

    name: str
    role: str
    status: AgentStatus = "idle"
    node_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    last_heartbeat: float = 0.0
    created_at: float = 0.0
    error: str | None = None
    incarnation: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The agent's record as JSON."""
        return {
            "name": self.name,
            "role": self.role,
            "status": self.status,
            "node_id": self.node_id,
            "config": self.config,
            "last_heartbeat": self.last_heartbeat,
            "created_at": self.created_at,
            "error": self.error,
            "incarnation": self.incarnation,
        }


class AgentRegistry:
    """In-memory, ordered by registration; `clock` is injectable so heartbeat tests need no sleeping."""

    def __init__(self, environment: str = "", *, clock: Callable[[], float] = time.time) -> None:
        self.environment = environment
        self.clock = clock
        self._agents: dict[str, AgentInfo] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def __len__(self) -> int:
        return len(self._agents)

    def register(
        self,
        name: str,
        role: str,
        *,
        node_id: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> AgentInfo:
        """Add an agent; AgentExists if the name is taken."""
        check_name(name, "name", what="agent name")
        check_name(role, "role", what="role")
        if name in self._agents:
            raise AgentExists(name)
        now = self.clock()
        info = AgentInfo(
            name, role, node_id=node_id, config=dict(config or {}), last_heartbeat=now, created_at=now
        )
        self._agents[name] = info
        return info

    def restore(self, info: AgentInfo) -> None:
        """Put back an agent loaded from the store (a restarted hub); its heartbeat counts from now."""
        self._agents[info.name] = replace(info, last_heartbeat=self.clock())

    def unregister(self, name: str) -> AgentInfo:
        """Remove an agent; its last record."""
        info = self.get(name)
        del self._agents[name]
        return info

    def get(self, name: str) -> AgentInfo:
        """One agent; UnknownAgent if there is none of that name."""
        try:
            return self._agents[name]
        except KeyError:
            raise UnknownAgent(name, self.environment) from None

    def all(self) -> list[AgentInfo]:
        """Every agent, in registration order."""
        return list(self._agents.values())

    def names(self) -> list[str]:
        """Every agent's name, in registration order."""
        return list(self._agents)

    def with_role(self, role: str) -> list[AgentInfo]:
        """The agents of `role`."""
        return [a for a in self._agents.values() if a.role == role]

    def heartbeat(self, name: str, node_id: str | None = None, incarnation: int | None = None) -> AgentInfo:
        """Record a sign of life; a beat from an older incarnation (a replaced actor) is ignored."""
        info = self.get(name)
        if incarnation is not None and incarnation < info.incarnation:
            return info
        info = replace(info, last_heartbeat=self.clock(), node_id=node_id or info.node_id)
        self._agents[name] = info
        return info

    def set_status(self, name: str, status: str, error: str | None = None) -> AgentInfo:
        """Move an agent to `status`; InvalidTransition when `TRANSITIONS` does not allow it."""
        info = self.get(name)
        if status not in AGENT_STATUSES:
            raise ValidationFailed(
                f"status must be one of {', '.join(sorted(AGENT_STATUSES))}, got {status!r}", field="status"
            )
        if status != info.status and status not in TRANSITIONS[info.status]:
            raise InvalidTransition(name, info.status, status, sorted(TRANSITIONS[info.status]))
        info = replace(info, status=status, error=error if status == "failed" else None)  # type: ignore[arg-type]
        self._agents[name] = info
        return info

    def relocate(self, name: str, node_id: str) -> AgentInfo:
        """A new incarnation of the agent on `node_id`: idle, with a fresh heartbeat."""
        info = self.get(name)
        info = replace(
            info,
            node_id=node_id,
            status="idle",
            error=None,
            incarnation=info.incarnation + 1,
            last_heartbeat=self.clock(),
        )
        self._agents[name] = info
        return info

    def dead(self, timeout_s: float) -> list[AgentInfo]:
        """Agents placed on a node whose last heartbeat is more than `timeout_s` old.

        Agents without a node (in-process ones, or readers outside the cluster) send no heartbeats
        and are never reported.
        """
        if timeout_s <= 0:
            raise ValidationFailed("timeout_s must be > 0", field="timeout_s")
        cutoff = self.clock() - timeout_s
        return [a for a in self._agents.values() if a.node_id and a.last_heartbeat < cutoff]
