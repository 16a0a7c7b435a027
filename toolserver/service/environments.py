"""Multi-agent environments on the server: the manager that owns every task center.

A task center keeps router state (round-robin position, SOP state, an outbox) in memory, so exactly
one process must own it: in process (no Ray), or the named actor of `environment_center`, which every
ingress replica calls. With Ray, each environment's hub is its own actor and its agents are actors placed
on the nodes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from agent_core.environment import Hub, Message, SqlEnvironmentStore, TaskCenter, build_agent, make_router
from foundation.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed
from foundation.wakeups import Wakeups
from registry import Database
from toolserver.config import Settings
from toolserver.runs.llm import LLMPolicy
from toolserver.service.environment_tools import AgentSession, EnvironmentTools, ServerAgentRuntime

__all__ = ["EnvironmentManager"]

_DEFAULT_MAX_ENVIRONMENTS: int = Settings.model_fields["max_environments_per_namespace"].default
_DEFAULT_MAX_AGENTS: int = Settings.model_fields["max_env_agents_per_namespace"].default

log = logging.getLogger(__name__)


@dataclass
class _Environment:
    hub: Any
    center: TaskCenter
    ray_env: Any = None  # a RayEnvironment when its agents are Ray actors
    sessions: dict[str, str] = field(default_factory=dict)  # agent name -> session id, of sandboxed agents


class EnvironmentManager:
    """Creates environments and drives their task centers; `use_ray` puts hubs and agents on Ray."""

    def __init__(
        self,
        database_url: str,
        *,
        use_ray: bool,
        dead_after_s: float = 5.0,
        llm_policy: LLMPolicy | None = None,
        tools: EnvironmentTools | None = None,
        max_environments: int = _DEFAULT_MAX_ENVIRONMENTS,
        max_agents: int = _DEFAULT_MAX_AGENTS,
    ) -> None:
        self.database_url = database_url
        self.max_environments = max_environments  # per namespace; 0: no cap
        self.max_agents = max_agents  # across a namespace's environments; 0: no cap
        self.tools = tools
        self.llm_policy = llm_policy or LLMPolicy()  # public endpoints only, no shared keys
        self.use_ray = use_ray
        self.dead_after_s = dead_after_s
        self._watchdog: asyncio.Task[None] | None = None
        self._restarted: dict[tuple[str, str, str], float] = {}
        self._db: Database | None = None
        self._sql_store: SqlEnvironmentStore | None = None
        self._store_opening = asyncio.Lock()
        self._envs: dict[tuple[str, str], _Environment] = {}
        self._busy: dict[tuple[str, str], int] = {}  # being created or removed: their agent counts
        self._changed = Wakeups()  # followers of an environment's events, held only while they wait

    @classmethod
    def from_settings(
        cls, settings: Settings, *, use_ray: bool, tools: EnvironmentTools | None = None
    ) -> EnvironmentManager:
        """A manager under the operator's policy: egress, LLM keys, and the per-namespace caps."""
        return cls(
            settings.database,
            use_ray=use_ray,
            llm_policy=settings.llm_policy(),
            tools=tools,
            max_environments=settings.max_environments_per_namespace,
            max_agents=settings.max_env_agents_per_namespace,
        )

    async def create(self, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create an environment from its spec: its agents (and their sessions), router and subscriptions."""
        name = str(spec.get("name", ""))
        agents = list(spec.get("agents") or [])
        if not agents:
            raise ValidationFailed("an environment needs at least one agent", field="agents")
        for i, config in enumerate(agents):
            if isinstance(config, dict) and config.get("sandbox") and self.tools is None:
                raise ValidationFailed(
                    "this server has no sandboxes for agents", field=f"agents[{i}].sandbox"
                )
            try:
                build_agent(config, self.agent_runtime(namespace))
            except ValidationFailed as exc:
                raise ValidationFailed(
                    exc.message, field=f"agents[{i}].{exc.field or ''}".rstrip(".")
                ) from None
        router = make_router(spec.get("router", "send_to"))
        key = (namespace, name)
        self._reserve(key, len(agents))  # no await before it: the check and the reservation are one step
        sessions: dict[str, AgentSession] = {}
        ray_env = None
        try:
            await self._forget(namespace, name)  # what a removed or lost environment of this name left
            if self.tools is not None:
                for i, config in enumerate(agents):
                    agents[i], session = await self.tools.provision(namespace, config, i)
                    if session is not None:
                        sessions[config["name"]] = session
            runtime = self.agent_runtime(namespace, sessions)
            hub, members, ray_env = await self._start(namespace, name, agents, runtime)
            center = TaskCenter(hub, members, router, act_timeout_s=float(spec.get("act_timeout_s", 120)))
            await center.start()  # registers in-process agents: subscriptions may name them after this
            for sub in spec.get("subscriptions") or []:
                await hub.subscribe(sub["topic"], agent=sub.get("agent"), role=sub.get("role"))
        except BaseException:  # nothing of a half-made environment stays: actors, sessions
            if ray_env is not None:
                await ray_env.shutdown()
            try:
                await self._forget(namespace, name)
            except Exception:  # the failure that brought us here is the one to report
                log.exception("could not release the agents of %s/%s", namespace, name)
            if sessions and self.tools is not None:
                await self.tools.release(namespace, [s.session_id for s in sessions.values()])
            raise
        finally:
            del self._busy[key]
        held = {agent: session.session_id for agent, session in sessions.items()}
        self._envs[key] = _Environment(hub, center, ray_env, held)
        if self.use_ray and self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch_forever())
        return await self.describe(namespace, name)

    def _reserve(self, key: tuple[str, str], agents: int) -> None:
        """Count an environment being made against its namespace's caps; Conflict if its name is taken."""
        namespace, name = key
        if key in self._envs or key in self._busy:
            state = "exists" if key in self._envs else "is being created or removed"
            raise Conflict(f"environment {name!r} {state}", environment=name)
        held = [len(env.center.agents) for (ns, _), env in self._envs.items() if ns == namespace]
        held += [count for (ns, _), count in self._busy.items() if ns == namespace]
        if self.max_environments and len(held) >= self.max_environments:
            raise QuotaExceeded(
                f"namespace {namespace!r} holds {len(held)} environments, the most it may; remove one first",
                limit=self.max_environments,
                setting="TOOLSERVER_MAX_ENVIRONMENTS_PER_NAMESPACE",
            )
        if self.max_agents and sum(held) + agents > self.max_agents:
            raise QuotaExceeded(
                f"namespace {namespace!r} holds {sum(held)} environment agents; {agents} more would pass "
                f"its cap of {self.max_agents}",
                limit=self.max_agents,
                setting="TOOLSERVER_MAX_ENV_AGENTS_PER_NAMESPACE",
            )
        self._busy[key] = agents

    def agent_runtime(
        self, namespace: str, sessions: dict[str, AgentSession] | None = None
    ) -> ServerAgentRuntime:
        """How this server builds a namespace's environment agents: its LLM policy, their sessions' tools."""
        route = self.tools.route() if self.tools is not None else None
        return ServerAgentRuntime(self.llm_policy, namespace, route, dict(sessions or {}))

    async def _start(
        self, namespace: str, name: str, agents: list[dict[str, Any]], runtime: ServerAgentRuntime
    ) -> tuple[Any, Any, Any]:
        """(hub, agents, ray environment or None): actors on the cluster, or objects in this process."""
        if self.use_ray:
            import ray

            from agent_core.environment import RayEnvironment

            # The hub lives where its task center lives, not on a worker node that may go away.
            home = ray.get_runtime_context().get_node_id()
            ray_env = await RayEnvironment.start(
                namespace, name, self.database_url, hub_node_id=home, runtime=runtime
            )
            for config in agents:
                await ray_env.add_agent(config, config.get("placement", "spread"))
            return ray_env.hub, ray_env.agents, ray_env
        hub = Hub(namespace, name, await self._store())
        return hub, [build_agent(config, runtime) for config in agents], None

    def _get(self, namespace: str, name: str) -> _Environment:
        try:
            return self._envs[(namespace, name)]
        except KeyError:
            raise NotFound(f"no environment {name!r}", environment=name) from None

    def held_sessions(self, namespace: str, name: str) -> list[str]:
        """The session ids of the environment's sandboxed agents."""
        return list(self._get(namespace, name).sessions.values())

    async def names(self, namespace: str) -> list[str]:
        """The names of a namespace's environments."""
        return sorted(name for ns, name in self._envs if ns == namespace)

    async def post(self, namespace: str, name: str, message: dict[str, Any]) -> dict[str, Any]:
        """Post a message into an environment; the message as stored."""
        env = self._get(namespace, name)
        posted = await env.center.post(
            str(message.get("content", "")),
            sender=str(message.get("sender") or "user"),
            recipients=tuple(message.get("recipients") or ()),
            topic=str(message.get("topic") or "general"),
            metadata=message.get("metadata") or {},
        )
        self._changed.notify((namespace, name))
        return posted.to_dict()

    async def step(self, namespace: str, name: str, steps: int = 1) -> list[dict[str, Any]]:
        """Run up to `steps` steps (at most 100), stopping when nothing is left to do."""
        env = self._get(namespace, name)
        results = []
        for _ in range(max(1, min(steps, 100))):
            result = await env.center.step()
            results.append(result.to_dict())
            self._changed.notify((namespace, name))
            if result.finished or (not result.acted and not result.waiting):
                break
        return results

    async def describe(self, namespace: str, name: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """An environment as the tenant sees it: its agents (with their sessions), router state and history."""
        env = self._get(namespace, name)
        summary: dict[str, Any] = copy.deepcopy(await env.hub.describe())  # in process it shares live state
        for agent in summary.get("agents", []):
            if agent.get("name") in env.sessions:
                agent["session_id"] = env.sessions[agent["name"]]
        summary["center"] = env.center.describe()
        summary["history"] = [m.to_dict() for m in await env.hub.history(after=after, limit=limit)]
        return summary

    async def wait_history(
        self, namespace: str, name: str, after: int, wait_s: float
    ) -> list[dict[str, Any]]:
        """Messages after position `after`; waits up to `wait_s` for new ones (an event, not a poll loop)."""
        with self._changed.watch((namespace, name)) as changed:  # before the read: nothing slips between
            found: list[Message] = await self._get(namespace, name).hub.history(after=after, limit=500)
            if not found and wait_s > 0:
                await self._changed.wait(changed, wait_s)
                found = await self._get(namespace, name).hub.history(after=after, limit=500)
        return [m.to_dict() for m in found]

    async def delete(self, namespace: str, name: str) -> None:
        """Stop the environment and release its agents and sessions; its history stays in the database."""
        key = (namespace, name)
        env = self._get(namespace, name)
        # Until its actors are gone it still counts against the caps, and its name stays taken.
        self._busy[key] = len(env.center.agents)
        del self._envs[key]
        try:
            if env.ray_env is not None:
                await env.ray_env.shutdown()
            else:
                await env.hub.close()  # messages accepted before the delete are stored
            await self._forget(namespace, name)
            if env.sessions and self.tools is not None:
                await self.tools.release(namespace, list(env.sessions.values()))
        finally:
            del self._busy[key]
            self._changed.notify(key)  # its followers see it gone instead of waiting out their poll

    async def _store(self) -> SqlEnvironmentStore:
        if self._sql_store is None:
            # Concurrent first calls open one database: two schema checks at once lock SQLite.
            async with self._store_opening:
                if self._sql_store is None:
                    if self._db is None:
                        self._db = await asyncio.to_thread(Database, self.database_url)
                    self._sql_store = await asyncio.to_thread(SqlEnvironmentStore, self._db)
        return self._sql_store

    async def _forget(self, namespace: str, name: str) -> None:
        """Release the stored agents of `name` (and, on Ray, any actor left running); the history stays.

        A new environment of that name then starts empty: no agent rows, inboxes or subscriptions of the
        old one (a server restart between the two leaves the rows; a lost center may leave actors).
        """
        store = await self._store()
        stored = await asyncio.to_thread(store.agents, namespace, name)
        if self.use_ray:
            from agent_core.environment import RayEnvironment

            RayEnvironment.clear_leftovers(namespace, name, stored)
        if stored:
            await asyncio.to_thread(store.delete_agents, namespace, name)

    async def agent_tool_call(
        self, namespace: str, session_id: str, allowed: list[str], name: str, arguments: dict[str, Any]
    ) -> tuple[bool, str]:
        """A sandboxed agent's tool call (from its actor, on whichever node): run in its session."""
        if self.tools is None:
            return False, "this server has no sandboxes for agents"
        return await self.tools.call(namespace, session_id, allowed, name, arguments)

    async def shutdown(self) -> None:
        """Stop the watchdog and remove every environment."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for namespace, name in list(self._envs):
            await self.delete(namespace, name)

    async def restart_dead_agents(self) -> list[str]:
        """Agents whose heartbeats stopped (their node is lost) start again on a living node."""
        restarted = []
        for (namespace, name), env in list(self._envs.items()):
            if env.ray_env is None:
                continue
            for info in await env.hub.dead(self.dead_after_s):
                key = (namespace, name, info.name)
                # A new incarnation has not sent its first heartbeat yet: give it time before judging it.
                if time.monotonic() - self._restarted.get(key, -1e9) < 2 * self.dead_after_s:
                    continue
                try:
                    await env.ray_env.restart_agent_elsewhere(info.name)
                    self._restarted[key] = time.monotonic()
                    restarted.append(f"{namespace}/{name}/{info.name}")
                except Exception:
                    log.exception("could not restart agent %s of %s", info.name, name)
        return restarted

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.dead_after_s / 2))
            try:
                await self.restart_dead_agents()
            except Exception:
                log.exception("environment watchdog failed")
