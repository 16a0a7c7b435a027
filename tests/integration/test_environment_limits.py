"""One tenant cannot exhaust the environment center nor the ingress, on the real server (Ray actors, Serve).

Environments, their agents (each a Ray actor: a worker process) and open streams are capped per
namespace: past a cap the tenant gets 429 `quota_exceeded` and nothing starts, while another tenant's
calls and /healthz keep answering; a stream ends at its lifetime with a `reconnect` event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.serverproc import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.ray]

MAX_ENVIRONMENTS, MAX_AGENTS, MAX_STREAMS, LIFETIME_S = 2, 4, 3, 6.0


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image) -> Iterator[ServerProcess]:
    env = {
        "TOOLSERVER_POOL_SIZE": "0",
        "TOOLSERVER_MAX_ENVIRONMENTS_PER_NAMESPACE": str(MAX_ENVIRONMENTS),
        "TOOLSERVER_MAX_ENV_AGENTS_PER_NAMESPACE": str(MAX_AGENTS),
        "TOOLSERVER_MAX_STREAMS_PER_NAMESPACE": str(MAX_STREAMS),
        "TOOLSERVER_MAX_STREAM_S": str(LIFETIME_S),
    }
    proc = ServerProcess(tmp_path_factory.mktemp("tshome-limits"), env=env)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tenants(server) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    admin = {"Authorization": f"Bearer {server.admin_key}"}
    clients = []
    for namespace in ("team-a", "team-b"):
        made = httpx.post(f"{server.url}/v1/keys", json={"namespace": namespace}, headers=admin, timeout=30)
        assert made.status_code == 201, made.text
        headers = {"Authorization": f"Bearer {made.json()['key']}"}
        clients.append(httpx.Client(base_url=server.url, headers=headers, timeout=120))
    yield clients[0], clients[1]
    for client in clients:
        client.close()


def _room(name: str, agents: int) -> dict:
    return {
        "name": name,
        "router": "broadcast",
        "agents": [{"kind": "echo", "name": f"e{i}", "role": "r"} for i in range(agents)],
    }


def _agent_processes() -> int:
    """Live agent actors on this machine: Ray names each worker process after its actor class."""
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            count += cmdline.read_bytes().startswith(b"ray::AgentActor")
        except OSError:
            continue
    return count


def _quota(response: httpx.Response, setting: str) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["type"] == "quota_exceeded" and error["setting"] == setting, error


def test_environment_and_agent_caps_per_namespace(tenants):
    a, b = tenants
    before = _agent_processes()
    assert a.post("/v1/environments", json=_room("one", 1)).status_code == 201
    # More agents than the namespace may hold: refused before any actor starts.
    _quota(
        a.post("/v1/environments", json=_room("crowd", MAX_AGENTS)), "TOOLSERVER_MAX_ENV_AGENTS_PER_NAMESPACE"
    )
    assert a.post("/v1/environments", json=_room("two", 1)).status_code == 201
    _quota(a.post("/v1/environments", json=_room("three", 1)), "TOOLSERVER_MAX_ENVIRONMENTS_PER_NAMESPACE")
    # One request body cannot ask for hundreds of agents at all.
    huge = a.post("/v1/environments", json=_room("huge", 65))
    assert huge.status_code == 422 and huge.json()["error"]["type"] == "validation_error", huge.text
    assert sorted(a.get("/v1/environments").json()["environments"]) == ["one", "two"]
    # The other tenant's caps are its own: it creates while team-a is full.
    started = time.monotonic()
    assert b.get("/healthz").status_code == 200
    assert b.post("/v1/environments", json=_room("theirs", MAX_AGENTS)).status_code == 201
    assert time.monotonic() - started < 90
    assert _agent_processes() - before <= 2 + MAX_AGENTS  # team-a's two agents and team-b's four
    # Removing gives the room back.
    assert a.delete("/v1/environments/two").status_code == 204
    assert a.post("/v1/environments", json=_room("three", 3)).status_code == 201
    for client, names in ((a, ("one", "three")), (b, ("theirs",))):
        for name in names:
            assert client.delete(f"/v1/environments/{name}").status_code == 204
    deadline = time.monotonic() + 30
    while _agent_processes() > before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _agent_processes() <= before  # the actors of removed environments are gone


def test_a_tenant_holding_its_streams_gets_429_while_others_keep_answering(tenants):
    a, b = tenants
    for client in (a, b):
        assert client.post("/v1/environments", json=_room("watched", 1)).status_code == 201
    asked = a.post("/v1/tools/ask_human/call", json={"arguments": {"question": "ok?"}})
    assert asked.status_code == 202, asked.text
    held = []
    try:
        for _ in range(MAX_STREAMS):
            response = a.send(a.build_request("GET", "/v1/environments/watched/events"), stream=True)
            assert response.status_code == 200
            held.append(response)
        refused = a.get("/v1/environments/watched/events")
        _quota(refused, "TOOLSERVER_MAX_STREAMS_PER_NAMESPACE")
        poll = a.get(f"/v1/human-requests/{asked.json()['request_id']}", params={"wait_s": 60})
        _quota(poll, "TOOLSERVER_MAX_STREAMS_PER_NAMESPACE")
        started = time.monotonic()
        assert httpx.get(f"{a.base_url}/healthz", timeout=30).status_code == 200
        assert b.get("/v1/environments").json()["environments"] == ["watched"]
        with b.stream("GET", "/v1/environments/watched/events", params={"follow": "false"}) as theirs:
            assert theirs.status_code == 200
        assert time.monotonic() - started < 30
    finally:
        for response in held:
            response.close()
    # The slots come back when the clients go away (the replica notices the disconnect).
    deadline = time.monotonic() + 30
    while True:
        again = a.get("/v1/environments/watched/events", params={"follow": "false"})
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert again.status_code == 200, again.text
    for client in (a, b):
        assert client.delete("/v1/environments/watched").status_code == 204


def test_a_stream_ends_cleanly_at_its_lifetime(tenants):
    a, _ = tenants
    assert a.post("/v1/environments", json=_room("timed", 1)).status_code == 201
    started = time.monotonic()
    events = []
    with a.stream("GET", "/v1/environments/timed/events", timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
    assert events == ["reconnect"]
    assert LIFETIME_S - 1 < time.monotonic() - started < LIFETIME_S + 60
    assert a.delete("/v1/environments/timed").status_code == 204
