"""The run scheduler as one named Ray actor: every replica submits to it, and it recovers runs on start.

It survives the loss of its node: Ray restarts it on a living node (`singleton_options`), where it
resumes the runs that were executing from their last checkpoint and re-arms the waiting runs' timers, as
after a server restart; its clients retry meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from foundation.actors import (
    RETRY_S,
    ActorClient,
    kill_named_actor,
    singleton_options,
    start_named_actor,
    was_restarted,
)
from toolserver.config import Settings

__all__ = ["SCHEDULER_NAME", "RunSchedulerActor", "scheduler_client", "scheduler_settings", "start_scheduler"]

SCHEDULER_NAME = "run-scheduler"

log = logging.getLogger(__name__)


class RunSchedulerActor:
    """Hosts a RunScheduler with its own services (tools reach sandboxes through the node actors).

    `settings` arrive as the object (`scheduler_settings`), not re-read from this process's environment: they
    carry the secrets key (runs call tools with secret headers) but never the admin key.
    """

    def __init__(self, settings: Settings) -> None:
        from registry import Database
        from toolserver.http.app import build_services
        from toolserver.nodes.ray_actors import RayNodes
        from toolserver.runs.scheduler import RunScheduler
        from toolserver.tools.deployment import DeploymentToolRunner

        self.settings = settings
        db = Database(self.settings.database)
        services = build_services(
            self.settings, db, RayNodes(), {"deployment": DeploymentToolRunner()}, scheduler=_Unused()
        )
        self.scheduler = RunScheduler(db, services.tools, services.memory, self.settings.llm_policy())
        self._recovered: asyncio.Task[dict[str, int]] | None = None
        if was_restarted():
            # Restarted after its node was lost: nobody calls `recover`, so it resumes on its own.
            # (An async actor's __init__ runs in its event loop.)
            self._recovered = asyncio.get_event_loop().create_task(self._recover_after_restart())

    async def _recover_after_restart(self) -> dict[str, int]:
        report = await self.scheduler.recover()
        log.warning("run scheduler restarted on node %s: %s", ray.get_runtime_context().get_node_id(), report)
        return report

    async def call(self, method: str, *args: Any) -> Any:
        return await getattr(self.scheduler, method)(*args)


class _Unused:
    """The scheduler actor's own services never schedule runs themselves."""


def scheduler_settings(settings: Settings) -> Settings:
    """What the scheduler is given: every setting but the admin key, which it has no use for."""
    return settings.model_copy(update={"api_key": None})


def start_scheduler(settings: Settings, namespace: str) -> dict[str, int]:
    """Start (or find) the scheduler actor and let it resume what a previous server left unfinished."""
    handle = start_named_actor(
        RunSchedulerActor,
        SCHEDULER_NAME,
        namespace,
        scheduler_settings(settings),
        max_concurrency=1000,
        **singleton_options(settings.service_resource),
    )
    report: dict[str, int] = ray.get(handle.call.remote("recover"))
    return report


def scheduler_client(namespace: str) -> ActorClient:
    """A client of the running run scheduler; calls are retried while it restarts after a node loss."""
    return ActorClient(
        ray.get_actor(SCHEDULER_NAME, namespace=namespace),
        "the run scheduler",
        name=SCHEDULER_NAME,
        namespace=namespace,
        retry_s=RETRY_S,
    )


def stop_scheduler(namespace: str) -> None:
    """Kill the run scheduler if it runs (its runs resume on the next start)."""
    kill_named_actor(SCHEDULER_NAME, namespace)
