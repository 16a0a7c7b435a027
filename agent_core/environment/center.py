"""The task center: drives an environment step by step through its hub, with a router.

A step: every agent of this center with unread messages (and status idle) drains its inbox and acts,
concurrently; their replies are stamped with their sender, routed (explicit recipients win, else the
router decides) and published in agent order, so a run's transcript is deterministic. An agent that
raises gets its messages put back in its inbox and the status `failed` until it is restarted. A reply
that meets a full inbox waits in the center's outbox and is published at a later step, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agent_core.environment.base import EnvironmentAgent, HubAPI
from agent_core.environment.errors import AgentFailed, InboxFull
from agent_core.environment.messages import DEFAULT_TOPIC, Message
from agent_core.environment.routing import RouteFunction, Router, make_router
from foundation.errors import ToolServerError

__all__ = ["StepResult", "TaskCenter"]

_ACTING = frozenset({"idle", "running"})


@dataclass(frozen=True)
class StepResult:
    """What one step did: who acted, what was published, who failed (agent -> error body)."""

    index: int
    acted: tuple[str, ...] = ()
    published: tuple[Message, ...] = ()
    failed: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    waiting: int = 0
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The step as JSON."""
        return {
            "index": self.index,
            "acted": list(self.acted),
            "published": [m.to_dict() for m in self.published],
            "failed": dict(self.failed),
            "waiting": self.waiting,
            "finished": self.finished,
        }


class TaskCenter:
    """Runs `agents` (local objects or `RemoteAgent` proxies) against `hub` with `router`.

    `max_batch` caps the messages an agent takes per step; `act_timeout_s` fails an agent that does
    not answer in time (its messages go back to its inbox), so a lost node cannot stall a step.
    """

    def __init__(
        self,
        hub: HubAPI,
        agents: Mapping[str, EnvironmentAgent] | Sequence[EnvironmentAgent],
        router: Router | RouteFunction | Mapping[str, Any] | str = "send_to",
        *,
        max_batch: int | None = None,
        act_timeout_s: float | None = None,
    ) -> None:
        self.hub = hub
        self.act_timeout_s = act_timeout_s
        self.agents: Mapping[str, EnvironmentAgent] = (
            agents if isinstance(agents, Mapping) else {a.name: a for a in agents}
        )
        self.router = make_router(router)
        self.max_batch = max_batch
        self.steps = 0
        self._outbox: list[tuple[Message, list[str] | None]] = []

    async def start(self) -> None:
        """Register the agents the hub does not know yet; check the router against the roster."""
        known = {a.name for a in await self.hub.agents()}
        for name, agent in self.agents.items():
            if name not in known:
                await self.hub.register_agent(name, agent.role, config=agent.config())
        self.router.check([a.name for a in await self.hub.agents()])

    @property
    def finished(self) -> bool:
        """True when the router reached the conversation's end."""
        return self.router.finished

    async def post(
        self,
        content: str | Message,
        *,
        sender: str = "user",
        recipients: Sequence[str] = (),
        topic: str = DEFAULT_TOPIC,
        metadata: Mapping[str, Any] | None = None,
    ) -> Message:
        """Publish a message from outside (a user, a route): routed like an agent's reply."""
        draft = (
            content
            if isinstance(content, Message)
            else Message(sender, content, tuple(recipients), topic, dict(metadata or {}))
        )
        return await self.hub.publish(draft, deliver_to=await self._route(draft))

    async def step(self) -> StepResult:
        """One round: deliver what waits, let each agent with mail act once, route their replies."""
        self.steps += 1
        failed: dict[str, dict[str, Any]] = {}
        published = await self._flush_outbox(failed)
        if self.router.finished:
            return StepResult(self.steps, (), tuple(published), failed, len(self._outbox), True)
        status = {a.name: a.status for a in await self.hub.agents()}
        pending = await self.hub.pending()
        acting = [n for n in pending if n in self.agents and status.get(n) in _ACTING]
        inboxes = [await self.hub.read(name, self.max_batch) for name in acting]
        outcomes = await asyncio.gather(*(self._act(n, box) for n, box in zip(acting, inboxes, strict=True)))
        for name, outcome in zip(acting, outcomes, strict=True):
            if isinstance(outcome, ToolServerError):
                failed[name] = outcome.to_dict()
                continue
            for reply in outcome:
                draft = replace(reply, sender=name)
                self._outbox.append((draft, await self._route(draft)))
        published += await self._flush_outbox(failed)
        return StepResult(
            self.steps, tuple(acting), tuple(published), failed, len(self._outbox), self.router.finished
        )

    async def run(self, max_steps: int = 50) -> list[StepResult]:
        """Step until the router finishes, nobody has anything to do, or `max_steps` steps."""
        results = []
        for _ in range(max_steps):
            result = await self.step()
            results.append(result)
            if result.finished or not (result.acted or result.published):
                break
        return results

    async def transcript(self, *, topic: str | None = None) -> list[Message]:
        """The whole stored history, paged from the hub."""
        messages: list[Message] = []
        while True:
            after = messages[-1].position if messages else 0
            page = await self.hub.history(after=after, limit=1000, topic=topic)
            messages += page
            if len(page) < 1000:
                return messages

    def describe(self) -> dict[str, Any]:
        """Steps taken, the router's state, and how many drafts wait to be routed."""
        return {"steps": self.steps, "router": self.router.describe(), "waiting": len(self._outbox)}

    async def _route(self, draft: Message) -> list[str] | None:
        if draft.recipients:
            return None
        return self.router.route(draft, await self.hub.agents())

    async def _act(self, name: str, inbox: list[Message]) -> list[Message] | ToolServerError:
        await self.hub.set_status(name, "running")
        try:
            replies = await asyncio.wait_for(self.agents[name].act(inbox), self.act_timeout_s)
            if not isinstance(replies, list) or not all(isinstance(r, Message) for r in replies):
                raise TypeError(f"act() must return a list of Message, got {type(replies).__name__}")
        except Exception as exc:
            if isinstance(exc, ToolServerError):
                error = exc
            elif isinstance(exc, asyncio.TimeoutError) and self.act_timeout_s is not None:
                error = AgentFailed(name, f"no answer within {self.act_timeout_s} s")
            else:
                error = AgentFailed(name, f"{type(exc).__name__}: {exc}")
            await self.hub.requeue(name, inbox)
            await self.hub.set_status(name, "failed", error.message)
            return error
        await self.hub.set_status(name, "idle")
        return replies

    async def _flush_outbox(self, failed: dict[str, dict[str, Any]]) -> list[Message]:
        """Publish waiting replies in order; a reply the hub refuses (bad recipients...) is reported."""
        published = []
        while self._outbox:
            draft, deliver_to = self._outbox[0]
            try:
                published.append(await self.hub.publish(draft, deliver_to=deliver_to))
            except InboxFull:
                break  # keep the order: later replies wait behind this one
            except ToolServerError as exc:
                failed[draft.sender] = {**exc.to_dict(), "message_id": draft.id}
            self._outbox.pop(0)
        return published
