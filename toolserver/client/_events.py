"""Server-sent events as typed values, and where a stream picks up again after the server's `reconnect`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from toolserver import api
from toolserver.client._ops_agents import AgentOps, EnvironmentOps

__all__ = ["EnvironmentCursor", "RunCursor", "RunEvent"]


@dataclass(frozen=True)
class RunEvent:
    """One event of a run: `step` (a new step), `status` (it changed) or `end` (the run is over)."""

    event: str
    data: Any

    @property
    def step(self) -> api.Step | None:
        """The step, for a `step` event."""
        return api.Step.model_validate(self.data) if self.event == "step" else None

    @property
    def status(self) -> str | None:
        """The run's status, for `status` and `end` events."""
        return str(self.data.get("status")) if isinstance(self.data, dict) and "status" in self.data else None


def _data(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class RunCursor:
    """Follows a run's events across reconnects: remembers the last step seen."""

    def __init__(self, run_id: str, after: int) -> None:
        self.run_id = run_id
        self.after = after
        self.done = False

    def path(self) -> str:
        """Where to (re)connect."""
        return AgentOps.run_events_path(self.run_id, self.after)

    def see(self, event: str, raw: str) -> RunEvent | None:
        """The event to hand out, or None for the server's `reconnect` (connect again from `path()`)."""
        if event == "reconnect":
            return None
        seen = RunEvent(event, _data(raw))
        if seen.step is not None:
            self.after = max(self.after, seen.step.index)
        if event == "end":
            self.done = True
        return seen


class EnvironmentCursor:
    """Follows an environment's messages across reconnects: remembers the last position seen."""

    def __init__(self, name: str, after: int, follow: bool) -> None:
        self.name = name
        self.after = after
        self.follow = follow

    def path(self) -> str:
        """Where to (re)connect."""
        return EnvironmentOps.events_path(self.name, self.after, self.follow)

    def see(self, event: str, raw: str) -> api.HubMessage | None:
        """The message to hand out, or None for any other event (`reconnect`: connect again from `path()`)."""
        if event != "message":
            return None
        message = api.HubMessage.model_validate(_data(raw))
        if message.position is not None:
            self.after = max(self.after, message.position)
        return message
