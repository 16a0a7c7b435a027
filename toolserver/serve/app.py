"""The tool server on Ray Serve: the ingress deployment and the start/stop sequence of `toolserver up`."""

from __future__ import annotations

import logging
import os
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve

from registry import Database, KeyStore, SessionStore
from registry.models import SessionRecord
from toolserver.config import Settings
from toolserver.nodes.ray_actors import RAY_NAMESPACE, RayNodes, reattach_sessions, stop_node_actors

__all__ = [
    "APP_NAME",
    "ServerHandle",
    "build_asgi_app",
    "ensure_singletons",
    "ingress_options",
    "mark_sessions_of_lost_nodes",
    "start_server",
    "stop_server",
    "without_admin_key",
]

APP_NAME = "toolserver"


def build_asgi_app() -> FastAPI:
    """Runs inside each ingress replica: settings come from the environment `start_server` set."""
    from toolserver.http.app import build_services, create_app
    from toolserver.runs.ray_actor import scheduler_client
    from toolserver.service.environment_center import center_client
    from toolserver.tools.deployment import DeploymentToolRunner

    settings = Settings()
    db = Database(settings.database)
    services = build_services(
        settings,
        db,
        RayNodes(lane=settings.node_lane),
        {"deployment": DeploymentToolRunner()},
        scheduler=scheduler_client(RAY_NAMESPACE),
        environments=center_client(RAY_NAMESPACE),
    )
    return create_app(services)


@serve.deployment(name="ingress", max_ongoing_requests=256)
@serve.ingress(build_asgi_app)
class ToolServerIngress:
    """The FastAPI ingress; all logic lives in the app the builder returns."""


def ingress_options(settings: Settings) -> dict[str, Any]:
    """Serve options of the ingress: on a cluster at least two replicas, on distinct nodes when there are enough.

    A node loss then leaves a replica (and its node's proxy) serving while Serve starts another elsewhere.
    """
    alive = len([n for n in ray.nodes() if n.get("Alive")])
    replicas = settings.replicas or (2 if alive > 1 else 1)
    options: dict[str, Any] = {
        "num_replicas": replicas,
        "ray_actor_options": {"num_cpus": 0, "runtime_env": {"env_vars": _settings_env(settings)}},
    }
    if alive > 1:
        options["max_replicas_per_node"] = max(1, -(-replicas // alive))
    return options


@dataclass(frozen=True)
class ServerHandle:
    """What `start_server` reports: where the server listens, its admin key and what the start recovered."""

    url: str
    admin_key: str
    admin_key_source: str
    secrets_key_source: str
    instance_id: str
    reconcile: dict[str, dict[str, list[str]]]
    runs: dict[str, int]
    ingress: str = "serve"
    """Which ingress serves clients: "direct", "haproxy" or "serve" (see `serve.ingress.ingress_kind`)."""


def _settings_env(settings: Settings) -> dict[str, str]:
    """The environment of an ingress replica: every setting but the admin key, which a replica never uses
    (keys are checked against the registry), and which is blanked rather than left to be inherited."""
    env = {"TOOLSERVER_API_KEY": ""}
    for name, value in settings.model_dump(mode="json", exclude={"api_key"}).items():
        if value is not None:
            env[f"TOOLSERVER_{name.upper()}"] = str(value)
    return env


def without_admin_key(settings: Settings) -> Settings:
    """`settings` for a process that serves tenants: the admin key is only needed where it is bootstrapped."""
    return settings.model_copy(update={"api_key": None})


def _instance_id(settings: Settings) -> str:
    """A stable id for this server's state directory; container labels carry it."""
    path = settings.home / "instance_id"
    if path.exists():
        return path.read_text().strip()
    settings.home.mkdir(parents=True, exist_ok=True)
    value = "ts" + secrets.token_hex(4)
    path.write_text(value + "\n")
    return value


def _vanished_nodes_on_engine(instance_id: str, alive: set[str]) -> set[str]:
    """Node labels of this instance's containers on the local engine whose node is no longer alive."""
    from sandbox import _labels
    from sandbox.docker import DockerBackend

    try:
        containers = DockerBackend().client.containers.list(
            all=True, filters=_labels.instance_filter(instance_id)
        )
    except Exception:  # no engine here: the node managers will say so
        return set()
    return {c.labels.get(_labels.NODE, "") for c in containers} - alive - {""}


def _reattach_sessions(db: Database, settings: Settings, instance_id: str) -> dict[str, dict[str, list[str]]]:
    """Start every node's manager; re-attach live sessions; mark the ones that could not be found lost."""
    store = SessionStore(db)
    live = store.list_all_live()
    alive_nodes = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    placed: dict[str, list[SessionRecord]] = defaultdict(list)
    vanished: set[str] = set()
    head = ray.get_runtime_context().get_node_id()
    for record in live:
        node = record.node_id if record.node_id in alive_nodes else head
        if record.node_id not in alive_nodes:
            vanished.add(record.node_id)
        placed[node].append(record)
    # A restarted single-node server gets a new Ray node id; its head adopts the old node's containers,
    # pooled ones included (they belong to no session, so only the engine knows their node).
    adopt = (
        {head: vanished | _vanished_nodes_on_engine(instance_id, alive_nodes)}
        if not settings.ray_address
        else {}
    )
    return reattach_sessions(store, settings, instance_id, placed, adopt)


def mark_sessions_of_lost_nodes(settings: Settings) -> list[str]:
    """Mark `lost` every live session whose Ray node is dead, called or not; returns their ids."""
    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    db = Database(settings.database)
    try:
        store = SessionStore(db)
        lost = [record for record in store.list_all_live() if record.node_id not in alive]
        for record in lost:
            store.update_status(record.namespace, record.id, "lost")
    finally:
        db.close()
    return [record.id for record in lost]


def ensure_singletons(settings: Settings) -> list[str]:
    """Start again any server singleton that is gone for good (Ray restarts them after a node loss; this
    covers one that was killed, or whose restarts failed); returns the names started."""
    from agent_core.memory import MEMORY_ACTOR_NAME, start_memory_actor
    from foundation.actors import find_actor
    from toolserver.runs.ray_actor import SCHEDULER_NAME, start_scheduler
    from toolserver.service.environment_center import CENTER_NAME, start_center

    started = []
    if find_actor(SCHEDULER_NAME, RAY_NAMESPACE) is None:
        start_scheduler(settings, RAY_NAMESPACE)
        started.append(SCHEDULER_NAME)
    if find_actor(MEMORY_ACTOR_NAME, RAY_NAMESPACE) is None:
        start_memory_actor(settings.database)
        started.append(MEMORY_ACTOR_NAME)
    if find_actor(CENTER_NAME, RAY_NAMESPACE) is None:
        start_center(without_admin_key(settings), RAY_NAMESPACE)
        started.append(CENTER_NAME)
    return started


def start_server(settings: Settings, on_ray_ready: Callable[[], None] | None = None) -> ServerHandle:
    """Connect to (or start) Ray, reconcile sandboxes, and deploy the ingress on host:port.

    `on_ray_ready` runs right after Ray is up (which replaces signal handlers), so a caller can put its
    own back before the long part of start-up.
    """
    from toolserver.http.auth import ensure_admin_key, seal_secrets, with_secrets_key

    settings.home.mkdir(parents=True, exist_ok=True)
    settings.llm_policy()  # a bad TOOLSERVER_LLM_KEY_ENVS stops the start here, with its reason
    settings, secrets_source = with_secrets_key(settings)  # resolved once: the processes that use it get it
    address = settings.ray_address or os.environ.get("RAY_ADDRESS")
    from toolserver.serve.ingress import (
        check_port_free,
        direct_env,
        free_port,
        haproxy_env,
        haproxy_state_dir,
        ingress_kind,
    )

    # A Ray this process is already connected to was started without our environment: it decides.
    joined = bool(address) or ray.is_initialized()
    kind = ingress_kind(settings.fast_ingress, joined, settings.replicas, settings.direct_ingress)
    proxy_port = settings.port
    if kind == "direct":  # the replica binds the server's port; Serve's own proxy gets another
        check_port_free(settings.host, settings.port)
        os.environ.update(direct_env(settings.port))  # the controller's range; the replica has the switch
        proxy_port = free_port(settings.host)
    if kind == "haproxy":
        # Read by the Ray processes this call starts, so it must be in place before ray.init.
        os.environ.update(haproxy_env(haproxy_state_dir(settings.home)))
    if not ray.is_initialized():
        ray.init(
            address=address or None,
            namespace=RAY_NAMESPACE,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    if on_ray_ready is not None:
        on_ray_ready()
    db = Database(settings.database)
    try:
        admin_key, source = ensure_admin_key(KeyStore(db), settings.api_key, settings.admin_key_file)
        seal_secrets(db, settings)
        instance_id = _instance_id(settings)
        reports = _reattach_sessions(db, settings, instance_id)
    finally:
        db.close()
    from toolserver.runs.ray_actor import start_scheduler

    runs = start_scheduler(settings, RAY_NAMESPACE)
    from agent_core.memory import start_memory_actor

    start_memory_actor(settings.database)  # memory for agents that run as Ray tasks or actors on any node
    from toolserver.service.environment_center import start_center

    start_center(without_admin_key(settings), RAY_NAMESPACE)
    # A proxy on every node that hosts an ingress replica (and the head): any of them serves clients.
    serve.start(
        http_options={"host": settings.host, "port": proxy_port},
        proxy_location="EveryNode",
        detached=False,
    )
    options = ingress_options(settings)
    if kind == "direct":
        options["ray_actor_options"]["runtime_env"]["env_vars"].update(
            direct_env(settings.port, replica=True)
        )
    app = ToolServerIngress.options(**options).bind()  # type: ignore[attr-defined]
    serve.run(app, name=APP_NAME, route_prefix="/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return ServerHandle(
        url=f"http://{host}:{settings.port}",
        admin_key=admin_key,
        admin_key_source=source,
        secrets_key_source=secrets_source,
        instance_id=instance_id,
        reconcile=reports,
        runs=runs,
        ingress=kind,
    )


def stop_server(
    *, settings: Settings | None = None, remove_sandboxes: bool = True, shutdown_ray: bool = True
) -> None:
    """Stop serving; with `remove_sandboxes`, every sandbox the node managers started goes too."""
    try:
        serve.shutdown()
    except Exception:
        pass
    from toolserver.runs.ray_actor import stop_scheduler

    stop_scheduler(RAY_NAMESPACE)
    from toolserver.service.environment_center import stop_center

    try:
        stop_center(RAY_NAMESPACE)
    except Exception:
        pass
    from agent_core.memory import stop_memory_actor

    try:
        stop_memory_actor()
    except Exception:
        pass
    if remove_sandboxes:
        stop_node_actors()
        if settings is not None:
            db = Database(settings.database)
            try:
                store = SessionStore(db)
                for record in store.list_all_live():
                    if record.status != "paused":  # pause: kept on disk, with no sandbox to remove
                        store.update_status(record.namespace, record.id, "deleted")
            finally:
                db.close()
    if shutdown_ray and ray.is_initialized():
        ray.shutdown()


def node_reports_summary(reports: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """Counts of the node managers' start reports: nodes, sessions re-attached, containers removed."""
    return {
        "nodes": len(reports),
        "reattached": sum(len(r["attached"]) for r in reports.values()),
        "removed": sum(len(r["removed"]) for r in reports.values()),
    }
