"""A run's JSON checkpoint (`RunState`) and the step records (`Step`) the loop emits."""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from agent_core.errors import InvalidRunState
from agent_core.llm.base import ToolCall, Usage

__all__ = ["CheckpointHandler", "PendingCall", "RunState", "RunStatus", "Step", "StepHandler", "StepKind"]

RunStatus = Literal["running", "waiting_human", "succeeded", "failed"]
StepKind = Literal["model", "tool", "human", "final", "error", "plan", "critique"]
_STATUSES = frozenset(get_args(RunStatus))
_KINDS = frozenset(get_args(StepKind))
_VERSION = 1


@dataclass(frozen=True)
class Step:
    """One thing that happened in a run, numbered from 0 in order."""

    index: int
    kind: StepKind
    content: dict[str, Any]
    usage: Usage | None = None

    def to_dict(self) -> dict[str, Any]:
        """The step as JSON."""
        return {
            "index": self.index,
            "kind": self.kind,
            "content": self.content,
            "usage": self.usage.to_dict() if self.usage else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        """A step from its JSON; InvalidRunState when it is not one."""
        if data.get("kind") not in _KINDS:
            raise InvalidRunState(f"unknown step kind {data.get('kind')!r}")
        usage = Usage.from_dict(data["usage"]) if data.get("usage") else None
        return cls(int(data["index"]), data["kind"], dict(data.get("content") or {}), usage)


StepHandler = Callable[[Step], Awaitable[None]]
CheckpointHandler = Callable[["RunState"], Awaitable[None]]
"""Called with the live state at points a run can resume from; copy what you keep (`to_dict`) at once."""


@dataclass
class PendingCall:
    """A tool call of the last turn whose result is not in the messages yet."""

    id: str
    name: str
    arguments: str
    request_id: str | None = None  # set when the call waits for a human
    question: str | None = None

    def to_tool_call(self) -> ToolCall:
        """The call as the model sent it."""
        return ToolCall(self.id, self.name, self.arguments)


@dataclass
class RunState:
    """Everything needed to continue a run in another process; `to_json`/`from_json` round-trip exactly.

    `step_count` counts model turns against `max_steps`; `next_index` numbers emitted steps;
    `repairs` counts consecutive turns with malformed calls; `strategy` holds a planner's own state.
    """

    config: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    status: RunStatus = "running"
    step_count: int = 0
    repairs: int = 0
    pending: list[PendingCall] = field(default_factory=list)
    answer: str | None = None
    error: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    next_index: int = 0
    strategy: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True once the run succeeded or failed."""
        return self.status in ("succeeded", "failed")

    @property
    def waiting_for(self) -> list[PendingCall]:
        """Pending calls that wait for a human answer."""
        return [call for call in self.pending if call.request_id is not None]

    def new_step(self, kind: StepKind, content: dict[str, Any], usage: Usage | None = None) -> Step:
        """The next step record, numbered after the previous one."""
        step = Step(self.next_index, kind, content, usage)
        self.next_index += 1
        return step

    def to_dict(self) -> dict[str, Any]:
        """The state as versioned JSON (`from_dict` reads it back)."""
        return {
            "version": _VERSION,
            "config": copy.deepcopy(self.config),
            "messages": copy.deepcopy(self.messages),
            "status": self.status,
            "step_count": self.step_count,
            "repairs": self.repairs,
            "pending": [vars(call).copy() for call in self.pending],
            "answer": self.answer,
            "error": copy.deepcopy(self.error),
            "usage": self.usage.to_dict(),
            "next_index": self.next_index,
            "strategy": copy.deepcopy(self.strategy),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        """A state from its JSON; InvalidRunState when it is not one of this version."""
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise InvalidRunState(f"not a version-{_VERSION} run state")
        if data.get("status") not in _STATUSES:
            raise InvalidRunState(f"unknown run status {data.get('status')!r}")
        try:
            return cls(
                config=copy.deepcopy(data["config"]),
                messages=copy.deepcopy(data["messages"]),
                status=data["status"],
                step_count=int(data["step_count"]),
                repairs=int(data["repairs"]),
                pending=[PendingCall(**call) for call in data["pending"]],
                answer=data["answer"],
                error=copy.deepcopy(data["error"]),
                usage=Usage.from_dict(data["usage"]),
                next_index=int(data["next_index"]),
                strategy=copy.deepcopy(data["strategy"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRunState(f"incomplete run state: {exc}") from exc

    def to_json(self) -> str:
        """The state as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        """A state from a JSON string; InvalidRunState when it is not one."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidRunState(f"run state is not JSON: {exc}") from exc
        return cls.from_dict(data)

    def copy(self) -> RunState:
        """A deep copy, through JSON."""
        return RunState.from_dict(self.to_dict())
