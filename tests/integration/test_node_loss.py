"""Losing a worker node costs only its sandboxes: the server's singletons and ingress come back elsewhere.

One `ray.cluster_utils.Cluster` on this machine (a head and two workers, one CPU each, with our node
health checks), a PostgreSQL registry, the whole server started as `toolserver up --address` starts it
(`start_server`), and real HTTP through Serve's proxies (they share the port with SO_REUSEPORT, so the
kernel spreads connections over them, as a load balancer would). The singletons (run scheduler, environment center) run on nodes with
the custom resource `ts_services` (`TOOLSERVER_SERVICE_RESOURCE`), which the head lacks, so their node
can be killed. Two rounds under a light steady load of shell calls, runs and memory writes:

1. SIGKILL the node that holds the singletons (and perhaps an ingress replica);
2. SIGKILL a node that holds an ingress replica.

After each round the killed machine "comes back": a new Ray node on the same Docker engine, which must
remove the dead node's containers. Each round prints the outage per service; the asserts are that every
service comes back (within a bound far above the measured times, so that a loaded machine never fails
the test), that no run and no memory item is lost, that a waiting run keeps waiting, and that a session
of a killed node answers 410 `session_lost`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from ray.cluster_utils import Cluster

from foundation.ray_health import NODE_HEALTH_CHECKS
from registry import Database, KeyStore
from sandbox import _labels
from toolserver.config import Settings
from toolserver.nodes.ray_actors import RAY_NAMESPACE, start_missing_node_actors
from toolserver.serve.app import mark_sessions_of_lost_nodes, start_server, stop_server

from .serverproc import free_port
from .test_cluster_routing import _remove_instance_dir, _remove_leftovers

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
SERVICES = "ts_services"
BACK_WITHIN_S = 120.0  # "it comes back"; the measured times are printed (docs/cluster.md)
QUICK = [{"tool_calls": [{"name": "shell", "arguments": {"command": "echo step"}}]}, "done"]
SLOW = [{"tool_calls": [{"name": "shell", "arguments": {"command": "sleep 6; echo slept"}}]}, "slept well"]
ASKS = [{"tool_calls": [{"name": "ask_human", "arguments": {"question": "go on?"}}]}, "went on"]


@dataclass
class Cl:
    cluster: Cluster
    settings: Settings
    instance_id: str
    url: str
    key: str
    docker: Any
    workers: dict[str, Any] = field(default_factory=dict)  # node id -> Ray node object

    def add_worker(self, services: bool) -> str:
        node = self.cluster.add_node(num_cpus=1, resources={SERVICES: 1} if services else {})
        self.cluster.wait_for_nodes()
        self.workers[node.node_id] = node
        return str(node.node_id)


@pytest.fixture(scope="module")
def cl(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: Any, sandbox_image: str, postgres_url: str
) -> Iterator[Cl]:
    if ray.is_initialized():
        pytest.skip("this process is already connected to another Ray instance")
    ray_tmp = tempfile.mkdtemp(prefix="rnl-", dir="/tmp")  # short: Ray puts unix sockets under it
    saved = {name: os.environ.get(name) for name in ("RAY_TMPDIR", "PYTHONPATH")}
    os.environ["RAY_TMPDIR"] = ray_tmp
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved["PYTHONPATH"]) if p)
    instance_id = ""
    # Our node health checks (foundation/ray_health.py): Ray declares the killed node dead in ~4 s, not ~15 s.
    head_args = {"num_cpus": 1, "include_dashboard": False, "_system_config": dict(NODE_HEALTH_CHECKS)}
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    settings = Settings(
        home=tmp_path_factory.mktemp("node-loss-home"),
        database_url=postgres_url,
        pool_size=0,
        sandbox_image=sandbox_image,
        port=free_port(),
        service_resource=SERVICES,
    )
    try:
        env = Cl(cluster, settings, "", "", "", docker_engine)
        env.add_worker(services=True)
        env.add_worker(services=True)  # somewhere for the singletons to go
        ray.init(
            address=cluster.address,
            namespace=RAY_NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        handle = start_server(settings)
        env.instance_id = instance_id = handle.instance_id
        env.url = handle.url
        db = Database(settings.database)
        try:
            _, env.key = KeyStore(db).create("team-loss", "node-loss")
        finally:
            db.close()
        yield env
    finally:
        try:
            stop_server(settings=settings, shutdown_ray=True)
        finally:
            cluster.shutdown()
            if instance_id:
                _remove_leftovers(docker_engine, instance_id)
                _remove_instance_dir(instance_id)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            shutil.rmtree(ray_tmp, ignore_errors=True)


def _actor_nodes() -> dict[str, set[str]]:
    """Node ids of the server's singletons and ingress replicas, by role (Ray's actor table)."""
    from ray._private import state

    roles: dict[str, set[str]] = {}
    for actor in state.actors().values():
        if actor["State"] != "ALIVE":
            continue
        name, cls = actor.get("Name") or "", actor.get("ActorClassName") or ""
        role = "ingress" if "ingress" in cls and "Replica" in cls else name
        if role in ("run-scheduler", "environment-center", "memory", "ingress"):
            roles.setdefault(role, set()).add(actor["Address"]["NodeID"])
    return roles


@pytest.fixture(scope="module")
async def client(cl: Cl) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {cl.key}"}
    # A new connection per request: one kept alive to a killed node's proxy would fail a later request.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=cl.url, headers=headers, timeout=60, limits=limits) as http:
        yield http


LAST_FAILURE: dict[str, str] = {}


async def _ok(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
    """The response when it is a success, else None (a failed connection counts as a failure).

    The timeout is long: while a singleton restarts, the ingress holds calls for it (retrying).
    """
    try:
        response = await http.request(method, path, timeout=60, **kwargs)
    except httpx.HTTPError as exc:
        LAST_FAILURE[path] = f"{type(exc).__name__}: {exc}"
        return None
    if response.status_code >= 300:
        LAST_FAILURE[path] = f"{response.status_code} {response.text[:300]}"
        return None
    return response


class Load:
    """A light steady load: a shell call, a memory write and (every third beat) a run, twice a second."""

    def __init__(self, http: httpx.AsyncClient, session_id: str) -> None:
        self.http, self.session_id = http, session_id
        self.runs: list[str] = []
        self.memories: dict[str, set[str]] = {}
        self.failed_at: dict[str, list[float]] = {"shell": [], "memory": [], "runs": []}
        self._task: asyncio.Task[None] | None = None

    async def _beat(self, i: int) -> None:
        shell = await _ok(
            self.http, "POST", f"/v1/sessions/{self.session_id}/shell", json={"command": "echo beat"}
        )
        if shell is None:
            self.failed_at["shell"].append(time.monotonic())
        text, scope = f"load note {i}", f"shared:load{i // 90}"  # a scope's listing shows its newest 100
        if await _ok(self.http, "POST", f"/v1/memory/{scope}", json={"text": text}) is None:
            self.failed_at["memory"].append(time.monotonic())
        else:
            self.memories.setdefault(scope, set()).add(text)
        if i % 3 == 0:
            body = {"agent": "quick", "task": f"beat {i}", "session_id": self.session_id}
            run = await _ok(self.http, "POST", "/v1/runs", json=body)
            if run is None:
                self.failed_at["runs"].append(time.monotonic())
            else:
                self.runs.append(run.json()["id"])

    async def _loop(self) -> None:
        i = 0
        while True:
            await self._beat(i)
            i += 1
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def outage(self, service: str, since: float) -> float:
        """Seconds from `since` to the last failure of `service` after it (0: none failed)."""
        late = [t for t in self.failed_at[service] if t >= since]
        return max(late) - since if late else 0.0


async def _until(check: Any, since: float) -> float:
    """Seconds from `since` until `check()` first succeeds; fails past BACK_WITHIN_S."""
    while not await check():
        assert time.monotonic() - since < BACK_WITHIN_S, f"{check.__name__} never came back: {LAST_FAILURE}"
        await asyncio.sleep(0.25)
    return time.monotonic() - since


async def _session_on(http: httpx.AsyncClient, nodes: set[str]) -> str:
    for _ in range(12):
        created = await http.post("/v1/sessions", json={})
        assert created.status_code == 201, created.text
        if created.json()["node_id"] in nodes:
            return str(created.json()["id"])
    raise AssertionError(f"no session landed on {nodes}")


def _containers(cl: Cl) -> list[Any]:
    return list(cl.docker.containers.list(all=True, filters=_labels.instance_filter(cl.instance_id)))


async def _run_status(http: httpx.AsyncClient, run_id: str) -> str:
    response = await http.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def _kill_and_measure(
    cl: Cl, http: httpx.AsyncClient, load: Load, victim: str, n: int, slow_session: str
) -> dict[str, float]:
    """SIGKILL `victim` and measure how long each service takes to answer again."""
    lost_session = await _session_on(http, {victim})
    slow = await http.post("/v1/runs", json={"agent": "slow", "task": "sleep", "session_id": slow_session})
    assert slow.status_code == 201, slow.text
    await asyncio.sleep(2.0)  # the slow run is inside its shell step when the node goes
    await asyncio.to_thread(cl.cluster.remove_node, cl.workers.pop(victim), False)
    lost_at = time.monotonic()

    async def api() -> bool:
        return await _ok(http, "GET", "/livez") is not None

    started: list[str] = []

    async def runs() -> bool:  # a run started after the loss has finished
        if not started:
            body = {"agent": "quick", "task": "after the loss", "session_id": load.session_id}
            run = await _ok(http, "POST", "/v1/runs", json=body)
            started.extend([run.json()["id"]] if run is not None else [])
        answer = await _ok(http, "GET", f"/v1/runs/{started[0]}") if started else None
        return answer is not None and answer.json()["status"] == "succeeded"

    async def interrupted_run() -> bool:  # the run that was executing resumed from its checkpoint
        answer = await _ok(http, "GET", f"/v1/runs/{slow.json()['id']}")
        status = answer.json()["status"] if answer is not None else "unknown"
        assert status in ("running", "succeeded", "unknown"), status
        return status == "succeeded"

    attempts = iter(range(10_000))

    async def environments() -> bool:
        # The environment made before any loss is there (rebuilt by a restarted center) and steps.
        message = {"content": "still there?", "recipients": ["echo"]}
        if await _ok(http, "POST", "/v1/environments/keeper/messages", json=message) is None:
            return False
        if await _ok(http, "POST", "/v1/environments/keeper/step", json={"steps": 1}) is None:
            return False
        # A new one can be made. A new name each time: a create that went through after the client
        # gave up holds its name.
        name = f"room{n}x{next(attempts)}"
        spec = {
            "name": name,
            "router": "broadcast",
            "agents": [{"kind": "echo", "name": "echo", "role": "scribe"}],
        }
        if await _ok(http, "POST", "/v1/environments", json=spec) is None:
            return False
        message = {"content": "hello", "recipients": ["echo"]}
        if await _ok(http, "POST", f"/v1/environments/{name}/messages", json=message) is None:
            return False
        return await _ok(http, "POST", f"/v1/environments/{name}/step", json={"steps": 1}) is not None

    async def memory_actor() -> bool:  # what agents on Ray use
        from agent_core.memory import memory_client

        try:
            await asyncio.wait_for(memory_client().search("team-loss", "shared:load0", "note", 1), 10)
        except Exception as exc:
            LAST_FAILURE["memory actor"] = repr(exc)
            return False
        return True

    checks = {
        "api": api,
        "runs": runs,
        "interrupted run": interrupted_run,
        "environments": environments,
        "memory actor": memory_actor,
    }
    done = await asyncio.gather(*(_until(check, lost_at) for check in checks.values()))
    times = dict(zip(checks, done, strict=True))
    # A session of the dead node: 503 for the call that finds its node gone, 410 from then on.
    statuses = []
    for _ in range(3):
        answer = await http.post(f"/v1/sessions/{lost_session}/shell", json={"command": "echo hi"})
        statuses.append(answer.status_code)
        if answer.status_code == 410:
            assert answer.json()["error"]["type"] == "session_lost"
            assert answer.json()["error"]["node_id"] == victim
            break
    assert statuses[-1] == 410, statuses
    await asyncio.sleep(1.0)  # the load notices the last failures
    times.update(
        {f"{name} calls failing": load.outage(name, lost_at) for name in ("shell", "memory", "runs")}
    )
    return times


async def test_each_singletons_node_and_an_ingress_node_can_be_lost(
    cl: Cl, client: httpx.AsyncClient
) -> None:
    http = client
    assert cl.cluster.head_node is not None
    head = str(cl.cluster.head_node.node_id)
    for name, replies in (("quick", QUICK), ("slow", SLOW), ("asker", ASKS)):
        body = {
            "name": name,
            "tools": ["shell", "ask_human"],
            "llm": {"provider": "scripted", "replies": replies},
        }
        assert (await http.post("/v1/agents", json=body)).status_code == 201
    roles = _actor_nodes()
    assert len(roles["ingress"]) == 2, roles  # two replicas on distinct nodes, by default on a cluster
    print(f"\nplacement before: {roles}")
    # The load's session lives on the head, which no round kills.
    session_id = await _session_on(http, {head})
    slow_session = await _session_on(http, {head})  # the slow run's shell, apart from the load's
    waiting = (
        await http.post("/v1/runs", json={"agent": "asker", "task": "ask", "session_id": session_id})
    ).json()
    keeper = {
        "name": "keeper",
        "router": "broadcast",
        "agents": [{"kind": "echo", "name": "echo", "role": "scribe"}],
    }
    assert (await http.post("/v1/environments", json=keeper)).status_code == 201
    load = Load(http, session_id)
    await load._beat(0)  # everything works before any loss
    assert not any(load.failed_at.values()) and load.runs, LAST_FAILURE
    load.start()
    measured: list[dict[str, float]] = []
    dead: list[str] = []
    try:
        for n in range(2):
            roles = _actor_nodes()
            if n == 0:
                (victim,) = roles["run-scheduler"]
                assert victim != head and roles["environment-center"] == {victim}
            else:
                victim = next(iter(roles["ingress"] - {head}))
            times = await _kill_and_measure(cl, http, load, victim, n, slow_session)
            dead.append(victim)
            print(
                f"round {n + 1}: killed {victim[:12]} holding {[r for r, ns in roles.items() if victim in ns]}"
            )
            print("  seconds after the kill: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
            measured.append(times)
            # The machine comes back: a new Ray node on the same engine, once Ray knows the old one dead.
            deadline = time.monotonic() + BACK_WITHIN_S
            while victim in {node["NodeID"] for node in ray.nodes() if node.get("Alive")}:
                assert time.monotonic() < deadline, "Ray never declared the node dead"
                await asyncio.sleep(0.5)
            assert any(c.labels.get(_labels.NODE) == victim for c in _containers(cl))
            cl.add_worker(services=True)
            # What `toolserver up` does every 10 s: sessions of dead nodes lost, managers for nodes that joined.
            await asyncio.to_thread(mark_sessions_of_lost_nodes, cl.settings)
            await asyncio.to_thread(start_missing_node_actors, cl.settings, cl.instance_id)
            assert not any(c.labels.get(_labels.NODE) == victim for c in _containers(cl))
    finally:
        await load.stop()
    print(f"placement after: {_actor_nodes()}")
    # The waiting run kept waiting through both losses, and an answer resumes it.
    assert await _run_status(http, waiting["id"]) == "waiting_human"
    pending = (await http.get("/v1/human-requests", params={"status": "pending"})).json()
    request = next(r for r in pending["requests"] if r["run_id"] == waiting["id"])
    answered = await http.post(f"/v1/human-requests/{request['id']}/answer", json={"answer": "yes"})
    assert answered.status_code == 200, answered.text
    # No run and no memory item the load was told about is lost.
    for run_id in [*load.runs, waiting["id"]]:
        while (status := await _run_status(http, run_id)) in ("running",):
            await asyncio.sleep(0.5)
        assert status == "succeeded", (run_id, status)
    for scope, texts in load.memories.items():
        stored = (await http.get(f"/v1/memory/{scope}", params={"k": 100})).json()
        assert texts <= {item["text"] for item in stored["items"]}, scope
    # `toolserver down`: no container is left, of a living node or of a dead one (the machine came back on
    # this engine, and its new manager removed the dead node's containers).
    await asyncio.to_thread(stop_server, settings=cl.settings, shutdown_ray=False)
    assert [c.labels.get(_labels.NODE) for c in _containers(cl)] == []
    writes = sum(len(texts) for texts in load.memories.values())
    print(f"load: {len(load.runs)} runs, {writes} memory writes; all kept")
