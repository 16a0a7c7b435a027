"""Open streams and long-polls per namespace: the counter, and the attack on a real HTTP server in process.

The server is the in-process app (fake sandboxes) behind uvicorn on loopback, so streams really stay open
and a client really goes away: a tenant holding its cap gets 429 on the next stream and long-poll, while
another tenant's calls and /healthz keep answering; a stream ends at its lifetime with `reconnect`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
import uvicorn

from foundation.errors import QuotaExceeded, Unavailable
from foundation.wakeups import Wakeups
from registry import Database, KeyStore
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend
from sandbox.manager import SandboxManager
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.http.stream_limits import StreamLimits, StreamSlot
from toolserver.nodes.local import LocalNodes

CAP = 2
LIFETIME_S = 3.0
ROOM = {"name": "room", "router": "broadcast", "agents": [{"kind": "echo", "name": "e", "role": "r"}]}


def test_a_namespace_over_its_cap_is_refused_and_a_closed_stream_frees_its_slot():
    limits = StreamLimits(2, 60.0, per_replica=3)
    with ExitStack() as held:
        held.enter_context(limits.hold("a"))
        held.enter_context(limits.hold("a"))
        with pytest.raises(QuotaExceeded) as refused:
            held.enter_context(limits.hold("a"))
        assert refused.value.details["setting"] == "TOOLSERVER_MAX_STREAMS_PER_NAMESPACE"
        assert limits.open("a") == 2  # the refused one holds nothing
        held.enter_context(limits.hold("b"))
        with pytest.raises(Unavailable):  # the replica's own ceiling, whoever asks
            held.enter_context(limits.hold("c"))
    assert limits.open("a") == limits.open("b") == 0
    with limits.hold("a"), limits.hold("a"):
        pass


def test_no_cap_means_only_the_replica_ceiling():
    limits = StreamLimits(0, 60.0, per_replica=5)
    with ExitStack() as held:
        for _ in range(5):
            held.enter_context(limits.hold("a"))
        with pytest.raises(Unavailable):
            held.enter_context(limits.hold("a"))


async def test_a_stream_ends_at_its_lifetime_with_reconnect_and_closes_its_body():
    closed = []

    async def forever():
        try:
            yield b"event: message\ndata: {}\n\n"
            await asyncio.sleep(3600)
            yield b"never"
        finally:
            closed.append(True)

    started = time.monotonic()
    chunks = [c async for c in StreamSlot(time.monotonic() + 0.3, 0.3).bounded(forever())]
    assert time.monotonic() - started < 5
    assert chunks[0].startswith(b"event: message") and chunks[-1].startswith(b"event: reconnect")
    assert closed == [True]


async def test_wakeups_hold_nothing_for_keys_nobody_waits_on():
    wakeups = Wakeups()
    for key in range(10_000):
        wakeups.notify(key)
    assert wakeups.waiting() == 0
    with wakeups.watch("run") as woken:
        waiter = asyncio.ensure_future(wakeups.wait(woken, 5))
        await asyncio.sleep(0)
        wakeups.notify("run")
        assert await waiter is True
    assert wakeups.waiting() == 0


class _Server:
    """The in-process app (fake sandboxes) behind uvicorn on a loopback port, in a thread."""

    def __init__(self, home) -> None:
        settings = Settings(home=home, pool_size=0, max_streams_per_namespace=CAP, max_stream_s=LIFETIME_S)
        self.db = Database(settings.database)
        self.manager = SandboxManager(SandboxConfig(pool_size=0, node_id="n"), backend=FakeBackend("n"))
        self.services = build_services(settings, self.db, LocalNodes({"n": self.manager}))
        self.keys = {ns: KeyStore(self.db).create(ns, ns)[1] for ns in ("team-a", "team-b")}
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        self.app = create_app(self.services)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=int(self.url.rsplit(":", 1)[1]),
            log_level="error",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def client(self, namespace: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.keys[namespace]}"}, timeout=30
        )


@pytest.fixture
def server(tmp_path) -> Iterator[_Server]:
    server = _Server(tmp_path)
    server.thread.start()
    deadline = time.monotonic() + 10
    while not server.server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.server.started
    yield server
    server.server.should_exit = True
    server.thread.join(10)
    asyncio.run(server.manager.shutdown())
    server.db.close()


def _open_stream(client: httpx.Client, path: str) -> httpx.Response:
    """A followed stream whose headers arrived (its slot is held until it is closed)."""
    response = client.send(client.build_request("GET", path), stream=True)
    assert response.status_code == 200, response.read()
    return response


def _wait_until(check, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_tenant_at_its_stream_cap_gets_429_while_others_keep_answering(server):
    a, b = server.client("team-a"), server.client("team-b")
    assert a.post("/v1/environments", json=ROOM).status_code == 201
    assert b.post("/v1/environments", json=ROOM).status_code == 201
    asked = a.post("/v1/tools/ask_human/call", json={"arguments": {"question": "ok?"}})
    assert asked.status_code == 202, asked.text
    request_id = asked.json()["request_id"]
    held = [_open_stream(a, "/v1/environments/room/events") for _ in range(CAP)]
    try:
        refused = a.get("/v1/environments/room/events")
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "quota_exceeded"
        poll = a.get(f"/v1/human-requests/{request_id}", params={"wait_s": 30})
        assert poll.status_code == 429 and poll.json()["error"]["type"] == "quota_exceeded"
        assert a.get(f"/v1/human-requests/{request_id}").status_code == 200  # no wait: not a long-poll
        # Everyone else is served meanwhile, quickly.
        started = time.monotonic()
        assert b.get("/healthz").status_code == 200
        assert b.get("/v1/environments").json()["environments"] == ["room"]
        other = _open_stream(b, "/v1/environments/room/events")
        other.close()
        assert time.monotonic() - started < 10
    finally:
        for response in held:
            response.close()
    # Closed streams give their slots back (the client went away mid-stream).
    assert _wait_until(lambda: _limits(server).open("team-a") == 0)
    again = _open_stream(a, "/v1/environments/room/events")
    again.close()


def test_a_stream_ends_cleanly_at_its_lifetime(server):
    a = server.client("team-a")
    assert a.post("/v1/environments", json=ROOM).status_code == 201
    a.post("/v1/environments/room/messages", json={"content": "hello"})
    started = time.monotonic()
    events = []
    with a.stream("GET", "/v1/environments/room/events", timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            if line.startswith("data: ") and events[-1] == "reconnect":
                assert json.loads(line.removeprefix("data: "))["reason"] == "max_stream_s"
    assert events == ["message", "reconnect"]
    assert LIFETIME_S - 0.5 < time.monotonic() - started < LIFETIME_S + 15
    assert _wait_until(lambda: _limits(server).open("team-a") == 0)


def _limits(server: _Server) -> StreamLimits:
    return server.app.state.stream_limits  # type: ignore[no-any-return]


def test_a_revoked_keys_stream_ends_and_another_tenants_goes_on(server, monkeypatch):
    import toolserver.http.stream_limits

    monkeypatch.setattr(toolserver.http.stream_limits, "KEY_RECHECK_S", 0.5)
    victim_key = KeyStore(server.db).create("team-a", "short-lived")
    revoked_client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {victim_key[1]}"}, timeout=30
    )
    a, b = server.client("team-a"), server.client("team-b")
    assert a.post("/v1/environments", json=ROOM).status_code == 201
    assert b.post("/v1/environments", json=ROOM).status_code == 201
    doomed = _open_stream(revoked_client, "/v1/environments/room/events")
    bystander = _open_stream(b, "/v1/environments/room/events")
    try:
        KeyStore(server.db).revoke(victim_key[0].id)
        started = time.monotonic()
        lines = list(doomed.iter_lines())  # the stream ends by itself
        assert time.monotonic() - started < 15
        assert "event: error" in lines
        assert (
            json.loads(lines[lines.index("event: error") + 1].removeprefix("data: "))["type"]
            == "unauthorized"
        )
        assert b.post("/v1/environments/room/messages", json={"content": "still here"}).status_code in (
            200,
            201,
        )
        assert any("still here" in line for line in bystander.iter_lines())
    finally:
        doomed.close()
        bystander.close()
    assert revoked_client.get("/v1/environments").status_code == 401
