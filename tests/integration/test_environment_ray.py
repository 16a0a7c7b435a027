"""The environment on a real three-node Ray cluster on this machine: placement, delivery, node loss.

One module-scoped `ray.cluster_utils.Cluster` (head + node_a + node_b, one CPU each, custom resources
`node_a` / `node_b`) with its own temp directory, so it never meets another Ray instance running here.
Actors take no CPU. The node-loss test removes node_a, so it runs last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from agent_core.environment import Message, RayEnvironment, TaskCenter, hub_client
from agent_core.environment.examples import (
    CHAT_ROOM_TRANSCRIPT,
    chat_room_agents,
    run_chat_room,
    transcript_lines,
)

pytestmark = [pytest.mark.integration, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
TEAM = "team-a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if ray.is_initialized():
        pytest.skip("this process is already connected to another Ray instance")
    ray_tmp = tempfile.mkdtemp(prefix="renv-", dir="/tmp")  # short: Ray puts unix sockets under it
    saved = {name: os.environ.get(name) for name in ("RAY_TMPDIR", "PYTHONPATH")}
    os.environ["RAY_TMPDIR"] = ray_tmp
    # Worker processes import this module (for the tasks below) from the checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved["PYTHONPATH"]) if p)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "dashboard_agent_listen_port": _free_port(),
            # Notice a removed node within seconds, not the default half minute.
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
        },
    )
    try:
        node_a = cluster.add_node(num_cpus=1, resources={"node_a": 1})
        node_b = cluster.add_node(num_cpus=1, resources={"node_b": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
        yield {
            "cluster": cluster,
            "database": f"sqlite:///{tmp_path_factory.mktemp('env') / 'registry.db'}",
            "head": cluster.head_node.node_id,
            "node_a": node_a,
            "node_b": node_b,
        }
    finally:
        try:
            ray.shutdown()
        finally:
            cluster.shutdown()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            shutil.rmtree(ray_tmp, ignore_errors=True)


@ray.remote(num_cpus=0)
def publish_many(environment: str, sender: str, count: int) -> tuple[str, list[int]]:
    """Publish `count` messages one after the other from whichever node runs this task."""

    async def go() -> list[int]:
        hub = hub_client(TEAM, environment)
        return [(await hub.publish(Message(sender, str(i), topic="load"))).seq for i in range(count)]

    return ray.get_runtime_context().get_node_id(), asyncio.run(go())


async def test_agents_spread_over_nodes_and_pinned_ones_stay_put(cluster: dict[str, Any]) -> None:
    env = await RayEnvironment.start(TEAM, "spread", cluster["database"], hub_node_id=cluster["head"])
    try:
        assert env.hub_node_id == cluster["head"]
        spread = [
            await env.add_agent({"kind": "echo", "name": f"w{i}", "role": "worker", "max_replies": 1})
            for i in range(3)
        ]
        nodes = {cluster["head"], cluster["node_a"].node_id, cluster["node_b"].node_id}
        assert {a.node_id for a in spread} == nodes  # three agents, three different nodes
        pinned = await env.add_agent(
            {"kind": "echo", "name": "pinned", "role": "worker"}, f"node:{cluster['node_b'].node_id}"
        )
        assert pinned.node_id == cluster["node_b"].node_id
        registered = {a.name: a.node_id for a in await env.hub.agents()}
        assert registered == {**{a.name: a.node_id for a in spread}, "pinned": pinned.node_id}
        seen_elsewhere = await RayEnvironment.attach(TEAM, "spread", cluster["database"])
        assert {n: a.node_id for n, a in seen_elsewhere.agents.items()} == registered

        center = TaskCenter(env.hub, {a.name: a for a in spread}, "broadcast")
        await center.start()
        await center.post("ping", sender="pinned")
        step = await center.step()
        assert step.acted == ("w0", "w1", "w2") and not step.failed
        assert [m.sender for m in step.published] == ["w0", "w1", "w2"]
    finally:
        await env.shutdown()


async def test_concurrent_publishers_on_both_workers(cluster: dict[str, Any]) -> None:
    env = await RayEnvironment.start(TEAM, "load", cluster["database"], hub_node_id=cluster["head"])
    try:
        for name, role in (("r1", "reader"), ("r2", "reader"), ("audit", "auditor")):
            await env.hub.register_agent(name, role)
        await env.hub.subscribe("load", role="reader")
        await env.hub.subscribe("load", agent="audit")
        each = 200
        tasks = [
            publish_many.options(resources={node: 0.01}).remote("load", f"{node}-p{i}", each)  # type: ignore[attr-defined]
            for node in ("node_a", "node_b")
            for i in range(2)
        ]
        results = await asyncio.gather(*tasks)
        assert {node for node, _ in results} == {cluster["node_a"].node_id, cluster["node_b"].node_id}
        assert all(seqs == list(range(1, each + 1)) for _, seqs in results)
        for reader in ("r1", "r2", "audit"):
            got = await env.hub.read(reader)
            assert len(got) == 4 * each and len({m.id for m in got}) == 4 * each
            by_sender: dict[str, list[Message]] = defaultdict(list)
            for m in got:
                by_sender[m.sender].append(m)
            assert len(by_sender) == 4
            for messages in by_sender.values():
                assert [m.seq for m in messages] == list(range(1, each + 1))
                assert [m.content for m in messages] == [str(i) for i in range(each)]
        history = await env.hub.history(after=0, limit=1000)
        assert [m.position for m in history] == list(range(1, 4 * each + 1))
    finally:
        await env.shutdown()


async def test_chat_room_runs_across_nodes(cluster: dict[str, Any]) -> None:
    env = await RayEnvironment.start(TEAM, "chat", cluster["database"], hub_node_id=cluster["head"])
    try:
        for config in chat_room_agents():
            await env.add_agent(config, "spread")
        assert len({a.node_id for a in env.agents.values()}) == 3
        messages = await run_chat_room(env.hub, env.agents)
        assert transcript_lines(messages) == CHAT_ROOM_TRANSCRIPT
    finally:
        await env.shutdown()


@pytest.mark.parametrize("agents", [10, 100])
async def test_measure_hub_throughput(cluster: dict[str, Any], agents: int) -> None:
    """Messages per second through the hub actor, every message going to every agent (not asserted)."""
    env = await RayEnvironment.start(TEAM, f"bench{agents}", cluster["database"], hub_node_id=cluster["head"])
    try:
        for i in range(agents):
            await env.hub.register_agent(f"a{i}", "listener")
        await env.hub.subscribe("bench", role="listener")
        publishers, each = 8, 50

        async def publish(p: int) -> None:
            for i in range(each):
                await env.hub.publish(Message(f"pub{p}", f"m{i}", topic="bench"))

        started = time.perf_counter()
        await asyncio.gather(*(publish(p) for p in range(publishers)))
        elapsed = time.perf_counter() - started
        total = publishers * each
        print(
            f"\nhub actor, {agents} agents: {total / elapsed:.0f} messages/s published, "
            f"{total * agents / elapsed:.0f} deliveries/s ({publishers} concurrent publishers, {total} messages)"
        )
        assert (await env.hub.pending())["a0"] == total
    finally:
        await env.shutdown()


async def test_lost_node_agent_is_detected_and_restarted_elsewhere(cluster: dict[str, Any]) -> None:
    node_a = cluster["node_a"]
    env = await RayEnvironment.start(
        TEAM, "failover", cluster["database"], hub_node_id=cluster["head"], heartbeat_s=0.3
    )
    try:
        config = {"kind": "echo", "name": "worker", "role": "worker", "prefix": "done: "}
        agent = await env.add_agent(config, f"node:{node_a.node_id}")
        assert agent.node_id == node_a.node_id
        await env.hub.register_agent("boss", "manager")
        follows = {"kind": "send_to", "follows": {"boss": ["worker"]}}
        center = TaskCenter(env.hub, env.agents, follows, act_timeout_s=30)
        await center.start()
        await center.post("job 1", recipients=["worker"])
        assert [m.content for m in (await center.step()).published] == ["done: job 1"]
        assert await env.hub.dead(timeout_s=2) == []

        cluster["cluster"].remove_node(node_a)
        await center.post("job 2", recipients=["worker"])
        deadline = time.monotonic() + 30
        while "worker" not in [a.name for a in await env.hub.dead(timeout_s=1.5)]:
            assert time.monotonic() < deadline, "the lost agent was never reported dead"
            await asyncio.sleep(0.2)

        step = await asyncio.wait_for(center.step(), timeout=60)
        assert step.failed["worker"]["type"] == "unavailable"  # a clear error, not a hang
        assert (await env.hub.agent("worker")).status == "failed"
        assert await env.hub.pending() == {"worker": 1, "boss": 1}  # job 2 was put back

        moved = await env.restart_agent_elsewhere("worker")
        assert moved is agent and moved.node_id in {cluster["head"], cluster["node_b"].node_id}
        info = await env.hub.agent("worker")
        assert (info.status, info.incarnation, info.node_id, info.config) == (
            "idle",
            1,
            moved.node_id,
            config,
        )
        step = await center.step()
        assert [m.content for m in step.published] == ["done: job 2"] and not step.failed
        assert [m.content for m in await env.hub.read("boss")] == ["done: job 1", "done: job 2"]
        await asyncio.sleep(1.0)
        assert await env.hub.dead(timeout_s=1.5) == []  # the new incarnation beats (boss has no node)
    finally:
        await env.shutdown()


async def test_the_server_watchdog_restarts_an_agent_whose_node_died(cluster: dict[str, Any]) -> None:
    """The server's environment manager notices the dead agent by itself and restarts it elsewhere."""
    from toolserver.service.environments import EnvironmentManager

    node_c = cluster["cluster"].add_node(num_cpus=1, resources={"node_c": 1})
    cluster["cluster"].wait_for_nodes()
    manager = EnvironmentManager(cluster["database"], use_ray=True, dead_after_s=1.5)
    try:
        spec = {
            "name": "watched",
            "agents": [
                {
                    "kind": "echo",
                    "name": "worker",
                    "role": "worker",
                    "prefix": "done: ",
                    "placement": f"node:{node_c.node_id}",
                }
            ],
            "router": "send_to",
            "act_timeout_s": 20,
        }
        created = await manager.create(TEAM, spec)
        assert [a["node_id"] for a in created["agents"]] == [node_c.node_id]
        cluster["cluster"].remove_node(node_c)
        deadline = time.monotonic() + 60
        while True:
            agent = next(
                a for a in (await manager.describe(TEAM, "watched"))["agents"] if a["name"] == "worker"
            )
            if agent["node_id"] != node_c.node_id and agent["incarnation"] >= 1:
                break
            assert time.monotonic() < deadline, f"the watchdog never moved the agent: {agent}"
            await asyncio.sleep(0.5)
        assert agent["node_id"] in {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        await asyncio.sleep(4)  # past the grace period: the new incarnation beats, so it stays where it is
        again = next(a for a in (await manager.describe(TEAM, "watched"))["agents"] if a["name"] == "worker")
        assert (again["node_id"], again["incarnation"]) == (agent["node_id"], agent["incarnation"])
        await manager.post(TEAM, "watched", {"content": "job", "recipients": ["worker"]})
        steps = await manager.step(TEAM, "watched", 3)
        assert steps[0]["acted"] == ["worker"] and not steps[0]["failed"]
        history = (await manager.describe(TEAM, "watched"))["history"]
        assert [(m["sender"], m["content"]) for m in history][-2:] == [
            ("user", "job"),
            ("worker", "done: job"),
        ]
    finally:
        await manager.shutdown()
