"""Ports from any ingress replica: on a real three-node Ray cluster, the replica runs on node_a and the sandbox
on node_b, so its HTTP and WebSocket traffic is relayed by node_b's manager (`toolserver.nodes.port_relay`).

The cluster, its managers and the Serve ingress pinned to node_a are those of `test_cluster_routing`. A
session on node_a itself is proxied straight to its guest daemon, as on one machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from foundation.actors import find_actor
from registry import Database, KeyStore
from toolserver.nodes.ray_actors import RAY_NAMESPACE

from .test_cluster_routing import TEAM, Env, _create_on, _serve_ingress_on_node_a, env

__all__ = ["env"]  # the cluster fixture, shared with test_cluster_routing

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

APP = Path(__file__).with_name("sandbox_webapp.py").read_bytes()


async def _relayed_by(node_id: str) -> int:
    """How many connections the manager of `node_id` has relayed for replicas elsewhere."""
    handle = find_actor("sandbox-node-" + node_id, RAY_NAMESPACE)
    stats = await asyncio.wrap_future(handle.port_relay_stats.remote().future())
    return int(stats["relayed"])


async def _wait_for_line(http: httpx.AsyncClient, session: str, pid: int, text: str) -> None:
    offset, seen = 0, ""
    while text not in seen:
        out = await http.get(
            f"/v1/sessions/{session}/processes/{pid}/output", params={"offset": offset, "wait_s": 20}
        )
        body = out.json()
        seen += "".join(c["data"] for c in body["chunks"])
        offset = body["next_offset"]
        assert not body["done"], seen


async def _with_apps(http: httpx.AsyncClient, session: str) -> None:
    """The echo app on 8080 and `python -m http.server` on 8000, started through the API."""
    assert (await http.put(f"/v1/sessions/{session}/files/app.py", content=APP)).status_code == 200
    hello = await http.put(f"/v1/sessions/{session}/files/site/hello.txt", content=b"hello from node b\n")
    assert hello.status_code == 200
    app = (
        await http.post(f"/v1/sessions/{session}/processes", json={"command": "python3 app.py 8080"})
    ).json()
    await _wait_for_line(http, session, app["pid"], "ready")
    site = await http.post(
        f"/v1/sessions/{session}/processes",
        json={"command": "python3 -m http.server 8000 --bind 127.0.0.1", "cwd": "site"},
    )
    await _wait_for_line(http, session, site.json()["pid"], "Serving HTTP")


@pytest.fixture(scope="module")
async def served(env: Env) -> AsyncIterator[dict[str, Any]]:
    """The ingress on node_a, a key, and a session with its apps on node_b and on node_a."""
    db = Database(env.settings.database)
    try:
        _, key = await asyncio.to_thread(KeyStore(db).create, TEAM.namespace, "ports")
    finally:
        db.close()
    sessions = {"b": await _create_on(env, env.node_b), "a": await _create_on(env, env.node_a)}
    async with _serve_ingress_on_node_a(env) as url:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            for session in sessions.values():
                await _with_apps(http, session)
            yield {"url": url, "key": key, "http": http, "sessions": sessions}


@pytest.mark.parametrize("where", ["b", "a"])
async def test_http_reaches_the_port_from_the_replica_on_any_node(
    env: Env, served: dict[str, Any], where: str
) -> None:
    http, session = served["http"], served["sessions"][where]
    record = await asyncio.to_thread(env.services.sessions.store.get, TEAM.namespace, session)
    assert record.node_id == {"a": env.node_a, "b": env.node_b}[where]
    relayed_before = await _relayed_by(record.node_id)
    hello = await http.get(f"/v1/sessions/{session}/ports/8000/hello.txt")
    assert hello.status_code == 200, hello.text
    assert hello.text == "hello from node b\n"
    echo = (await http.get(f"/v1/sessions/{session}/ports/8080/some/where", params={"q": "1"})).json()
    assert echo["path"] == "/some/where?q=1"
    assert "authorization" not in {k.lower() for k in echo["headers"]}
    body = bytes(range(256)) * 8000  # 2 MB up, through the relay
    posted = (await http.post(f"/v1/sessions/{session}/ports/8080/upload", content=body)).json()
    assert posted["received"] == len(body)
    async with http.stream("GET", f"/v1/sessions/{session}/ports/8080/stream") as streamed:
        assert streamed.status_code == 200
        assert "".join([t async for t in streamed.aiter_text()]) == "".join(f"chunk {i}\n" for i in range(5))
    closed = await http.get(f"/v1/sessions/{session}/ports/8999/")
    assert closed.status_code == 502, closed.text
    relayed = await _relayed_by(record.node_id) - relayed_before
    # node_b's manager carried every connection (four) of the replica on node_a; node_a's own, none.
    assert relayed == (4 if where == "b" else 0)


async def test_a_websocket_echoes_through_the_replica_on_the_other_node(
    env: Env, served: dict[str, Any]
) -> None:
    session = served["sessions"]["b"]
    relayed_before = await _relayed_by(env.node_b)
    url = served["url"].replace("http://", "ws://") + f"/v1/sessions/{session}/ports/8080/ws"
    auth = {"Authorization": f"Bearer {served['key']}"}
    async with ws_connect(url, additional_headers=auth, max_size=1 << 20) as ws:
        for message in ("hello", "x" * 100_000):
            await ws.send(message)
            assert await ws.recv() == message
        await ws.send(b"\x00\x01binary")
        assert await ws.recv() == b"\x00\x01binary"
    assert await _relayed_by(env.node_b) == relayed_before + 1
    with pytest.raises(InvalidStatus):
        async with ws_connect(url):  # no key, no handshake
            pass


async def test_a_shared_url_works_through_the_replica_on_the_other_node(served: dict[str, Any]) -> None:
    http, session = served["http"], served["sessions"]["b"]
    share = await http.post(f"/v1/sessions/{session}/ports/8000/share", json={"ttl_s": 600})
    assert share.status_code == 201, share.text
    async with httpx.AsyncClient(timeout=30) as browser:  # no API key
        assert (await browser.get(share.json()["url"] + "hello.txt")).text == "hello from node b\n"
        app_share = (await http.post(f"/v1/sessions/{session}/ports/8080/share", json={"ttl_s": 600})).json()
        async with ws_connect(app_share["url"].replace("http://", "ws://") + "ws") as ws:
            await ws.send("shared")
            assert await ws.recv() == "shared"
        revoked = await http.delete(f"/v1/sessions/{session}/ports/8000/share/{share.json()['id']}")
        assert revoked.status_code == 204
        assert (await browser.get(share.json()["url"] + "hello.txt")).status_code == 404


async def test_relayed_and_direct_requests_side_by_side(served: dict[str, Any]) -> None:
    """Not a check of speed: the same GET through the relay and straight, timed for the record (printed)."""
    http, timings = served["http"], {}
    for where in ("a", "b"):
        session, took = served["sessions"][where], []
        for _ in range(60):
            started = time.perf_counter()
            reply = await http.get(f"/v1/sessions/{session}/ports/8000/hello.txt")
            took.append((time.perf_counter() - started) * 1000)
            assert reply.status_code == 200
        took.sort()
        timings[where] = (took[len(took) // 2], took[len(took) * 9 // 10])
    print(
        "\nGET /ports/8000/hello.txt through the replica on node_a, ms p50/p90: "
        f"straight (sandbox on node_a) {timings['a'][0]:.1f}/{timings['a'][1]:.1f}, "
        f"relayed (sandbox on node_b) {timings['b'][0]:.1f}/{timings['b'][1]:.1f}"
    )
