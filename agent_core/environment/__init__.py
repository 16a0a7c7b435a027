"""The multi-agent environment: a message hub, an agent registry and a task center, local or on Ray.

    hub = Hub("team-a", "release", SqlEnvironmentStore(db))     # or: await start_hub_actor(...) on Ray
    center = TaskCenter(hub, [EchoAgent("a"), EchoAgent("b")], "round_robin" or {...} or a function)
    await center.start()
    await center.post("hello")
    await center.run()
    await hub.history(after=0, limit=100)

Every agent has a private inbox that drains on read; messages name their recipients or go to the
subscribers of their topic (by agent or by role); every accepted message is stored in the registry
database (`env_messages`), agents in `env_agents`. Agents are built from JSON configs by the
`AgentRuntime` their host gives (`OFFLINE` by default: scripted models, local tools). The Ray pieces
(`HubActor`, `AgentActor`, `RayEnvironment`...) import Ray when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent_core.environment.agents import AGENT_KINDS, EchoAgent, LoopAgent, build_agent, render_inbox
from agent_core.environment.base import EnvironmentAgent, HubAPI
from agent_core.environment.center import StepResult, TaskCenter
from agent_core.environment.errors import (
    AgentExists,
    AgentFailed,
    EnvError,
    InboxFull,
    InvalidTransition,
    NoLivingNode,
    NoRoomForAgent,
    UnknownAgent,
)
from agent_core.environment.hub import DEFAULT_INBOX_LIMIT, Hub
from agent_core.environment.messages import DEFAULT_TOPIC, Message
from agent_core.environment.placement import Placement, PlacementPolicy, choose_node
from agent_core.environment.registry import AGENT_STATUSES, TRANSITIONS, AgentInfo, AgentRegistry, AgentStatus
from agent_core.environment.routing import (
    BroadcastRouter,
    CustomRouter,
    RoundRobinRouter,
    RouteFunction,
    Router,
    SendToRouter,
    make_router,
)
from agent_core.environment.runtime import OFFLINE, AgentRuntime, OfflineRuntime, ProcessRuntime
from agent_core.environment.sop import SOPRouter, linear_sop
from agent_core.environment.store import (
    ENV_TABLES,
    EnvironmentStore,
    InMemoryEnvironmentStore,
    SqlEnvironmentStore,
    ensure_tables,
)

if TYPE_CHECKING:
    from agent_core.environment.actors import (
        RAY_NAMESPACE,
        AgentActor,
        HubActor,
        RemoteAgent,
        RemoteHub,
        hub_client,
        start_hub_actor,
        stop_hub_actor,
    )
    from agent_core.environment.cluster import RayEnvironment, alive_nodes

__all__ = [
    "AGENT_KINDS",
    "AGENT_STATUSES",
    "DEFAULT_INBOX_LIMIT",
    "DEFAULT_TOPIC",
    "ENV_TABLES",
    "OFFLINE",
    "RAY_NAMESPACE",
    "TRANSITIONS",
    "AgentActor",
    "AgentExists",
    "AgentFailed",
    "AgentInfo",
    "AgentRegistry",
    "AgentRuntime",
    "AgentStatus",
    "BroadcastRouter",
    "CustomRouter",
    "EchoAgent",
    "EnvError",
    "EnvironmentAgent",
    "EnvironmentStore",
    "Hub",
    "HubAPI",
    "HubActor",
    "InMemoryEnvironmentStore",
    "InboxFull",
    "InvalidTransition",
    "LoopAgent",
    "Message",
    "NoLivingNode",
    "NoRoomForAgent",
    "OfflineRuntime",
    "Placement",
    "PlacementPolicy",
    "ProcessRuntime",
    "RayEnvironment",
    "RemoteAgent",
    "RemoteHub",
    "RoundRobinRouter",
    "RouteFunction",
    "Router",
    "SOPRouter",
    "SendToRouter",
    "SqlEnvironmentStore",
    "StepResult",
    "TaskCenter",
    "UnknownAgent",
    "alive_nodes",
    "build_agent",
    "choose_node",
    "ensure_tables",
    "hub_client",
    "linear_sop",
    "make_router",
    "render_inbox",
    "start_hub_actor",
    "stop_hub_actor",
]

_RAY_NAMES = {
    "RAY_NAMESPACE": "actors",
    "AgentActor": "actors",
    "HubActor": "actors",
    "RemoteAgent": "actors",
    "RemoteHub": "actors",
    "hub_client": "actors",
    "start_hub_actor": "actors",
    "stop_hub_actor": "actors",
    "RayEnvironment": "cluster",
    "alive_nodes": "cluster",
}


def __getattr__(name: str) -> Any:
    module = _RAY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
