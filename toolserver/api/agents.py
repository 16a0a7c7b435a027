"""Agents, their runs and steps, and the questions they ask humans."""

from __future__ import annotations

from typing import Any

from toolserver.api.base import Reply

__all__ = ["Agent", "AgentList", "HumanRequest", "HumanRequestList", "Run", "RunList", "RunStarted", "Step"]


class Agent(Reply):
    """A defined agent; an `llm.api_key` is shown as `***`."""

    name: str
    system_prompt: str = ""
    tools: list[str] = []
    llm: dict[str, Any] = {}
    memory_scope: str | None = None
    max_steps: int | None = None
    strategy: str | None = None
    human_timeout_s: float | None = None
    on_human_timeout: str | None = None
    created_at: float | None = None
    updated_at: float | None = None


class AgentList(Reply):
    """`GET /v1/agents`."""

    agents: list[Agent]


class RunStarted(Reply):
    """`POST /v1/runs`: the run's id; follow it with `GET /v1/runs/{id}` or its events."""

    id: str
    status: str


class Step(Reply):
    """One step of a run: `kind` is `model`, `tool`, `human`, `final`, ..."""

    index: int
    kind: str
    content: Any = None
    usage: dict[str, Any] | None = None


class Run(Reply):
    """A run: `status` is `running`, `waiting_human`, `succeeded` or `failed`; `steps` on `GET /v1/runs/{id}`."""

    id: str
    agent: str
    task: str
    session_id: str | None = None
    status: str
    result: Any = None
    error: Any = None
    created_at: float
    updated_at: float | None = None
    steps: list[Step] | None = None


class RunList(Reply):
    """`GET /v1/runs`."""

    runs: list[Run]


class HumanRequest(Reply):
    """A question an agent asked a human: `status` is `pending`, `answered` or `expired`."""

    id: str
    run_id: str | None = None
    question: str
    context: Any = None
    status: str
    answer: str | None = None
    created_at: float
    answered_at: float | None = None
    deadline: float | None = None


class HumanRequestList(Reply):
    """`GET /v1/human-requests`."""

    requests: list[HumanRequest]
