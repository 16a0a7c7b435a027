"""The environment center: the one named Ray actor that owns every task center of a cluster's server.

Every ingress replica talks to it through `center_client`; the Serve app starts it (`start_center`) and
stops it (`stop_center`). It wires its own services over the Ray node directory, so sandboxed agents'
tool calls run like any other call.

It survives the loss of its node: Ray restarts it on a living node (`singleton_options`), its clients
retry meanwhile, and it creates its environments again from their specs (kept in Ray's GCS,
`EnvironmentSpecs`): new hubs and agents (sandboxed agents get new sessions), the history kept in the
database; messages not yet delivered when the node died are lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from foundation.actors import (
    RETRY_S,
    ActorClient,
    find_actor,
    singleton_options,
    start_named_actor,
    was_restarted,
)
from foundation.errors import Unavailable
from registry import Database
from toolserver.config import Settings
from toolserver.nodes.ray_actors import RayNodes
from toolserver.service.environment_specs import EnvironmentSpecs
from toolserver.service.environment_tools import EnvironmentTools
from toolserver.service.environments import EnvironmentManager
from toolserver.service.wiring import build_services
from toolserver.tools.deployment import DeploymentToolRunner

__all__ = ["CENTER_NAME", "EnvironmentCenterActor", "center_client", "start_center", "stop_center"]

CENTER_NAME = "environment-center"

log = logging.getLogger(__name__)


class EnvironmentCenterActor:
    """The EnvironmentManager as the one named actor every ingress replica talks to.

    It holds its own tool and session services (over the Ray node directory), so sandboxed agents' calls
    run like any other: tenancy, argument checks, audit, and the node that holds the session.
    """

    def __init__(self, parsed: Settings, ray_namespace: str) -> None:
        self.db = Database(parsed.database)
        services = build_services(
            parsed,
            self.db,
            RayNodes(),
            {"deployment": DeploymentToolRunner()},
            scheduler=_NotHere(),
            environments=_NotHere(),
        )
        tools = EnvironmentTools(
            services.sessions, services.tools, actor=CENTER_NAME, ray_namespace=ray_namespace
        )
        self.manager = EnvironmentManager.from_settings(parsed, use_ray=True, tools=tools)

        self.specs = EnvironmentSpecs()
        self._restoring: asyncio.Task[None] | None = None
        if was_restarted():
            # Restarted after its node was lost: build its environments again (an async actor's
            # __init__ runs in its event loop; calls wait for this).
            self._restoring = asyncio.get_event_loop().create_task(self._restore())
        else:
            self.specs.clear()  # a previous server's, not ours

    async def call(self, method: str, *args: Any) -> Any:
        """Run one `EnvironmentManager` method (after the restore, when restarted)."""
        if self._restoring is not None:
            await asyncio.shield(self._restoring)
        if method == "create":
            return await self._create(*args)
        result = await getattr(self.manager, method)(*args)
        if method == "delete":
            await asyncio.to_thread(self.specs.drop, args[0], args[1])
        elif method == "shutdown":
            await asyncio.to_thread(self.specs.clear)
        return result

    async def _restore(self) -> None:
        """Create every environment of the lost center again from its spec; its agents' old sessions go."""
        try:
            saved = await asyncio.to_thread(self.specs.saved)
        except Exception:  # the center serves on without them
            log.exception("could not read the specs of the lost center's environments")
            return
        for namespace, name, spec, sessions in saved:
            try:
                if sessions and self.manager.tools is not None:
                    await self.manager.tools.release(namespace, sessions)
                await self._create(namespace, spec)
                log.warning("environment %s/%s restored on a restarted center", namespace, name)
            except Exception:
                log.exception("could not restore environment %s/%s", namespace, name)
                await asyncio.to_thread(self.specs.drop, namespace, name)

    async def _create(self, namespace: str, spec: dict[str, Any]) -> Any:
        """Create an environment and save its spec (with its agents' sessions) for a restarted center."""
        view = await self.manager.create(namespace, spec)
        sessions = self.manager.held_sessions(namespace, spec["name"])
        try:
            await asyncio.to_thread(self.specs.save, namespace, spec["name"], spec, sessions)
        except Exception:  # the environment serves; only a restarted center would not rebuild it
            log.exception("could not save the spec of environment %s/%s", namespace, spec["name"])
        return view


class _NotHere:
    """The center's own services never run agents' runs nor other environment centers."""


def start_center(settings: Settings, namespace: str) -> None:
    """Start (or find) the environment center actor; it is never given the admin key."""
    start_named_actor(
        EnvironmentCenterActor,
        CENTER_NAME,
        namespace,
        settings.model_copy(update={"api_key": None}),
        namespace,
        max_concurrency=1000,
        **singleton_options(settings.service_resource),
    )


def center_client(namespace: str) -> Any:
    """The running environment center (calls retried while it restarts); Unavailable when there is none."""
    handle = find_actor(CENTER_NAME, namespace)
    if handle is None:
        raise Unavailable("the environment center is not running")
    return ActorClient(
        handle, "the environment center", name=CENTER_NAME, namespace=namespace, retry_s=RETRY_S
    )


def stop_center(namespace: str) -> None:
    """Stop the environment center's agents and kill it, if it runs."""
    handle = find_actor(CENTER_NAME, namespace)
    if handle is None:
        return
    try:
        ray.get(handle.call.remote("shutdown"), timeout=30)
    finally:
        ray.kill(handle)
