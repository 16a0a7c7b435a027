"""The Serve application builder for `serve deploy` / `serve run`: `toolserver.serve.builder:app_builder`.

`toolserver up` starts the actors the HTTP app needs (a sandbox manager per node, the run scheduler, the
memory actor, the environment center) before `serve.run`, and then watches for nodes that die or join.
A Serve config only names an import path, so this builder does the same when Serve builds the application:
it starts whatever is missing (all detached, found by name, so a redeploy starts nothing twice) and a small
node-watcher actor in place of `toolserver up`'s loop. Settings come from `TOOLSERVER_*` in the environment
of the Ray nodes (or the application's `runtime_env`), overridden by the config's `args`.

`python -m toolserver.serve.builder stop` removes what the builder started (and every sandbox); `serve
shutdown` alone removes only the Serve application.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import ray
from ray.serve import Application
from sqlalchemy.engine import make_url

from foundation.actors import (
    find_actor,
    kill_named_actor,
    singleton_options,
    start_named_actor,
    was_restarted,
)
from foundation.errors import UserError
from registry import Database, KeyStore, SessionStore
from registry.models import SessionRecord
from toolserver.config import Settings
from toolserver.http.auth import with_secrets_key
from toolserver.nodes.ray_actors import (
    KEY_ENV_VARS,
    RAY_NAMESPACE,
    manager_node_ids,
    reattach_sessions,
    start_missing_node_actors,
)
from toolserver.serve.app import (
    ToolServerIngress,
    _instance_id,
    ingress_options,
    mark_sessions_of_lost_nodes,
    stop_server,
    without_admin_key,
)

__all__ = [
    "WATCHER_NAME",
    "NodeWatcher",
    "app_builder",
    "ensure_started",
    "instance_id_for",
    "main",
    "watcher_settings",
]

WATCHER_NAME = "node-watcher"
_SCAN_S = 10.0  # as often as `toolserver up` looks for nodes that died or joined

log = logging.getLogger(__name__)


def app_builder(args: dict[str, Any]) -> Application:
    """Start the server's actors (once) and return the ingress application; `args` override settings."""
    settings, instance_id = _parse_args(dict(args or {}))
    settings.llm_policy()  # a bad TOOLSERVER_LLM_KEY_ENVS stops the build here, with its reason
    settings, _ = with_secrets_key(
        settings
    )  # one key for every replica and actor this build starts that uses it
    if not ray.is_initialized():  # `serve run <import path>` calls builders before it connects
        ray.init(address=settings.ray_address or os.environ.get("RAY_ADDRESS"), namespace=RAY_NAMESPACE)
    ensure_started(settings, instance_id)
    return ToolServerIngress.options(**ingress_options(settings)).bind()  # type: ignore[attr-defined,no-any-return]


def instance_id_for(settings: Settings) -> str:
    """The server instance (the label on its containers), the same on every node that builds the app.

    With SQLite (one machine) it is `toolserver up`'s, kept in the state directory; with a server database,
    one per database (the URL without its password), whichever node runs the build.
    """
    url = make_url(settings.database)
    if url.get_backend_name() == "sqlite":
        return _instance_id(settings)
    return "ts" + hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:8]


def _parse_args(args: dict[str, Any]) -> tuple[Settings, str]:
    instance_id = args.pop("instance_id", None)
    unknown = sorted(set(args) - set(Settings.model_fields))
    if unknown:
        raise UserError(
            f"unknown application args: {', '.join(unknown)} (allowed: instance_id and Settings fields)"
        )
    settings = Settings(**args)
    return settings, str(instance_id or instance_id_for(settings))


def ensure_started(settings: Settings, instance_id: str) -> dict[str, Any]:
    """Start every actor the app needs that is not running yet; returns what was started."""
    from toolserver.http.auth import ensure_admin_key, seal_secrets

    settings.home.mkdir(parents=True, exist_ok=True)
    alive = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    if len(alive) > 1 and settings.database.startswith("sqlite"):
        log.warning("a %d-node cluster on a SQLite registry: set TOOLSERVER_DATABASE_URL", len(alive))
    db = Database(settings.database)
    try:
        _, key_source = ensure_admin_key(KeyStore(db), settings.api_key, settings.admin_key_file)
        seal_secrets(db, settings)
        nodes = _start_node_managers(db, settings, instance_id, alive)
    finally:
        db.close()
    lost = mark_sessions_of_lost_nodes(settings)
    started: dict[str, Any] = {"admin_key": key_source, "nodes": nodes, "lost_sessions": lost}
    from toolserver.runs.ray_actor import SCHEDULER_NAME, start_scheduler

    if not _actor_exists(SCHEDULER_NAME):  # its start resumes interrupted runs: only once
        started["runs"] = start_scheduler(settings, RAY_NAMESPACE)
    from agent_core.memory import start_memory_actor
    from toolserver.service.environment_center import start_center

    start_memory_actor(settings.database)
    start_center(without_admin_key(settings), RAY_NAMESPACE)
    watcher = start_named_actor(
        NodeWatcher,
        WATCHER_NAME,
        RAY_NAMESPACE,
        watcher_settings(settings),
        instance_id,
        blank_env=KEY_ENV_VARS,
        **singleton_options(settings.service_resource),
    )
    ray.get(watcher.start.remote())
    log.info("toolserver actors ready: %s", started)
    return started


def _start_node_managers(
    db: Database, settings: Settings, instance_id: str, alive: list[str]
) -> dict[str, dict[str, list[str]]]:
    """A sandbox manager on every alive node without one; their registry sessions re-attached or lost."""
    missing = set(alive) - manager_node_ids()
    if not missing:
        return {}
    store = SessionStore(db)
    every = store.list_all_live()
    # A restarted one-machine Ray has one new node id: that node takes over the old node's sessions.
    adopting = len(alive) == 1
    live = [r for r in every if r.node_id in missing or (adopting and r.node_id not in alive)]
    placed: dict[str, list[SessionRecord]] = defaultdict(list)
    for record in live:
        placed[record.node_id if record.node_id in missing else alive[0]].append(record)
    adopt = {alive[0]: {r.node_id for r in live if r.node_id not in alive}} if adopting else {}
    return reattach_sessions(store, settings, instance_id, placed, adopt, only=missing)


def _actor_exists(name: str) -> bool:
    return find_actor(name, RAY_NAMESPACE) is not None


def watcher_settings(settings: Settings) -> Settings:
    """What the node watcher is given: the settings without the admin key and the secrets key (it only reads
    sessions and starts node managers, which get neither)."""
    return settings.model_copy(update={"api_key": None, "secrets_key": None})


class NodeWatcher:
    """What `toolserver up` does every 10 s: mark sessions of dead nodes lost, manage nodes that joined.

    `settings` arrive as the object (`watcher_settings`), not re-read from this process's environment.
    """

    def __init__(self, settings: Settings, instance_id: str, interval_s: float = _SCAN_S) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        if was_restarted():  # restarted after its node was lost
            self._task = asyncio.get_event_loop().create_task(self._watch())

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await asyncio.to_thread(mark_sessions_of_lost_nodes, self.settings)
                await asyncio.to_thread(start_missing_node_actors, self.settings, self.instance_id)
            except Exception as exc:  # retried on the next scan
                log.warning("node watch failed: %s", exc)


def stop(settings: Settings | None = None) -> None:
    """Remove the Serve app, the builder's actors and every sandbox; the Ray cluster keeps running."""
    kill_named_actor(WATCHER_NAME, RAY_NAMESPACE)
    stop_server(settings=settings or Settings(), remove_sandboxes=True, shutdown_ray=False)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m toolserver.serve.builder stop [--address ADDR]`."""
    parser = argparse.ArgumentParser(prog="python -m toolserver.serve.builder", description=stop.__doc__)
    parser.add_argument("command", choices=["stop"])
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "auto"), help="Ray cluster")
    args = parser.parse_args(argv)
    ray.init(address=args.address, namespace=RAY_NAMESPACE, logging_level=logging.WARNING)
    try:
        stop()
    finally:
        ray.shutdown()
    print("stopped: the Serve application, toolserver's actors and every sandbox are gone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
