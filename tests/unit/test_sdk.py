"""The typed SDK over real HTTP (uvicorn on loopback, a fake sandbox backend): models, errors, retries, streams."""

from __future__ import annotations

import asyncio
import inspect

import httpx
import pytest

from foundation.errors import NotFound, ValidationFailed
from tests.unit.sdk_server import sdk_server
from toolserver import api
from toolserver.client import (
    AsyncClient,
    Client,
    NotFoundError,
    QuotaExceededError,
    RetryPolicy,
    ServerError,
    UnavailableError,
    ValidationError,
    aio,
    aio_groups,
    sync,
    sync_groups,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sdk_server(tmp_path_factory.mktemp("sdk")) as running:
        yield running


@pytest.fixture
def ts(server):
    with Client(server.url, server.keys["a"]) as client:
        yield client


def test_a_session_is_typed_and_goes_away_with_its_block(ts):
    with ts.session(ttl_s=60) as s:
        shell = s.shell("echo hi")
        assert isinstance(shell, api.ShellResult) and shell.output == "ran: echo hi" and shell.exit_code == 0
        cell = s.python("1 + 1")
        assert isinstance(cell, api.PythonResult) and cell.status == "ok"
        written = s.files.write("notes/a.txt", "hello")
        assert (written.path, written.size, written.is_dir) == ("notes/a.txt", 5, False)
        assert s.files.read("notes/a.txt") == b"hello" and s.files.read_text("notes/a.txt") == "hello"
        assert [e.path for e in s.files.list("notes")] == ["notes/a.txt"]
        assert s.info.ttl_s == 60 and s.refresh().status == "running"
        assert [x.id for x in ts.sessions()] == [s.id]
    assert ts.sessions() == []
    with pytest.raises(NotFoundError):
        ts.attach(s.id)


def test_errors_are_the_servers_tree_with_the_real_status(ts):
    with pytest.raises(NotFoundError) as missing:
        ts.tools.get("no-such-tool")
    assert missing.value.status_code == 404 and missing.value.error_type == "not_found"
    assert isinstance(missing.value, NotFound)  # the same `except` works in and out of process
    assert "no-such-tool" in str(missing.value)
    with pytest.raises(ValidationError) as invalid:
        ts.session(limits={"memory_mb": -5})
    assert invalid.value.status_code == 422 and invalid.value.field == "body.limits.memory_mb"
    assert isinstance(invalid.value, ValidationFailed)


def test_names_cannot_climb_to_another_route(ts, server):
    """A tool name such as `../keys` stays one path segment: it is not the admin-only key list."""
    with pytest.raises(NotFoundError):
        ts.tools.get("../../v1/keys")
    with Client(server.url, server.admin_key) as admin:
        assert any(k.namespace == "team-a" for k in admin.keys.list())


def test_tenants_see_only_their_own(server):
    with Client(server.url, server.keys["a"]) as a, Client(server.url, server.keys["b"]) as b:
        with a.session() as s:
            with pytest.raises(NotFoundError):
                b.attach(s.id)
            assert b.sessions() == []
        a.memory.add("namespace", "only for a")
        assert b.memory.recent("namespace") == []
        assert a.memory.clear("namespace") == 1


def test_a_run_streams_typed_events_until_it_ends(ts):
    ts.agents.define("echoer", {"provider": "scripted", "replies": ["all done"]})
    assert [a.name for a in ts.agents.list()] == ["echoer"]
    started = ts.runs.start("echoer", "say done")
    events = list(ts.runs.events(started.id))
    assert events[-1].event == "end" and events[-1].status == "succeeded"
    steps = [e.step for e in events if e.step is not None]
    assert [s.kind for s in steps] == ["model", "final"]
    run = ts.runs.get(started.id)
    assert run.status == "succeeded" and run.result == "all done" and len(run.steps or []) == 2
    assert [r.id for r in ts.runs.list("succeeded")] == [started.id]


def test_memory_round_trip(ts):
    item = ts.memory.add("agent:coder", "the build uses make", {"source": "test"})
    assert isinstance(item, api.MemoryItem) and item.metadata == {"source": "test"}
    found = ts.memory.search("agent:coder", "build")
    assert [m.id for m in found] == [item.id] and found[0].score is not None
    assert ts.memory.get("agent:coder", item.id).text == "the build uses make"
    ts.memory.delete("agent:coder", item.id)
    with pytest.raises(NotFoundError):
        ts.memory.get("agent:coder", item.id)


def test_async_client_has_the_same_surface(server):
    async def main() -> None:
        async with AsyncClient(server.url, server.keys["a"]) as ts:
            async with ts.session() as s:
                assert (await s.shell("pwd")).output == "ran: pwd"
                await s.files.write("x.bin", b"\x00\x01")
                assert await s.files.read("x.bin") == b"\x00\x01"
            assert await ts.sessions() == []
            kept = await ts.session(keep=True)
            assert [x.id for x in await ts.sessions()] == [kept.id]
            await kept.delete()
            await ts.agents.define("again", {"provider": "scripted", "replies": ["ok"]})
            run = await ts.runs.start("again", "go")
            seen = [e.event async for e in ts.runs.events(run.id)]
            assert seen[-1] == "end"
            with pytest.raises(NotFoundError):
                await ts.tools.get("nope")

    asyncio.run(main())


PAIRS = [
    (sync.Client, aio.AsyncClient),
    (sync.Session, aio.AsyncSession),
    (sync.Files, aio.AsyncFiles),
    (sync_groups.Tools, aio_groups.AsyncTools),
    (sync_groups.Agents, aio_groups.AsyncAgents),
    (sync_groups.Runs, aio_groups.AsyncRuns),
    (sync_groups.Humans, aio_groups.AsyncHumans),
    (sync_groups.Memory, aio_groups.AsyncMemory),
    (sync_groups.Environments, aio_groups.AsyncEnvironments),
    (sync_groups.Keys, aio_groups.AsyncKeys),
    (sync_groups.Secrets, aio_groups.AsyncSecrets),
]


@pytest.mark.parametrize(("plain", "coroutines"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_sync_and_async_methods_match_one_for_one(plain, coroutines):
    def surface(cls: type) -> dict[str, list[str]]:
        names = {n for n in vars(cls) if not n.startswith("_")} - {"close", "aclose"}
        return {n: list(inspect.signature(getattr(cls, n)).parameters) for n in sorted(names)}

    assert surface(plain) == surface(coroutines)
    assert surface(plain), plain
    for name in surface(coroutines):
        method = getattr(coroutines, name)
        if name == "session":
            continue  # returns an awaitable that is also an async context manager
        assert inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method), name


def _flaky(
    statuses: list[int], headers: dict[str, str] | None = None
) -> tuple[httpx.MockTransport, list[int]]:
    """A transport that answers `statuses` in turn, then the health body; records each request."""
    seen: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(len(seen))
        if len(seen) <= len(statuses):
            status = statuses[len(seen) - 1]
            body = {
                "error": {"type": "unavailable" if status == 503 else "quota_exceeded", "message": "later"}
            }
            return httpx.Response(status, json=body, headers=headers or {})
        health = {
            "status": "ok",
            "version": "t",
            "ray_nodes": 1,
            "sandboxes_running": 0,
            "pool_size": 0,
            "nodes": [],
        }
        return httpx.Response(200, json=health)

    return httpx.MockTransport(answer), seen


FAST = RetryPolicy(attempts=4, initial_s=0.01, max_wait_s=0.05)


def test_503_and_429_are_retried_with_backoff_until_an_answer():
    transport, seen = _flaky([503, 429, 503])
    with Client("http://sdk.test", "k", retry=FAST, transport=transport) as ts:
        assert ts.health().status == "ok"
    assert len(seen) == 4


def test_retries_end_with_the_typed_error_and_other_errors_are_not_retried():
    transport, seen = _flaky([503] * 10)
    with (
        Client("http://sdk.test", "k", retry=FAST, transport=transport) as ts,
        pytest.raises(UnavailableError),
    ):
        ts.health()
    assert len(seen) == 4
    transport, seen = _flaky([429], headers={"Retry-After": "0"})
    once = Client("http://sdk.test", "k", retry=RetryPolicy(attempts=1), transport=transport)
    with once as ts, pytest.raises(QuotaExceededError) as capped:
        ts.health()
    assert len(seen) == 1 and capped.value.retry_after_s == 0.0

    def not_found(request: httpx.Request) -> httpx.Response:
        seen.append(0)
        return httpx.Response(404, json={"error": {"type": "not_found", "message": "gone"}})

    seen.clear()
    client = Client("http://sdk.test", "k", retry=FAST, transport=httpx.MockTransport(not_found))
    with client as ts, pytest.raises(NotFoundError):
        ts.health()
    assert len(seen) == 1


def test_a_body_that_is_not_ours_still_becomes_a_typed_error():
    def proxy_page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    client = Client("http://sdk.test", "k", retry=FAST, transport=httpx.MockTransport(proxy_page))
    with client as ts, pytest.raises(ServerError) as failed:
        ts.health()
    assert failed.value.status_code == 502 and failed.value.error_type == "http_error"
    assert "bad gateway" in failed.value.message


def test_an_environment_through_the_sdk(ts):
    agents = [{"kind": "echo", "name": "w", "role": "worker", "prefix": "ok: "}]
    created = ts.environments.create("room", agents, subscriptions=[{"topic": "general", "role": "worker"}])
    assert [a["name"] for a in created.agents] == ["w"] and ts.environments.list() == ["room"]
    posted = ts.environments.post("room", "hello", recipients=["w"])
    assert isinstance(posted, api.HubMessage) and posted.recipients == ["w"]
    shown = ts.environments.get("room")
    assert shown.pending == {"w": 1} and shown.subscriptions["general"].roles == ["worker"]
    steps = ts.environments.step("room")
    assert steps[0].acted == ["w"] and [m.content for m in steps[0].published] == ["ok: hello"]
    assert [m.content for m in ts.environments.events("room", follow=False)] == ["hello", "ok: hello"]
    ts.environments.delete("room")
    with pytest.raises(NotFoundError):
        ts.environments.get("room")
