"""Multi-agent environments: their state, messages and steps."""

from __future__ import annotations

from typing import Any

from toolserver.api.base import Reply

__all__ = [
    "Environment",
    "EnvironmentList",
    "EnvironmentSteps",
    "HubMessage",
    "StepReport",
    "TopicSubscribers",
]


class HubMessage(Reply):
    """A message on an environment's hub; `position` orders the history."""

    id: str
    sender: str
    recipients: list[str] = []
    topic: str = "general"
    content: str
    metadata: dict[str, Any] = {}
    created_at: float
    seq: int | None = None
    position: int | None = None
    delivered_to: list[str] = []


class TopicSubscribers(Reply):
    """Who hears a topic: agents by name and by role."""

    agents: list[str] = []
    roles: list[str] = []


class Environment(Reply):
    """An environment: its agents, subscriptions, unread counts, the task center's state and a page of history."""

    namespace: str | None = None
    name: str | None = None
    agents: list[dict[str, Any]] = []
    subscriptions: dict[str, TopicSubscribers] = {}
    pending: dict[str, int] = {}
    messages: int | None = None
    center: dict[str, Any] = {}
    history: list[HubMessage] = []


class EnvironmentList(Reply):
    """`GET /v1/environments`: the caller's environment names."""

    environments: list[str]


class StepReport(Reply):
    """One step of the task center: who acted, what they published, who failed."""

    index: int
    acted: list[str] = []
    published: list[HubMessage] = []
    failed: dict[str, Any] = {}
    waiting: Any = None
    finished: bool = False


class EnvironmentSteps(Reply):
    """`POST /v1/environments/{name}/step`."""

    steps: list[StepReport]
