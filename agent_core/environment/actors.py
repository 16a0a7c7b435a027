"""The environment on Ray: the hub as a named async actor, agents as actors that send heartbeats.

    hub = await start_hub_actor("team-a", "release", "sqlite:///...")  # once: the actor env-team-a-release
    hub = hub_client("team-a", "release")                          # anywhere in the cluster
    await hub.publish(Message("user", "hello", topic="general"))

Actors live in the Ray namespace `toolserver` and are detached (they belong to the environment, not to
the process that started them). Errors raised in an actor come back as themselves; a lost actor as
`Unavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from agent_core.environment.agents import build_agent
from agent_core.environment.base import EnvironmentAgent, HubAPI
from agent_core.environment.hub import DEFAULT_INBOX_LIMIT, Hub
from agent_core.environment.messages import Message
from agent_core.environment.registry import AgentInfo
from agent_core.environment.runtime import AgentRuntime
from foundation.actors import call_actor
from foundation.errors import NotFound, Unavailable, ValidationFailed

__all__ = [
    "AGENT_ACTOR_MEMORY",
    "HUB_ACTOR_MEMORY",
    "RAY_NAMESPACE",
    "AgentActor",
    "HubActor",
    "RemoteAgent",
    "RemoteHub",
    "agent_actor_name",
    "hub_actor_name",
    "hub_client",
    "start_hub_actor",
    "stop_hub_actor",
]

RAY_NAMESPACE = "toolserver"  # the same namespace as toolserver.nodes.ray_actors
AGENT_ACTOR_MEMORY = 128 * 1024 * 1024
"""Bytes of Ray's `memory` resource an agent actor reserves: about what its worker process costs."""
HUB_ACTOR_MEMORY = 128 * 1024 * 1024
"""The same for an environment's hub actor (its inboxes are bounded by `inbox_limit`)."""
_HUB_METHODS = frozenset(name for name in dir(HubAPI) if not name.startswith("_"))


def hub_actor_name(namespace: str, name: str) -> str:
    """Unambiguous for any pair: each part carries its length ("a-b"/"c" and "a"/"b-c" differ)."""
    return f"env:{len(namespace)}:{namespace}:{len(name)}:{name}"


def agent_actor_name(namespace: str, environment: str, agent: str, incarnation: int) -> str:
    """The Ray name of an agent's actor: its environment's hub name, the agent, its incarnation."""
    return f"{hub_actor_name(namespace, environment)}:agent:{len(agent)}:{agent}:{incarnation}"


class HubActor:
    """A `Hub` over the registry database at `database_url`; resumes its numbering and agents on start."""

    def __init__(self, namespace: str, name: str, database_url: str, inbox_limit: int) -> None:
        from agent_core.environment.store import SqlEnvironmentStore
        from registry import Database

        self.hub = Hub(
            namespace,
            name,
            SqlEnvironmentStore(Database(database_url, pool_size=1, max_overflow=2)),
            inbox_limit=inbox_limit,
        )

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one `HubAPI` method on the hub; any other name is refused."""
        if method not in _HUB_METHODS:
            raise ValidationFailed(f"the hub has no method {method!r}", field="method")
        return await getattr(self.hub, method)(*args, **kwargs)

    async def ready(self) -> str:
        """Load the hub's stored state; the id of the node this actor runs on."""
        await self.hub.load()
        return ray.get_runtime_context().get_node_id()


class AgentActor:
    """Hosts one agent (rebuilt from its config by `runtime`) and reports a heartbeat to the hub every `heartbeat_s`."""

    def __init__(
        self,
        hub_name: str,
        config: dict[str, Any],
        incarnation: int,
        heartbeat_s: float,
        runtime: AgentRuntime,
    ) -> None:
        self.agent = build_agent(config, runtime)
        self.hub = ray.get_actor(hub_name, namespace=RAY_NAMESPACE)
        self.incarnation = incarnation
        self.heartbeat_s = heartbeat_s
        self.node_id = ray.get_runtime_context().get_node_id()
        self._beats: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Send the first heartbeat and keep beating; returns the node this actor runs on."""
        await self._beat()
        if self._beats is None:
            self._beats = asyncio.get_running_loop().create_task(self._keep_beating())
        return self.node_id

    async def act(self, inbox: list[Message]) -> list[Message]:
        """Let the hosted agent act on `inbox`."""
        return await self.agent.act(inbox)

    async def _beat(self) -> None:
        await self.hub.call.remote("heartbeat", self.agent.name, self.node_id, self.incarnation)

    async def _keep_beating(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._beat()
            except Exception:
                continue  # the hub is restarting or gone: keep trying, the next beat may land


class RemoteHub(HubAPI):
    """The hub API over a `HubActor` handle."""

    def __init__(self, handle: Any, namespace: str, name: str) -> None:
        self.handle, self.namespace, self.name = handle, namespace, name

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        ref = self.handle.call.remote(method, *args, **kwargs)
        return await call_actor(ref, f"the hub of environment {self.name!r}", environment=self.name)

    async def register_agent(
        self, name: str, role: str, *, node_id: str | None = None, config: Mapping[str, Any] | None = None
    ) -> AgentInfo:
        """`HubAPI.register_agent`, on the actor."""
        return await self._call("register_agent", name, role, node_id=node_id, config=config)  # type: ignore[no-any-return]

    async def unregister_agent(self, name: str) -> list[Message]:
        """`HubAPI.unregister_agent`, on the actor."""
        return await self._call("unregister_agent", name)  # type: ignore[no-any-return]

    async def agents(self) -> list[AgentInfo]:
        """`HubAPI.agents`, on the actor."""
        return await self._call("agents")  # type: ignore[no-any-return]

    async def agent(self, name: str) -> AgentInfo:
        """`HubAPI.agent`, on the actor."""
        return await self._call("agent", name)  # type: ignore[no-any-return]

    async def heartbeat(
        self, name: str, node_id: str | None = None, incarnation: int | None = None
    ) -> AgentInfo:
        """`HubAPI.heartbeat`, on the actor."""
        return await self._call("heartbeat", name, node_id, incarnation)  # type: ignore[no-any-return]

    async def set_status(self, name: str, status: str, error: str | None = None) -> AgentInfo:
        """`HubAPI.set_status`, on the actor."""
        return await self._call("set_status", name, status, error)  # type: ignore[no-any-return]

    async def relocate(self, name: str, node_id: str) -> AgentInfo:
        """`HubAPI.relocate`, on the actor."""
        return await self._call("relocate", name, node_id)  # type: ignore[no-any-return]

    async def dead(self, timeout_s: float) -> list[AgentInfo]:
        """`HubAPI.dead`, on the actor."""
        return await self._call("dead", timeout_s)  # type: ignore[no-any-return]

    async def subscribe(self, topic: str, *, agent: str | None = None, role: str | None = None) -> None:
        """`HubAPI.subscribe`, on the actor."""
        await self._call("subscribe", topic, agent=agent, role=role)

    async def unsubscribe(self, topic: str, *, agent: str | None = None, role: str | None = None) -> None:
        """`HubAPI.unsubscribe`, on the actor."""
        await self._call("unsubscribe", topic, agent=agent, role=role)

    async def subscribers(self, topic: str, *, exclude: str | None = None) -> list[str]:
        """`HubAPI.subscribers`, on the actor."""
        return await self._call("subscribers", topic, exclude=exclude)  # type: ignore[no-any-return]

    async def publish(self, message: Message, *, deliver_to: Sequence[str] | None = None) -> Message:
        """`HubAPI.publish`, on the actor."""
        return await self._call("publish", message, deliver_to=deliver_to)  # type: ignore[no-any-return]

    async def read(self, name: str, max_count: int | None = None) -> list[Message]:
        """`HubAPI.read`, on the actor."""
        return await self._call("read", name, max_count)  # type: ignore[no-any-return]

    async def requeue(self, name: str, messages: Sequence[Message]) -> None:
        """`HubAPI.requeue`, on the actor."""
        await self._call("requeue", name, list(messages))

    async def pending(self) -> dict[str, int]:
        """`HubAPI.pending`, on the actor."""
        return await self._call("pending")  # type: ignore[no-any-return]

    async def history(self, *, after: int = 0, limit: int = 100, topic: str | None = None) -> list[Message]:
        """`HubAPI.history`, on the actor."""
        return await self._call("history", after=after, limit=limit, topic=topic)  # type: ignore[no-any-return]

    async def describe(self) -> dict[str, Any]:
        """`HubAPI.describe`, on the actor."""
        return await self._call("describe")  # type: ignore[no-any-return]


class RemoteAgent(EnvironmentAgent):
    """An `AgentActor` seen as an EnvironmentAgent; `rebind` points it at a restarted actor."""

    def __init__(self, name: str, role: str, config: dict[str, Any], handle: Any, node_id: str) -> None:
        self.name, self.role, self._config = name, role, dict(config)
        self.handle, self.node_id = handle, node_id

    def rebind(self, handle: Any, node_id: str) -> None:
        """Point this proxy at the agent's new actor (after a restart on `node_id`)."""
        self.handle, self.node_id = handle, node_id

    async def act(self, inbox: list[Message]) -> list[Message]:
        """The agent's actor acts on `inbox`; a lost actor is `Unavailable`."""
        ref = self.handle.act.remote(inbox)
        return await call_actor(ref, f"agent {self.name!r}", agent=self.name, node_id=self.node_id)  # type: ignore[no-any-return]

    def config(self) -> dict[str, Any]:
        """The config the agent's actor was started from."""
        return dict(self._config)


async def start_hub_actor(
    namespace: str,
    name: str,
    database_url: str,
    *,
    node_id: str | None = None,
    inbox_limit: int = DEFAULT_INBOX_LIMIT,
    start_timeout_s: float = 60.0,
) -> RemoteHub:
    """Start (or find) the environment's hub actor, pinned to `node_id` if given, and wait until it is ready."""
    Hub(namespace, name, inbox_limit=inbox_limit)  # validates the names before anything starts
    strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False) if node_id else None
    handle = (
        ray.remote(HubActor)
        .options(  # type: ignore[attr-defined]
            name=hub_actor_name(namespace, name),
            namespace=RAY_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            memory=HUB_ACTOR_MEMORY,
            max_concurrency=1000,
            max_restarts=0,
            scheduling_strategy=strategy,
        )
        .remote(namespace, name, database_url, inbox_limit)
    )
    what = f"the hub of environment {name!r}"
    try:
        await asyncio.wait_for(call_actor(handle.ready.remote(), what, environment=name), start_timeout_s)  # type: ignore[attr-defined]
    except asyncio.TimeoutError:
        ray.kill(handle)  # type: ignore[arg-type]
        raise Unavailable(
            f"no room on the cluster for {what}: it was not placed within {start_timeout_s:g} s",
            environment=name,
        ) from None
    return RemoteHub(handle, namespace, name)


def hub_client(namespace: str, name: str) -> RemoteHub:
    """The running hub of an environment; NotFound when there is none."""
    try:
        handle = ray.get_actor(hub_actor_name(namespace, name), namespace=RAY_NAMESPACE)
    except ValueError:
        raise NotFound(f"no running environment {name!r}", environment=name) from None
    return RemoteHub(handle, namespace, name)


def stop_hub_actor(namespace: str, name: str) -> bool:
    """Kill the hub actor (its history stays in the database); False if it was not running."""
    try:
        ray.kill(ray.get_actor(hub_actor_name(namespace, name), namespace=RAY_NAMESPACE))
    except ValueError:
        return False
    return True
