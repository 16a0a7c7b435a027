"""A declarative SOP router: states, the agent that acts in each, transitions on its reply, terminal states.

    {"start": "draft",
     "states": {
        "draft":  {"agent": "writer",   "transitions": [{"to": "review"}]},
        "review": {"agent": "reviewer", "transitions": [
                      {"when": {"contains": "APPROVED"}, "to": "done"},
                      {"when": {"regex": "(?i)changes? needed"}, "to": "draft"}]},
        "done":   {"terminal": true}}}

A reply of the acting agent takes the first transition whose `when` holds (`contains`: a case-insensitive
substring, `regex`: a search, `metadata`: these keys with these values; all given must hold; no
`when` always holds) and goes to the new state's agent; entering a terminal state ends the run. A reply
matching nothing goes back to the same agent. A message from anyone else goes to the acting agent.

Regexes are tenants' text matched on a shared event loop, so they are RE2 patterns (linear time; no
backreferences or lookaround, refused when the SOP is created) and the regex work of one routing decision is
capped at `MAX_REGEX_WORK` (pattern size x reply length): once a reply has spent it, its remaining regex
conditions do not hold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent_core.environment.base import Router, check_known
from agent_core.environment.messages import Message, check_name
from agent_core.environment.registry import AgentInfo
from foundation.errors import ValidationFailed
from foundation.schema.limits import MAX_REGEX_WORK
from foundation.schema.regex import LinearPattern, RegexBudget, RegexBudgetExceeded, compile_linear

__all__ = ["SOPCondition", "SOPRouter", "SOPState", "SOPTransition", "linear_sop"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SOPCondition:
    """When a transition fires: the message contains a text, or matches a (linear-time) regex."""

    contains: str | None = None
    regex: LinearPattern | None = None
    metadata: Mapping[str, Any] | None = None

    def holds(self, message: Message, budget: RegexBudget | None = None) -> bool:
        """Whether `message` satisfies every part of the condition given."""
        if self.contains is not None and self.contains.lower() not in message.content.lower():
            return False
        if self.regex is not None and not _search(self.regex, message.content, budget):
            return False
        return self.metadata is None or all(message.metadata.get(k) == v for k, v in self.metadata.items())


@dataclass(frozen=True)
class SOPTransition:
    """A move to state `to`, when its condition holds (always, without one)."""

    to: str
    when: SOPCondition | None = None


@dataclass(frozen=True)
class SOPState:
    """One state of an SOP: the agent that speaks in it and the transitions out of it."""

    name: str
    agent: str | None = None
    transitions: tuple[SOPTransition, ...] = ()
    terminal: bool = False


class SOPRouter(Router):
    """Follows the state machine; `state` is the current state, `path` every state entered."""

    kind = "sop"

    def __init__(self, start: str, states: Mapping[str, SOPState]) -> None:
        self.start = start
        self.states = dict(states)
        self.state = start
        self.path = [start]

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SOPRouter:
        """Parse and check a JSON spec; ValidationFailed names the failing field (`router.states.x...`)."""
        _keys(spec, {"start", "states"}, "router")
        states_spec = spec.get("states")
        if not isinstance(states_spec, Mapping) or not states_spec:
            raise ValidationFailed("an SOP needs a non-empty 'states' object", field="router.states")
        states = {
            check_name(name, "router.states", what="state name"): _state(name, body)
            for name, body in states_spec.items()
        }
        start = spec.get("start")
        if start not in states:
            raise ValidationFailed(f"start state {start!r} is not in states", field="router.start")
        if states[start].terminal:
            raise ValidationFailed("the start state cannot be terminal", field="router.start")
        for state in states.values():
            for i, transition in enumerate(state.transitions):
                if transition.to not in states:
                    raise ValidationFailed(
                        f"state {state.name!r} goes to unknown state {transition.to!r}",
                        field=f"router.states.{state.name}.transitions[{i}].to",
                    )
        return cls(start, states)

    @property
    def finished(self) -> bool:
        """True in a terminal state."""
        return self.states[self.state].terminal

    def check(self, agents: Sequence[str]) -> None:
        """Every state's agent must be an agent of the environment."""
        for state in self.states.values():
            if state.agent is not None:
                check_known([state.agent], agents, f"router.states.{state.name}.agent")

    def route(self, message: Message, agents: Sequence[AgentInfo]) -> list[str]:
        """The current state's agent; its own message takes the first transition that holds, to the next state's agent."""
        current = self.states[self.state]
        if current.terminal or current.agent is None:
            return []
        if message.sender != current.agent:
            return [current.agent]
        budget = RegexBudget(MAX_REGEX_WORK)
        for transition in current.transitions:
            if transition.when is None or transition.when.holds(message, budget):
                self.state = transition.to
                self.path.append(transition.to)
                following = self.states[transition.to]
                return [] if following.terminal or following.agent is None else [following.agent]
        return [current.agent]

    def describe(self) -> dict[str, Any]:
        """The kind, the current state and the path taken so far."""
        return {**super().describe(), "state": self.state, "path": list(self.path)}


def linear_sop(agents: Sequence[str], *, done: str = "done") -> dict[str, Any]:
    """The spec of a fixed pipeline: each agent's reply is the next agent's task; the last one ends it."""
    if not agents:
        raise ValidationFailed("a pipeline needs at least one agent", field="agents")
    names = [f"step{i + 1}_{agent}" for i, agent in enumerate(agents)]
    states: dict[str, Any] = {
        name: {"agent": agent, "transitions": [{"to": names[i + 1] if i + 1 < len(names) else done}]}
        for i, (name, agent) in enumerate(zip(names, agents, strict=True))
    }
    states[done] = {"terminal": True}
    return {"kind": "sop", "start": names[0], "states": states}


def _state(name: str, body: Any) -> SOPState:
    field = f"router.states.{name}"
    if not isinstance(body, Mapping):
        raise ValidationFailed(f"state {name!r} must be an object", field=field)
    _keys(body, {"agent", "transitions", "terminal"}, field)
    if body.get("terminal", False) is True:
        if body.get("agent") is not None or body.get("transitions"):
            raise ValidationFailed(f"terminal state {name!r} has no agent or transitions", field=field)
        return SOPState(name, terminal=True)
    agent = check_name(body.get("agent"), f"{field}.agent", what="agent name")
    transitions = body.get("transitions")
    if not isinstance(transitions, list) or not transitions:
        raise ValidationFailed(
            f"state {name!r} needs a non-empty list of transitions", field=f"{field}.transitions"
        )
    return SOPState(
        name, agent, tuple(_transition(t, f"{field}.transitions[{i}]") for i, t in enumerate(transitions))
    )


def _transition(body: Any, field: str) -> SOPTransition:
    if not isinstance(body, Mapping) or not isinstance(body.get("to"), str):
        raise ValidationFailed("a transition is an object with a 'to' state", field=field)
    _keys(body, {"to", "when"}, field)
    when = body.get("when")
    if when is None:
        return SOPTransition(body["to"])
    if not isinstance(when, Mapping) or not when:
        raise ValidationFailed("'when' must be a non-empty object", field=f"{field}.when")
    _keys(when, {"contains", "regex", "metadata"}, f"{field}.when")
    for key in ("contains", "regex"):
        if key in when and not isinstance(when[key], str):
            raise ValidationFailed(f"'{key}' must be a string", field=f"{field}.when.{key}")
    if "metadata" in when and not isinstance(when["metadata"], Mapping):
        raise ValidationFailed("'metadata' must be an object", field=f"{field}.when.metadata")
    regex = compile_linear(when["regex"], field=f"{field}.when.regex") if "regex" in when else None
    return SOPTransition(body["to"], SOPCondition(when.get("contains"), regex, when.get("metadata")))


def _search(pattern: LinearPattern, text: str, budget: RegexBudget | None) -> bool:
    if budget is None:
        return pattern.search(text)
    try:
        return budget.search(pattern, text)
    except RegexBudgetExceeded as exc:
        log.warning("SOP transition skipped: %s", exc)
        return False


def _keys(body: Mapping[str, Any], allowed: set[str], field: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationFailed(
            f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})", field=field
        )
