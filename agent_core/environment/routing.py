"""Routers: who gets a message that names no recipients. Explicit recipients always win over a router.

    send_to      `follows` rules (sent_from: an agent receives what the agents it follows send),
                 else the hub's topic subscriptions
    broadcast    every other agent
    round_robin  the agent after the sender in a fixed order (the first one for outsiders)
    custom       a Python callable `(message, agents) -> list of agent names`
    sop          a declarative state machine (see `agent_core.environment.sop`)

`route` returns agent names, or None for "use the hub's topic subscriptions".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent_core.environment.base import Router, check_known
from agent_core.environment.messages import Message, check_name
from agent_core.environment.registry import AgentInfo
from agent_core.environment.sop import SOPRouter
from foundation.errors import ValidationFailed

__all__ = [
    "BroadcastRouter",
    "CustomRouter",
    "RouteFunction",
    "Router",
    "RoundRobinRouter",
    "SendToRouter",
    "make_router",
]

RouteFunction = Callable[[Message, Sequence[AgentInfo]], Sequence[str]]


class SendToRouter(Router):
    """Recipients named by the sender; otherwise the agents following the sender (`sent_from`)."""

    kind = "send_to"

    def __init__(self, follows: Mapping[str, Sequence[str]] | None = None) -> None:
        self.follows = {
            check_name(agent, "router.follows", what="agent name"): [
                check_name(s, f"router.follows.{agent}", what="agent name") for s in senders
            ]
            for agent, senders in (follows or {}).items()
        }

    def check(self, agents: Sequence[str]) -> None:
        """Every agent named in `follows` must be an agent of the environment."""
        for agent, senders in self.follows.items():
            check_known([agent, *senders], agents, f"router.follows.{agent}")

    def route(self, message: Message, agents: Sequence[AgentInfo]) -> list[str] | None:
        """The agents following the sender; None (the topic's subscribers) when none does."""
        followers = [a.name for a in agents if message.sender in self.follows.get(a.name, ())]
        return followers or None


class BroadcastRouter(Router):
    """Every agent except the sender."""

    kind = "broadcast"

    def route(self, message: Message, agents: Sequence[AgentInfo]) -> list[str]:
        """Every agent but the sender."""
        return [a.name for a in agents if a.name != message.sender]


class RoundRobinRouter(Router):
    """The agent after the sender in `order`, wrapping around; outsiders' messages go to the first."""

    kind = "round_robin"

    def __init__(self, order: Sequence[str]) -> None:
        if isinstance(order, str) or not order:
            raise ValidationFailed("round_robin needs a non-empty list of agents", field="router.order")
        self.order = [check_name(n, f"router.order[{i}]", what="agent name") for i, n in enumerate(order)]
        if len(set(self.order)) != len(self.order):
            raise ValidationFailed("round_robin order names an agent twice", field="router.order")

    def check(self, agents: Sequence[str]) -> None:
        """Every agent of `order` must be an agent of the environment."""
        check_known(self.order, agents, "router.order")

    def route(self, message: Message, agents: Sequence[AgentInfo]) -> list[str]:
        """The agent after the sender in `order` (the first one for outsiders)."""
        if message.sender not in self.order:
            return [self.order[0]]
        return [self.order[(self.order.index(message.sender) + 1) % len(self.order)]]

    def describe(self) -> dict[str, Any]:
        """The kind, state and order."""
        return {**super().describe(), "order": list(self.order)}


class CustomRouter(Router):
    """A user's function decides; what it returns is checked like any recipient list."""

    kind = "custom"

    def __init__(self, fn: RouteFunction, name: str | None = None) -> None:
        if not callable(fn):
            raise ValidationFailed("a custom router must be callable", field="router")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "router")

    def route(self, message: Message, agents: Sequence[AgentInfo]) -> list[str]:
        """What the function chooses, checked to name agents of the environment."""
        chosen = self.fn(message, list(agents))
        if isinstance(chosen, str) or not all(isinstance(n, str) for n in chosen):
            raise ValidationFailed(
                f"router {self.name!r} must return a list of agent names, got {chosen!r}", field="router"
            )
        check_known(list(chosen), [a.name for a in agents], f"router {self.name!r}")
        return list(chosen)

    def describe(self) -> dict[str, Any]:
        """The kind, state and the function's name."""
        return {**super().describe(), "name": self.name}


def make_router(spec: Router | RouteFunction | Mapping[str, Any] | str) -> Router:
    """A router from a JSON spec (`{"kind": "round_robin", "order": [...]}`, `"broadcast"`...), a callable
    (custom), or a router (returned as is)."""
    if isinstance(spec, Router):
        return spec
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, Mapping):
        if callable(spec):
            return CustomRouter(spec)
        raise ValidationFailed("a router is a JSON object with a 'kind', or a callable", field="router")
    options = {k: v for k, v in spec.items() if k != "kind"}
    kind = spec.get("kind")
    builders: dict[str, Callable[..., Router]] = {
        "send_to": SendToRouter,
        "broadcast": BroadcastRouter,
        "round_robin": RoundRobinRouter,
        "sop": lambda **options: SOPRouter.from_spec(options),
    }
    if kind not in builders:
        known = ", ".join([*builders, "custom (a Python callable)"])
        raise ValidationFailed(f"unknown router kind {kind!r}; known: {known}", field="router.kind")
    try:
        return builders[kind](**options)
    except TypeError as exc:
        raise ValidationFailed(f"bad options for router {kind!r}: {exc}", field="router") from None
