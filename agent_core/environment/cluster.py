"""One environment on a Ray cluster: its hub actor, its agent actors, and moving agents off lost nodes.

env = await RayEnvironment.start("team-a", "release", "sqlite:///...", hub_node_id=head, runtime=OFFLINE)
env = await RayEnvironment.attach("team-a", "release", "sqlite:///...")   # from another process
await env.add_agent({"kind": "echo", "name": "a1", "role": "worker"}, "spread")
center = TaskCenter(env.hub, env.agents, "broadcast")       # env.agents follows restarts
for info in await env.hub.dead(timeout_s=3):
    await env.restart_agent_elsewhere(info.name)            # from its config in the database
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from agent_core.environment.actors import (
    AGENT_ACTOR_MEMORY,
    RAY_NAMESPACE,
    AgentActor,
    RemoteAgent,
    RemoteHub,
    agent_actor_name,
    hub_actor_name,
    hub_client,
    start_hub_actor,
    stop_hub_actor,
)
from agent_core.environment.agents import build_agent
from agent_core.environment.errors import NoRoomForAgent, UnknownAgent
from agent_core.environment.hub import DEFAULT_INBOX_LIMIT
from agent_core.environment.placement import Placement, choose_node
from agent_core.environment.registry import AgentInfo
from agent_core.environment.runtime import OFFLINE, AgentRuntime
from agent_core.environment.store import SqlEnvironmentStore
from foundation.actors import call_actor

__all__ = ["AGENT_START_TIMEOUT_S", "RayEnvironment", "alive_nodes"]

AGENT_START_TIMEOUT_S = 60.0
"""How long an agent's actor may wait to be placed and started; a full cluster answers NoRoomForAgent."""


def alive_nodes() -> list[str]:
    """Ids of the alive Ray nodes, in the order Ray lists them."""
    return [n["NodeID"] for n in ray.nodes() if n.get("Alive")]


class RayEnvironment:
    """Starts and tracks the actors of one environment; `agents` maps names to stable proxies.

    Every agent actor it starts (or restarts) builds its agent with `runtime`.
    """

    def __init__(
        self,
        hub: RemoteHub,
        database_url: str,
        hub_node_id: str,
        *,
        heartbeat_s: float = 1.0,
        start_timeout_s: float = AGENT_START_TIMEOUT_S,
        runtime: AgentRuntime = OFFLINE,
    ) -> None:
        self.hub = hub
        self.runtime = runtime
        self.start_timeout_s = start_timeout_s
        self.namespace, self.name = hub.namespace, hub.name
        self.database_url = database_url
        self.hub_node_id = hub_node_id
        self.heartbeat_s = heartbeat_s
        self.agents: dict[str, RemoteAgent] = {}
        self._store: SqlEnvironmentStore | None = None

    @classmethod
    async def start(
        cls,
        namespace: str,
        name: str,
        database_url: str,
        *,
        hub_node_id: str | None = None,
        heartbeat_s: float = 1.0,
        inbox_limit: int = DEFAULT_INBOX_LIMIT,
        start_timeout_s: float = AGENT_START_TIMEOUT_S,
        runtime: AgentRuntime = OFFLINE,
    ) -> RayEnvironment:
        """Start (or find) the hub actor, on `hub_node_id` if given."""
        hub = await start_hub_actor(
            namespace, name, database_url, node_id=hub_node_id, inbox_limit=inbox_limit
        )
        node = await call_actor(hub.handle.ready.remote(), "the hub")
        return cls(
            hub, database_url, node, heartbeat_s=heartbeat_s, start_timeout_s=start_timeout_s, runtime=runtime
        )

    @classmethod
    async def attach(
        cls,
        namespace: str,
        name: str,
        database_url: str,
        *,
        heartbeat_s: float = 1.0,
        runtime: AgentRuntime = OFFLINE,
    ) -> RayEnvironment:
        """The running environment seen from another process: its hub and its live agent actors."""
        hub = hub_client(namespace, name)
        node = await call_actor(hub.handle.ready.remote(), "the hub")
        env = cls(hub, database_url, node, heartbeat_s=heartbeat_s, runtime=runtime)
        for info in await hub.agents():
            actor = agent_actor_name(namespace, name, info.name, info.incarnation)
            try:
                handle = ray.get_actor(actor, namespace=RAY_NAMESPACE)
            except ValueError:
                continue  # not on Ray, or lost: restart_agent_elsewhere brings it back
            env.agents[info.name] = RemoteAgent(info.name, info.role, info.config, handle, info.node_id or "")
        return env

    async def add_agent(self, config: dict[str, Any], placement: str | Placement = "spread") -> RemoteAgent:
        """Register the agent with the hub and start its actor where `placement` says."""
        agent = build_agent(config, self.runtime)  # a bad config fails here, before anything is registered
        chosen = choose_node(
            Placement.parse(placement), alive_nodes(), await self._load(), home=self.hub_node_id
        )
        info = await self.hub.register_agent(agent.name, agent.role, node_id=chosen, config=config)
        try:
            return await self._launch(info, chosen)
        except BaseException:
            await self.hub.unregister_agent(agent.name)  # an agent without an actor is not a member
            raise

    async def restart_agent_elsewhere(self, name: str) -> RemoteAgent:
        """Recreate `name` from its stored config on a living node other than its last one (if any)."""
        stored = {a.name: a for a in await asyncio.to_thread(self._agents_in_store)}
        if name not in stored:
            raise UnknownAgent(name, self.name)
        info = stored[name]
        alive = alive_nodes()
        avoid = {info.node_id} if info.node_id and any(n != info.node_id for n in alive) else set()
        chosen = choose_node(Placement("spread"), alive, await self._load(), exclude=avoid)
        self._kill(agent_actor_name(self.namespace, self.name, name, info.incarnation))
        moved = await self.hub.relocate(name, chosen)
        return await self._launch(moved, chosen)

    async def shutdown(self, *, stop_hub: bool = True) -> None:
        """Kill the agent actors (and the hub actor); the history stays in the database."""
        for info in await self.hub.agents():
            self._kill(agent_actor_name(self.namespace, self.name, info.name, info.incarnation))
        self.agents.clear()
        if self._store is not None:
            self._store.db.close()
            self._store = None
        if stop_hub:
            stop_hub_actor(self.namespace, self.name)

    @classmethod
    def clear_leftovers(cls, namespace: str, name: str, stored: list[AgentInfo]) -> None:
        """Kill what a lost owner left of an environment: its `stored` agents' actors and its hub actor.

        A new environment of the same name must start from nothing: a surviving hub would hand it the old
        room's inboxes and subscriptions, a surviving agent actor would hold the old one's name.
        """
        for info in stored:
            cls._kill(agent_actor_name(namespace, name, info.name, info.incarnation))
        stop_hub_actor(namespace, name)

    async def _launch(self, info: AgentInfo, node_id: str) -> RemoteAgent:
        handle = (
            ray.remote(AgentActor)
            .options(  # type: ignore[attr-defined]
                name=agent_actor_name(self.namespace, self.name, info.name, info.incarnation),
                namespace=RAY_NAMESPACE,
                lifetime="detached",
                num_cpus=0,
                # Each agent is a worker process: reserving what one costs lets Ray refuse the one too many.
                memory=AGENT_ACTOR_MEMORY,
                max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            )
            .remote(
                hub_actor_name(self.namespace, self.name),
                info.config,
                info.incarnation,
                self.heartbeat_s,
                self.runtime,
            )
        )
        started = call_actor(handle.start.remote(), f"agent {info.name!r}", agent=info.name)  # type: ignore[attr-defined]
        if info.name in self.agents:
            # A restart: from now on the agent's acts go to the new actor (Ray queues them until it is up), never
            # to the one just killed, however long the new one takes to start.
            self.agents[info.name].rebind(handle, node_id)
        try:
            where = await asyncio.wait_for(started, self.start_timeout_s)
        except asyncio.TimeoutError:
            ray.kill(handle)  # type: ignore[arg-type]  # a pending actor would take the next free room
            raise NoRoomForAgent(info.name, self.start_timeout_s) from None
        proxy = self.agents.get(info.name)
        if proxy is None:
            proxy = self.agents[info.name] = RemoteAgent(info.name, info.role, info.config, handle, where)
        else:
            proxy.rebind(handle, where)
        return proxy

    async def _load(self) -> Counter[str]:
        return Counter(a.node_id for a in await self.hub.agents() if a.node_id and a.status != "failed")

    def _agents_in_store(self) -> list[AgentInfo]:
        if self._store is None:
            from registry import Database

            self._store = SqlEnvironmentStore(Database(self.database_url))
        return self._store.agents(self.namespace, self.name)

    @staticmethod
    def _kill(actor_name: str) -> None:
        try:
            ray.kill(ray.get_actor(actor_name, namespace=RAY_NAMESPACE))
        except Exception:
            pass  # already gone with its node, or never started
