"""A node manager that starts removes the containers its engine still holds of a vanished node.

A machine that comes back joins Ray with a new node id, on the same Docker engine, which still holds the
containers of the node it was (SIGKILL leaves them running). Whatever starts the new node's manager (here:
`start_node_actors` without any adoption, as `toolserver up --address` starts managers at start-up), the
manager removes those containers once their sessions are over in the registry, and leaves them while the
registry still holds a live session there (the server re-attaches or marks those itself). Shutting the
managers down (`toolserver down`) then leaves no container of the instance at all.

One `ray.cluster_utils.Cluster` on this machine (a head and workers of one CPU each, all on this engine),
a SQLite registry, our node health checks (the killed node is declared dead in seconds).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from foundation.actors import find_actor
from foundation.ray_health import NODE_HEALTH_CHECKS
from registry import Database, SessionStore
from sandbox import _labels
from sandbox.base import SandboxSpec
from toolserver.config import Settings
from toolserver.nodes.ray_actors import RAY_NAMESPACE, RayNodes, start_node_actors, stop_node_actors
from toolserver.serve.app import mark_sessions_of_lost_nodes

from .test_cluster_routing import _remove_instance_dir, _remove_leftovers

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
DEAD_WITHIN_S = 120.0  # Ray declares a killed node dead (in ~4 s with our health checks; far less than this)


@pytest.fixture
def cluster(docker_engine: Any) -> Iterator[Cluster]:
    if ray.is_initialized():
        pytest.skip("this process is already connected to another Ray instance")
    ray_tmp = tempfile.mkdtemp(prefix="rsc-", dir="/tmp")  # short: Ray puts unix sockets under it
    saved = {name: os.environ.get(name) for name in ("RAY_TMPDIR", "PYTHONPATH")}
    os.environ["RAY_TMPDIR"] = ray_tmp
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved["PYTHONPATH"]) if p)
    head_args = {"num_cpus": 1, "include_dashboard": False, "_system_config": dict(NODE_HEALTH_CHECKS)}
    made = Cluster(initialize_head=True, head_node_args=head_args)
    try:
        ray.init(
            address=made.address, namespace=RAY_NAMESPACE, logging_level=logging.WARNING, log_to_driver=False
        )
        yield made
    finally:
        try:
            if ray.is_initialized():
                stop_node_actors()
        finally:
            ray.shutdown()
            made.shutdown()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            shutil.rmtree(ray_tmp, ignore_errors=True)


def _alive() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def _node_labels(docker: Any, instance_id: str) -> list[str]:
    found = docker.containers.list(all=True, filters=_labels.instance_filter(instance_id))
    return [c.labels.get(_labels.NODE, "") for c in found]


def _add_worker(cluster: Cluster) -> str:
    node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return str(node.node_id)


async def test_a_starting_manager_removes_a_vanished_nodes_containers_once_its_sessions_are_over(
    cluster: Cluster, docker_engine: Any, sandbox_image: str, tmp_path: Path
) -> None:
    instance_id = f"stale-{secrets.token_hex(4)}"
    settings = Settings(home=tmp_path, pool_size=1, sandbox_image=sandbox_image)
    db = Database(settings.database)
    try:
        # A worker with a warm sandbox and a session the registry holds as running there.
        lost_node = _add_worker(cluster)
        start_node_actors(settings, instance_id, {}, only={lost_node})
        info = await (await RayNodes().node(lost_node)).create(SandboxSpec())
        store = SessionStore(db)
        store.create("team", node_id=lost_node, session_id=info.session_id, status="running")
        assert _node_labels(docker_engine, instance_id).count(lost_node) == 2  # the session's and the pool's

        # The worker is SIGKILLed: its raylet and manager die, Docker keeps its containers running.
        victim = next(n for n in cluster.list_all_nodes() if n.node_id == lost_node)
        await asyncio.to_thread(cluster.remove_node, victim, False)
        deadline = time.monotonic() + DEAD_WITHIN_S
        while lost_node in _alive():
            assert time.monotonic() < deadline, "Ray never declared the killed node dead"
            await asyncio.sleep(0.25)
        assert _node_labels(docker_engine, instance_id).count(lost_node) == 2

        # The machine comes back as a new node; its manager starts while the session is still live in
        # the registry: the dead node's containers stay (the server re-attaches or marks that session).
        back = _add_worker(cluster)
        report = start_node_actors(settings, instance_id, {}, only={back})[back]
        assert report["removed"] == []
        assert _node_labels(docker_engine, instance_id).count(lost_node) == 2

        # The server marks the session lost; the next start of that node's manager removes the containers.
        assert mark_sessions_of_lost_nodes(settings) == [info.session_id]
        ray.kill(find_actor(f"sandbox-node-{back}", RAY_NAMESPACE))
        while find_actor(f"sandbox-node-{back}", RAY_NAMESPACE) is not None:
            await asyncio.sleep(0.2)
        report = start_node_actors(settings, instance_id, {}, only={back})[back]
        assert info.session_id in report["removed"]
        assert lost_node not in _node_labels(docker_engine, instance_id)
        deadline = time.monotonic() + DEAD_WITHIN_S
        while back not in _node_labels(
            docker_engine, instance_id
        ):  # its own warm sandbox, filled after start
            assert time.monotonic() < deadline, "the new manager never filled its pool"
            await asyncio.sleep(0.5)

        # `toolserver down`: the managers shut down and no container of the instance is left.
        await asyncio.to_thread(stop_node_actors)
        assert _node_labels(docker_engine, instance_id) == []
    finally:
        db.close()
        _remove_leftovers(docker_engine, instance_id)
        _remove_instance_dir(instance_id)
