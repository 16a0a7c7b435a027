"""Cross-node routing on a real three-node Ray cluster: placement, calls from any node, node loss.

A `ray.cluster_utils.Cluster` on this machine (head + node_a + node_b, one CPU each) with its own Ray
temp directory, so it never meets another Ray instance running here. One sandbox manager actor runs
on each node; all three share this machine's single Docker engine, so containers are told apart by
their `toolserver.node` label (and, inside, by the TOOLSERVER_NODE variable their manager set).
The services run in the test process over a SQLite registry and find the managers through Ray.

Three tests cover gaps first found here: a burst of creates spreading over the nodes, sessions on a
lost node marked lost without anyone calling them, and a manager for a node that joins later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from ray.cluster_utils import Cluster

from foundation.errors import NotFound, Unavailable
from registry import Database, KeyStore
from sandbox import _hostdirs, _labels
from sandbox.base import SandboxSpec
from sandbox.config import SandboxConfig
from toolserver.api.requests import SessionCreate
from toolserver.config import Settings
from toolserver.http.app import Services, build_services
from toolserver.http.health import HealthSummary
from toolserver.http.routes.system import healthz
from toolserver.nodes.ray_actors import RAY_NAMESPACE, RayNodes, start_node_actors, stop_node_actors
from toolserver.service.principal import Principal

from .serverproc import free_port

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
TEAM = Principal(namespace="team-route", key_id="key-route")
FAIL_FAST_S = 10.0  # a call on a lost node must fail well within this, not hang


@dataclass
class Env:
    cluster: Cluster
    head: str
    node_a: str
    node_b: str
    settings: Settings
    instance_id: str
    services: Services
    docker: Any
    worker_b: Any = None  # the Ray node object of node_b, for remove_node
    placed: dict[str, str] = field(default_factory=dict)  # session id -> node id, from the registry
    idle_on_b: str = ""  # a session on node_b that nobody calls after the node is lost

    def containers(self, node_id: str | None = None) -> list[Any]:
        found = self.docker.containers.list(all=True, filters=_labels.instance_filter(self.instance_id))
        return [c for c in found if node_id is None or c.labels.get(_labels.NODE) == node_id]


def _remove_leftovers(docker: Any, instance_id: str, node_id: str | None = None) -> int:
    """Remove this run's containers (of one node, or all) and their host directories; returns how many."""
    removed = 0
    for container in docker.containers.list(all=True, filters=_labels.instance_filter(instance_id)):
        if node_id is not None and container.labels.get(_labels.NODE) != node_id:
            continue
        private = next(
            (
                os.path.dirname(m["Source"])
                for m in container.attrs.get("Mounts", [])
                if m["Destination"] == "/sbx"
            ),
            None,
        )
        container.remove(force=True)
        if private:
            _hostdirs.remove_dirs(private)  # unmounts the session's /sbx tmpfs too
        removed += 1
    return removed


def _remove_instance_dir(instance_id: str) -> None:
    root = os.path.join(SandboxConfig().runtime_dir, instance_id)
    if not os.path.isdir(root):
        return
    with open("/proc/self/mountinfo") as fh:
        mounts = [line.split()[4] for line in fh]
    for mount in mounts:
        if mount.startswith(root + os.sep):
            subprocess.run(["umount", "-l", mount], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, docker_engine: Any, sandbox_image: str) -> Iterator[Env]:
    if ray.is_initialized():
        pytest.skip("this process is already connected to another Ray instance")
    ray_tmp = tempfile.mkdtemp(prefix="rrt-", dir="/tmp")  # short: Ray puts unix sockets under it
    saved = {name: os.environ.get(name) for name in ("RAY_TMPDIR", "PYTHONPATH")}
    os.environ["RAY_TMPDIR"] = ray_tmp
    # Workers import this module (for the pinned task below) from the checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved["PYTHONPATH"]) if p)
    instance_id = f"route-{secrets.token_hex(4)}"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    db = None
    try:
        node_a = cluster.add_node(num_cpus=1, resources={"node_a": 1})
        node_b = cluster.add_node(num_cpus=1, resources={"node_b": 1})
        cluster.wait_for_nodes()
        assert cluster.head_node is not None
        head = cluster.head_node.node_id
        ray.init(
            address=cluster.address,
            namespace=RAY_NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        settings = Settings(
            home=tmp_path_factory.mktemp("route-home"), pool_size=0, sandbox_image=sandbox_image
        )
        reports = start_node_actors(settings, instance_id, {})
        assert set(reports) == {head, node_a.node_id, node_b.node_id}
        db = Database(settings.database)
        yield Env(
            cluster=cluster,
            head=head,
            node_a=node_a.node_id,
            node_b=node_b.node_id,
            settings=settings,
            instance_id=instance_id,
            services=build_services(settings, db, RayNodes()),
            docker=docker_engine,
            worker_b=node_b,
        )
    finally:
        try:
            if ray.is_initialized():
                stop_node_actors()
        finally:
            ray.shutdown()
            cluster.shutdown()
            if db is not None:
                db.close()
            _remove_leftovers(docker_engine, instance_id)
            _remove_instance_dir(instance_id)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
async def placed(env: Env) -> dict[str, str]:
    """Six sessions created one after another through the session service."""
    if not env.placed:
        for _ in range(6):
            view = await env.services.sessions.create(TEAM, SessionCreate())
            env.placed[view["id"]] = view["node_id"]
    return env.placed


def _on(placed: dict[str, str], node_id: str) -> list[str]:
    return [sid for sid, node in placed.items() if node == node_id]


async def _create_on(env: Env, node_id: str) -> str:
    """A session on a given node, recorded as SessionService.create records one, without placement."""
    manager = await env.services.nodes.node(node_id)
    spec = SandboxSpec(limits=env.services.sessions.default_limits, owner=TEAM.namespace)
    info = await manager.create(spec, 3600.0)
    await asyncio.to_thread(
        env.services.sessions.store.create,
        TEAM.namespace,
        session_id=info.session_id,
        node_id=info.node_id,
        container_id=info.container_id,
        image=info.image,
        network=info.network,
        status="running",
        ttl_s=3600.0,
    )
    return info.session_id


async def test_sessions_spread_over_all_three_nodes_and_run_there(env: Env, placed: dict[str, str]) -> None:
    # Fewest running sandboxes wins, so six sessions in a row go two to each node.
    assert Counter(placed.values()) == {env.head: 2, env.node_a: 2, env.node_b: 2}
    store = env.services.sessions.store
    for session_id, node_id in placed.items():
        record = await asyncio.to_thread(store.get, TEAM.namespace, session_id)
        assert (record.node_id, record.status) == (node_id, "running")
        # The variable was set by the manager that started the container: the call ran on that node.
        result = await env.services.sessions.shell(TEAM, session_id, "echo $TOOLSERVER_NODE", 20)
        assert (result.exit_code, result.output.strip()) == (0, record.node_id)
        container = env.docker.containers.get(f"tsbx-{session_id}")
        assert container.id == record.container_id
        assert container.labels[_labels.NODE] == record.node_id
        assert container.labels[_labels.SESSION] == session_id
    # Each node's manager holds exactly the sessions the registry puts on its node.
    for node_id in (env.head, env.node_a, env.node_b):
        manager = await env.services.nodes.node(node_id)
        assert {info.session_id for info in await manager.sessions()} == set(_on(placed, node_id))
        assert (await manager.stats())["node_id"] == node_id


async def test_healthz_shows_per_node_counts(env: Env, placed: dict[str, str]) -> None:
    by_node = {s["node_id"]: s for s in await RayNodes().stats()}
    assert set(by_node) == {env.head, env.node_a, env.node_b}
    for node_id, stats in by_node.items():
        assert stats["sandboxes_running"] == len(_on(placed, node_id)) == 2
        assert (stats["pool_ready"], stats["pool_size"]) == (0, 0)
    body = await healthz(svc=env.services, summary=HealthSummary())  # the GET /healthz handler itself
    assert (body["status"], body["ray_nodes"], body["sandboxes_running"]) == ("ok", 3, 6)
    assert sorted(n["node_id"] for n in body["nodes"]) == sorted(by_node)


@ray.remote(num_cpus=0, resources={"node_a": 0.01})
def _calls_from_node_a(settings: dict[str, Any], session_id: str) -> dict[str, Any]:
    """Runs on node_a: its own services, its own node directory, the same registry."""

    async def calls() -> dict[str, Any]:
        db = Database(Settings(**settings).database)
        try:
            services = build_services(Settings(**settings), db, RayNodes())
            sessions = services.sessions
            shell = await sessions.shell(TEAM, session_id, "echo $TOOLSERVER_NODE", 20)
            python = await sessions.python(
                TEAM, session_id, "import os; print(os.environ['TOOLSERVER_NODE'])", 20
            )
            await sessions.write_file(TEAM, session_id, "from-a.txt", b"written from node_a")
            listed = [e.path for e in await sessions.list_files(TEAM, session_id, "")]
            tool = await services.tools.call(TEAM, "shell", {"command": "cat from-a.txt"}, session_id)
            return {
                "shell": shell.output.strip(),
                "python": python.stdout.strip(),
                "files": listed,
                "tool": tool,
                "read_back": await sessions.read_file(TEAM, session_id, "from-a.txt"),
            }
        finally:
            db.close()

    out = asyncio.run(calls())
    out["ran_on"] = ray.get_runtime_context().get_node_id()
    return out


async def test_calls_from_a_task_on_node_a_reach_the_sandbox_on_node_b(
    env: Env, placed: dict[str, str]
) -> None:
    session_id = _on(placed, env.node_b)[0]
    ref = _calls_from_node_a.remote(env.settings.model_dump(mode="json"), session_id)
    out = await asyncio.wait_for(asyncio.wrap_future(ref.future()), 120)
    assert out["ran_on"] == env.node_a != env.node_b
    assert out["shell"] == out["python"] == env.node_b  # shell and kernel both ran on node_b
    assert "from-a.txt" in out["files"]
    assert out["read_back"] == b"written from node_a"
    assert out["tool"]["ok"] and out["tool"]["result"]["output"] == "written from node_a"
    # The file really is in node_b's container, as the driver (on the head) sees it.
    assert await env.services.sessions.read_file(TEAM, session_id, "from-a.txt") == b"written from node_a"


@contextlib.asynccontextmanager
async def _serve_ingress_on_node_a(env: Env) -> AsyncIterator[str]:
    """The real ingress deployment, its one replica pinned to node_a, behind the head's HTTP proxy.

    The same sequence as `start_server`, minus reconciling the node managers (they already run) and with
    one proxy on the head only: every node of this cluster shares this machine's ports.
    """
    from ray import serve

    from agent_core.memory import start_memory_actor
    from toolserver.runs.ray_actor import start_scheduler
    from toolserver.serve.app import ToolServerIngress, stop_server
    from toolserver.service.environment_center import start_center

    port = free_port()
    env_vars = {
        f"TOOLSERVER_{k.upper()}": str(v)
        for k, v in env.settings.model_dump(mode="json").items()
        if v is not None
    }
    try:
        await asyncio.to_thread(start_scheduler, env.settings, RAY_NAMESPACE)
        await asyncio.to_thread(start_memory_actor, env.settings.database)
        await asyncio.to_thread(start_center, env.settings, RAY_NAMESPACE)
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        app = ToolServerIngress.options(  # type: ignore[attr-defined]
            num_replicas=1,
            ray_actor_options={
                "num_cpus": 0,
                "resources": {"node_a": 0.01},
                "runtime_env": {"env_vars": env_vars},
            },
        ).bind()
        await asyncio.to_thread(serve.run, app, name="route-test", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        # Serve and the server's actors go; the node managers, their sandboxes and Ray stay.
        await asyncio.to_thread(stop_server, remove_sandboxes=False, shutdown_ray=False)


async def test_http_through_serve_routes_from_node_a_to_node_b(env: Env, placed: dict[str, str]) -> None:
    db = Database(env.settings.database)
    try:
        _, key = await asyncio.to_thread(KeyStore(db).create, TEAM.namespace, "http")
    finally:
        db.close()
    session_id = _on(placed, env.node_b)[1]
    async with _serve_ingress_on_node_a(env) as url:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
            health = (await client.get("/healthz")).json()
            assert {n["node_id"]: n["sandboxes_running"] for n in health["nodes"]} == {
                env.head: 2,
                env.node_a: 2,
                env.node_b: 2,
            }
            response = await client.post(
                f"/v1/sessions/{session_id}/shell", json={"command": "echo $TOOLSERVER_NODE"}
            )
            assert response.status_code == 200, response.text
            assert response.json()["output"].strip() == env.node_b
            listed = (await client.get("/v1/sessions")).json()
            assert {s["id"]: s["node_id"] for s in listed["sessions"]} == placed


async def test_a_burst_of_creates_spreads_over_the_nodes(env: Env, placed: dict[str, str]) -> None:
    sessions = env.services.sessions
    assert Counter(placed.values()) == {env.head: 2, env.node_a: 2, env.node_b: 2}
    outcomes = await asyncio.gather(
        *(sessions.create(TEAM, SessionCreate()) for _ in range(3)), return_exceptions=True
    )
    views = [o for o in outcomes if isinstance(o, dict)]
    try:
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        # Three nodes with two sandboxes each: three creates at once should go one to each.
        assert Counter(v["node_id"] for v in views) == {env.head: 1, env.node_a: 1, env.node_b: 1}
    finally:
        for view in views:
            await sessions.delete(TEAM, view["id"])


async def test_a_lost_node_fails_fast_and_the_rest_keeps_serving(env: Env, placed: dict[str, str]) -> None:
    sessions = env.services.sessions
    on_b = _on(placed, env.node_b)
    living = [sid for sid in placed if sid not in on_b]
    try:
        env.idle_on_b = await _create_on(env, env.node_b)
        assert len(on_b) == 2 and len(env.containers(env.node_b)) == 3
        # A call in flight when the node dies, and a fresh call after.
        in_flight = asyncio.create_task(sessions.shell(TEAM, on_b[0], "sleep 120", 180))
        await asyncio.sleep(1.0)
        assert not in_flight.done()
        # Not graceful: the raylet and the manager are SIGKILLed, as when a machine dies.
        await asyncio.to_thread(env.cluster.remove_node, env.worker_b, False)
        lost_at = time.monotonic()

        with pytest.raises(Unavailable) as in_flight_error:
            await asyncio.wait_for(in_flight, FAIL_FAST_S * 3)
        in_flight_s = time.monotonic() - lost_at

        started = time.monotonic()
        with pytest.raises(Unavailable) as fresh_error:
            await asyncio.wait_for(sessions.shell(TEAM, on_b[1], "echo hi", 20), FAIL_FAST_S * 3)
        fresh_s = time.monotonic() - started
        print(
            f"\nnode loss: in-flight call failed after {in_flight_s:.2f} s, a fresh call after {fresh_s:.2f} s"
        )
        assert in_flight_s < FAIL_FAST_S and fresh_s < FAIL_FAST_S
        for error, session_id in ((in_flight_error, on_b[0]), (fresh_error, on_b[1])):
            message = error.value.message
            assert env.node_b[:12] in message or session_id in message, message
            assert "lost" in message, message

        for session_id in on_b:
            record = await asyncio.to_thread(sessions.store.get, TEAM.namespace, session_id)
            assert record.status == "lost"
            # From now on the registry answers alone, without asking the dead node.
            started = time.monotonic()
            with pytest.raises(NotFound, match="is lost"):
                await sessions.shell(TEAM, session_id, "echo hi", 20)
            assert time.monotonic() - started < 1.0
        # The idle session was never called, so nothing has marked it yet: it is still listed.
        assert {s["id"] for s in await sessions.list(TEAM)} == {*living, env.idle_on_b}

        # New sessions go to the living nodes only; the old ones there keep working.
        started = time.monotonic()
        assert await env.services.nodes.choose() in (env.head, env.node_a)
        print(
            f"placement {time.monotonic() - lost_at:.1f} s after the loss took {time.monotonic() - started:.2f} s"
        )
        fresh = []
        for _ in range(2):
            started = time.monotonic()
            fresh.append(await sessions.create(TEAM, SessionCreate()))
            print(
                f"create {time.monotonic() - lost_at:.1f} s after the loss took {time.monotonic() - started:.2f} s"
            )
        assert {view["node_id"] for view in fresh} <= {env.head, env.node_a}
        for view in fresh:
            placed[view["id"]] = view["node_id"]
        for session_id in [*living, *(v["id"] for v in fresh)]:
            result = await sessions.shell(TEAM, session_id, "echo $TOOLSERVER_NODE", 20)
            assert result.output.strip() == placed[session_id] != env.node_b
        # Health leaves the dead node out at once (it does not answer); Ray's own view catches up
        # when its health checks declare the node dead.
        by_node = {s["node_id"]: s["sandboxes_running"] for s in await RayNodes().stats()}
        assert by_node == {env.head: 3, env.node_a: 3}
        while env.node_b in await RayNodes().node_ids():
            assert time.monotonic() - lost_at < 120, "Ray never declared the removed node dead"
            await asyncio.sleep(0.5)
        print(f"Ray declared node_b dead {time.monotonic() - lost_at:.1f} s after it was killed")
    finally:
        # The dead manager cannot remove its containers; on this shared engine they are still here.
        removed = await asyncio.to_thread(_remove_leftovers, env.docker, env.instance_id, env.node_b)
    assert removed == 3
    assert env.containers(env.node_b) == []


async def test_sessions_nobody_calls_on_a_lost_node_are_marked_lost(env: Env) -> None:
    assert env.idle_on_b, "runs after the node-loss test"
    assert env.node_b not in {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    store = env.services.sessions.store
    assert (await asyncio.to_thread(store.get, TEAM.namespace, env.idle_on_b)).status == "running"

    from toolserver.serve.app import mark_sessions_of_lost_nodes

    assert await asyncio.to_thread(mark_sessions_of_lost_nodes, env.settings) == [env.idle_on_b]
    assert (await asyncio.to_thread(store.get, TEAM.namespace, env.idle_on_b)).status == "lost"
    assert env.idle_on_b not in {s["id"] for s in await env.services.sessions.list(TEAM)}
    assert await asyncio.to_thread(mark_sessions_of_lost_nodes, env.settings) == []


async def test_a_node_that_joins_later_gets_a_sandbox_manager(env: Env, placed: dict[str, str]) -> None:
    # In this thread: starting a node installs signal handlers, which only the main thread may.
    node_c = env.cluster.add_node(num_cpus=1, resources={"node_c": 1})
    env.cluster.wait_for_nodes()
    # Today: the node is alive in Ray, but no manager runs there, so no session can be placed on it.
    assert node_c.node_id in {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    assert node_c.node_id not in await RayNodes().node_ids()

    from toolserver.nodes.ray_actors import start_missing_node_actors

    started = await asyncio.to_thread(start_missing_node_actors, env.settings, env.instance_id)
    assert started == [node_c.node_id]
    assert await asyncio.to_thread(start_missing_node_actors, env.settings, env.instance_id) == []
    deadline = time.monotonic() + 30
    while node_c.node_id not in await env.services.nodes.node_ids():  # the directory caches its list briefly
        assert time.monotonic() < deadline
        await asyncio.sleep(0.5)
    view = await env.services.sessions.create(TEAM, SessionCreate())
    assert view["node_id"] == node_c.node_id  # the empty node has the fewest running sandboxes
    result = await env.services.sessions.shell(TEAM, view["id"], "echo $TOOLSERVER_NODE", 20)
    assert result.output.strip() == node_c.node_id
