"""Memory shared across Ray nodes: a task on one node writes, a task on another node finds it.

A three-node `ray.cluster_utils.Cluster` on this machine (head + node_a + node_b, one CPU each) with its
own ports and its own Ray temp directory, so that it never meets another Ray instance running here
(a plain `ray.init()` elsewhere reads the temp directory's `ray_current_cluster` file and would join us).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from agent_core.memory import MemoryItem, memory_client, start_memory_actor, stop_memory_actor
from foundation.errors import NotFound, Unavailable, ValidationFailed

pytestmark = [pytest.mark.integration, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
TEAM = "team-a"
SCOPE = "shared:release"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if ray.is_initialized():
        pytest.skip("this process is already connected to another Ray instance")
    ray_tmp = tempfile.mkdtemp(prefix="rmem-", dir="/tmp")  # short: Ray puts unix sockets under it
    saved = {name: os.environ.get(name) for name in ("RAY_TMPDIR", "PYTHONPATH")}
    os.environ["RAY_TMPDIR"] = ray_tmp
    # Worker processes import this module (for the tasks below) from the checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved["PYTHONPATH"]) if p)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        node_a = cluster.add_node(num_cpus=1, resources={"node_a": 1})
        node_b = cluster.add_node(num_cpus=1, resources={"node_b": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
        database = f"sqlite:///{tmp_path_factory.mktemp('memory') / 'memory.db'}"
        yield {
            "database": database,
            "head": cluster.head_node.node_id,
            "node_a": node_a.node_id,
            "node_b": node_b.node_id,
        }
    finally:
        try:
            if ray.is_initialized():
                stop_memory_actor()
        finally:
            ray.shutdown()
            cluster.shutdown()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            shutil.rmtree(ray_tmp, ignore_errors=True)


@ray.remote(num_cpus=0, resources={"node_a": 0.01})
def write_on_node_a(text: str) -> tuple[str, MemoryItem]:
    item = asyncio.run(memory_client().add(TEAM, SCOPE, text, {"written_on": "node_a"}))
    return ray.get_runtime_context().get_node_id(), item


@ray.remote(num_cpus=0, resources={"node_b": 0.01})
def search_on_node_b(namespace: str, query: str) -> tuple[str, list[MemoryItem]]:
    items = asyncio.run(memory_client().search(namespace, SCOPE, query, 5))
    return ray.get_runtime_context().get_node_id(), items


@ray.remote(num_cpus=0, resources={"node_b": 0.01})
def errors_on_node_b(item_id: str) -> list[tuple[type[Exception], str | None]]:
    async def attempt() -> list[tuple[type[Exception], str | None]]:
        client, seen = memory_client(), []
        for call in (
            client.add(TEAM, "user:bob", "bad scope"),
            client.search(TEAM, SCOPE, "   "),
            client.get("team-b", SCOPE, item_id),
        ):
            try:
                await call
            except (ValidationFailed, NotFound) as exc:
                seen.append((type(exc), getattr(exc, "field", None)))
        return seen

    return asyncio.run(attempt())


def test_without_the_actor_the_client_says_unavailable(cluster: dict[str, Any]) -> None:
    with pytest.raises(Unavailable):
        memory_client()


def test_agents_on_two_nodes_share_memory_through_the_actor(cluster: dict[str, Any]) -> None:
    handle = start_memory_actor(cluster["database"], node_id=cluster["head"])
    assert ray.get(handle.node_id.remote()) == cluster["head"]
    assert start_memory_actor(cluster["database"]) == handle  # found, not started twice

    writer, item = ray.get(write_on_node_a.remote("the release branch is frozen until monday"))
    reader, found = ray.get(search_on_node_b.remote(TEAM, "when is the release branch frozen?"))
    assert writer == cluster["node_a"] and reader == cluster["node_b"]
    assert len({writer, reader, cluster["head"]}) == 3  # three different Ray nodes took part
    assert [i.id for i in found] == [item.id]
    assert found[0].metadata == {"written_on": "node_a"} and found[0].score is not None

    _, other_tenant = ray.get(search_on_node_b.remote("team-b", "release branch frozen"))
    assert other_tenant == []
    assert ray.get(errors_on_node_b.remote(item.id)) == [
        (ValidationFailed, "scope"),
        (ValidationFailed, "q"),
        (NotFound, None),
    ]
    # The driver reaches the same actor and sees the same rows.
    recent = asyncio.run(memory_client().recent(TEAM, SCOPE, 5))
    assert [i.id for i in recent] == [item.id]
