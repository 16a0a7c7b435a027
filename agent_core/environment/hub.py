"""The message hub: a private inbox per agent that drains on read, topics, role subscriptions, history.

Publishing is a group commit: a message is accepted (capacity reserved in every target inbox, or
`InboxFull` and nothing happens), queued, numbered (per-sender `seq`, environment-wide `position`) and
written with the other queued messages in one transaction; only then is it put in the inboxes and
`publish` returns it. Numbering, delivery and reading run on the event loop between awaits, so
concurrent publishers and readers can neither lose nor duplicate a message, and each sender's messages
reach every inbox in `seq` order.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_core.environment.errors import InboxFull
from agent_core.environment.messages import Message, check_name, check_topic
from agent_core.environment.registry import AgentInfo, AgentRegistry
from agent_core.environment.store import EnvironmentStore, InMemoryEnvironmentStore
from foundation.errors import ValidationFailed

__all__ = ["DEFAULT_INBOX_LIMIT", "Hub"]

DEFAULT_INBOX_LIMIT = 1_000
_MAX_BATCH = 500
_REMEMBERED_IDS = 100_000


@dataclass
class _Queued:
    message: Message
    targets: list[str]
    done: asyncio.Future[Message]
    reserved: list[str] = field(default_factory=list)


class Hub:
    """One environment's hub (`namespace`/`name`); every method is async and safe to call concurrently."""

    def __init__(
        self,
        namespace: str,
        name: str,
        store: EnvironmentStore | None = None,
        *,
        inbox_limit: int = DEFAULT_INBOX_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.namespace = check_name(namespace, "namespace", what="namespace")
        self.name = check_name(name, "environment", what="environment name")
        if inbox_limit < 1:
            raise ValidationFailed("inbox_limit must be >= 1", field="inbox_limit")
        self.store: EnvironmentStore = store if store is not None else InMemoryEnvironmentStore()
        self.inbox_limit = inbox_limit
        self.registry = AgentRegistry(name, clock=clock)
        self._inboxes: dict[str, deque[Message]] = {}
        self._reserved: dict[str, int] = {}
        self._topic_agents: dict[str, set[str]] = {}
        self._topic_roles: dict[str, set[str]] = {}
        self._queue: list[_Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self._position = 0
        self._seqs: dict[str, int] = {}
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._save_lock = asyncio.Lock()

    async def load(self) -> None:
        """Continue numbering after the stored history and restore stored agents (empty inboxes)."""
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            self._position, self._seqs = await asyncio.to_thread(
                self.store.counters, self.namespace, self.name
            )
            for info in await asyncio.to_thread(self.store.agents, self.namespace, self.name):
                self.registry.restore(info)
                self._inboxes[info.name] = deque()
                self._reserved[info.name] = 0
            self._loaded = True

    # agents -------------------------------------------------------------------------------------

    async def register_agent(
        self, name: str, role: str, *, node_id: str | None = None, config: Mapping[str, Any] | None = None
    ) -> AgentInfo:
        """Add an agent with an empty inbox and store it; AgentExists if the name is taken."""
        await self.load()
        info = self.registry.register(name, role, node_id=node_id, config=config)
        self._inboxes[name] = deque()
        self._reserved[name] = 0
        await self._save(name)
        return info

    async def unregister_agent(self, name: str) -> list[Message]:
        """Remove an agent; returns what was still unread in its inbox (the history keeps it anyway)."""
        await self.load()
        self.registry.unregister(name)
        left = list(self._inboxes.pop(name, ()))
        self._reserved.pop(name, None)
        for members in self._topic_agents.values():
            members.discard(name)
        async with self._save_lock:
            await asyncio.to_thread(self.store.delete_agent, self.namespace, self.name, name)
        return left

    async def agents(self) -> list[AgentInfo]:
        """Every registered agent."""
        await self.load()
        return self.registry.all()

    async def agent(self, name: str) -> AgentInfo:
        """One agent; UnknownAgent if there is none of that name."""
        await self.load()
        return self.registry.get(name)

    async def heartbeat(
        self, name: str, node_id: str | None = None, incarnation: int | None = None
    ) -> AgentInfo:
        """Record that the agent is alive (on `node_id`, as `incarnation`) and store it."""
        await self.load()
        before = self.registry.get(name).node_id
        info = self.registry.heartbeat(name, node_id, incarnation)
        if info.node_id != before:
            await self._save(name)
        return info

    async def set_status(self, name: str, status: str, error: str | None = None) -> AgentInfo:
        """Move the agent to `status` and store it; InvalidTransition when not allowed."""
        await self.load()
        info = self.registry.set_status(name, status, error)
        await self._save(name)
        return info

    async def relocate(self, name: str, node_id: str) -> AgentInfo:
        """Record a new incarnation of `name` on `node_id` (idle); its unread inbox is kept."""
        await self.load()
        info = self.registry.relocate(name, node_id)
        await self._save(name)
        return info

    async def dead(self, timeout_s: float) -> list[AgentInfo]:
        """Agents whose last heartbeat is older than `timeout_s`."""
        await self.load()
        return self.registry.dead(timeout_s)

    async def _save(self, name: str) -> None:
        # Serialised, and each write takes the newest state, so the stored row never goes back in time.
        async with self._save_lock:
            if name in self.registry:
                info = self.registry.get(name)
                await asyncio.to_thread(self.store.save_agent, self.namespace, self.name, info)

    # subscriptions ------------------------------------------------------------------------------

    async def subscribe(self, topic: str, *, agent: str | None = None, role: str | None = None) -> None:
        """Subscribe one agent, or every agent of a role (present and future), to `topic`."""
        table, key = self._subscription(topic, agent, role)
        table.setdefault(topic, set()).add(key)

    async def unsubscribe(self, topic: str, *, agent: str | None = None, role: str | None = None) -> None:
        """Undo a `subscribe`; one that was not there is no error."""
        table, key = self._subscription(topic, agent, role)
        table.get(topic, set()).discard(key)

    async def subscribers(self, topic: str, *, exclude: str | None = None) -> list[str]:
        """Agents subscribed to `topic` directly or by role, in registration order."""
        agents = self._topic_agents.get(topic, set())
        roles = self._topic_roles.get(topic, set())
        return [
            a.name for a in self.registry.all() if a.name != exclude and (a.name in agents or a.role in roles)
        ]

    def _subscription(
        self, topic: str, agent: str | None, role: str | None
    ) -> tuple[dict[str, set[str]], str]:
        check_topic(topic)
        if (agent is None) == (role is None):
            raise ValidationFailed("give exactly one of agent= or role=", field="agent")
        if agent is not None:
            self.registry.get(agent)
            return self._topic_agents, agent
        return self._topic_roles, check_name(role, "role", what="role")

    # messages -----------------------------------------------------------------------------------

    async def publish(self, message: Message, *, deliver_to: Sequence[str] | None = None) -> Message:
        """Accept, store and deliver a draft; returns it numbered, with `delivered_to` filled in.

        Targets: `deliver_to` if given (a router's decision), else the explicit recipients, else the
        topic's subscribers except the sender. Unknown targets are a ValidationFailed, a full inbox is
        InboxFull; in both cases nothing is stored or delivered.
        """
        await self.load()
        if not isinstance(message, Message):
            raise ValidationFailed("publish() takes a Message", field="message")
        if not message.is_draft or message.id in self._ids:
            raise ValidationFailed(f"message {message.id} was already published", field="id")
        if deliver_to is not None:
            targets = self._known(list(deliver_to), "deliver_to")
        elif message.recipients:
            targets = self._known(list(message.recipients), "recipients")
        else:
            targets = await self.subscribers(message.topic, exclude=message.sender)
        for target in targets:
            if len(self._inboxes[target]) + self._reserved[target] >= self.inbox_limit:
                raise InboxFull(target, self.inbox_limit)
        for target in targets:
            self._reserved[target] += 1
        self._remember(message.id)
        queued = _Queued(message, targets, asyncio.get_running_loop().create_future(), list(targets))
        self._queue.append(queued)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await queued.done

    async def read(self, name: str, max_count: int | None = None) -> list[Message]:
        """Take (and remove) up to `max_count` messages from `name`'s inbox, oldest first."""
        await self.load()
        self.registry.get(name)
        if max_count is not None and (isinstance(max_count, bool) or max_count < 1):
            raise ValidationFailed("max_count must be >= 1", field="max_count")
        inbox = self._inboxes[name]
        count = len(inbox) if max_count is None else min(max_count, len(inbox))
        return [inbox.popleft() for _ in range(count)]

    async def requeue(self, name: str, messages: Sequence[Message]) -> None:
        """Put messages read from `name`'s inbox back in front, in their order (an agent failed on them)."""
        await self.load()
        self.registry.get(name)
        self._inboxes[name].extendleft(reversed(messages))

    async def pending(self) -> dict[str, int]:
        """Unread counts of the agents that have unread messages, in registration order."""
        await self.load()
        return {name: len(box) for name in self.registry.names() if (box := self._inboxes[name])}

    async def history(self, *, after: int = 0, limit: int = 100, topic: str | None = None) -> list[Message]:
        """Accepted messages with `position > after`, oldest first; page on with the last position."""
        await self.load()
        if not 1 <= limit <= 1000:
            raise ValidationFailed("limit must be between 1 and 1000", field="limit")
        if after < 0:
            raise ValidationFailed("after must be >= 0", field="after")
        if topic is not None:
            check_topic(topic)
        return await asyncio.to_thread(
            self.store.history, self.namespace, self.name, after=after, limit=limit, topic=topic
        )

    async def describe(self) -> dict[str, Any]:
        """A JSON summary: agents, subscriptions, unread counts, history length."""
        await self.load()
        topics = sorted(set(self._topic_agents) | set(self._topic_roles))
        return {
            "namespace": self.namespace,
            "name": self.name,
            "agents": [a.to_dict() for a in self.registry.all()],
            "subscriptions": {
                t: {
                    "agents": sorted(self._topic_agents.get(t, ())),
                    "roles": sorted(self._topic_roles.get(t, ())),
                }
                for t in topics
            },
            "pending": await self.pending(),
            "messages": self._position,
        }

    async def close(self) -> None:
        """Wait until every accepted message is stored and delivered."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    def _known(self, names: list[str], field: str) -> list[str]:
        for i, name in enumerate(names):
            if name not in self.registry:
                raise ValidationFailed(
                    f"no agent {name!r} in environment {self.name!r}", field=f"{field}[{i}]"
                )
        return list(dict.fromkeys(names))

    def _remember(self, message_id: str) -> None:
        self._ids[message_id] = None
        if len(self._ids) > _REMEMBERED_IDS:
            self._ids.popitem(last=False)

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
            await self._commit(batch)

    async def _commit(self, batch: list[_Queued]) -> None:
        saved = self._position, dict(self._seqs)
        stamped = [self._stamp(q.message, q.targets) for q in batch]
        try:
            await asyncio.to_thread(self.store.append, self.namespace, self.name, stamped)
        except BaseException as exc:
            self._position, self._seqs = saved
            if len(batch) > 1 and isinstance(exc, Exception):
                for queued in batch:  # one bad message must not fail its neighbours
                    await self._commit([queued])
                return
            for queued in batch:
                self._release(queued)
                self._ids.pop(queued.message.id, None)
                if not queued.done.done():
                    queued.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for queued, message in zip(batch, stamped, strict=True):
            for target in message.delivered_to:
                self._inboxes[target].append(message)
            self._release(queued)
            if not queued.done.done():
                queued.done.set_result(message)

    def _stamp(self, message: Message, targets: list[str]) -> Message:
        seq = self._seqs[message.sender] = self._seqs.get(message.sender, 0) + 1
        self._position += 1
        alive = [t for t in targets if t in self._inboxes]  # an agent may have left meanwhile
        return message.stamped(seq=seq, position=self._position, delivered_to=alive)

    def _release(self, queued: _Queued) -> None:
        for target in queued.reserved:
            if target in self._reserved:
                self._reserved[target] = max(0, self._reserved[target] - 1)
        queued.reserved = []
