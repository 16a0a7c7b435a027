"""A removed environment can be created again, in process over a real SQLite registry, also after a restart.

The new room starts empty: its agents are the new spec's, with no unread message and no subscription of the
old room; the old room's history stays readable under the name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from registry import Database, KeyStore
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend
from sandbox.manager import SandboxManager
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes

ROOM = {
    "name": "room2",
    "router": "broadcast",
    "agents": [{"kind": "echo", "name": "solo-echo", "role": "scribe"}],
}
OLD_ROOM = {
    **ROOM,
    "agents": [
        {"kind": "echo", "name": "solo-echo", "role": "scribe", "prefix": "old: "},
        {"kind": "echo", "name": "ghost", "role": "scribe"},
    ],
    "subscriptions": [{"topic": "news", "agent": "solo-echo"}, {"topic": "news", "role": "scribe"}],
}


@asynccontextmanager
async def _server(home: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One in-process server over the registry in `home`; leaving the block is its shutdown."""
    settings = Settings(home=home, pool_size=0)
    db = Database(settings.database)
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="n"), backend=FakeBackend("n"))
    services = build_services(settings, db, LocalNodes({"n": manager}))
    saved = home / "team-a.key"  # the tenant's key outlives a restart, as in the registry
    if not saved.exists():
        saved.write_text(KeyStore(db).create("team-a", "a")[1])
    key = saved.read_text()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)),
        base_url="http://t",
        headers={"Authorization": f"Bearer {key}"},
    )
    try:
        yield client
    finally:
        await services.environments.shutdown()
        await client.aclose()
        await manager.shutdown()
        db.close()


async def _old_room_with_unread_mail(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/environments", json=OLD_ROOM)
    assert created.status_code == 201, created.text
    posted = await client.post("/v1/environments/room2/messages", json={"content": "for the old room"})
    assert posted.status_code == 201 and posted.json()["delivered_to"], posted.text
    room = (await client.get("/v1/environments/room2")).json()
    assert room["pending"] and room["subscriptions"]


async def _assert_a_fresh_room(client: httpx.AsyncClient, created: httpx.Response) -> None:
    assert created.status_code == 201, created.text
    room = (await client.get("/v1/environments/room2")).json()
    assert [(a["name"], a["config"].get("prefix", "")) for a in room["agents"]] == [("solo-echo", "")]
    assert room["pending"] == {} and room["subscriptions"] == {}
    assert [m["content"] for m in room["history"]] == ["for the old room"]  # the history stays readable
    await client.post("/v1/environments/room2/messages", json={"content": "for the new room"})
    steps = (await client.post("/v1/environments/room2/step", json={"steps": 3})).json()["steps"]
    replies = [m["content"] for step in steps for m in step["published"]]
    assert replies == ["for the new room"]  # the echo of the new message, nothing of the old inbox


async def test_a_removed_environment_can_be_created_again(tmp_path):
    async with _server(tmp_path) as client:
        await _old_room_with_unread_mail(client)
        assert (await client.delete("/v1/environments/room2")).status_code == 204
        await _assert_a_fresh_room(client, await client.post("/v1/environments", json=ROOM))


async def test_created_again_after_a_restart_between_delete_and_create(tmp_path):
    async with _server(tmp_path) as client:
        await _old_room_with_unread_mail(client)
        assert (await client.delete("/v1/environments/room2")).status_code == 204
    async with _server(tmp_path) as client:
        await _assert_a_fresh_room(client, await client.post("/v1/environments", json=ROOM))


async def test_created_again_after_a_server_lost_it_without_a_delete(tmp_path):
    """A crash leaves the agent rows behind: the next create of the name releases them first."""
    settings = Settings(home=tmp_path, pool_size=0)
    db = Database(settings.database)
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="n"), backend=FakeBackend("n"))
    services = build_services(settings, db, LocalNodes({"n": manager}))
    _, key = KeyStore(db).create("team-a", "a")
    (tmp_path / "team-a.key").write_text(key)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)),
        base_url="http://t",
        headers={"Authorization": f"Bearer {key}"},
    )
    await _old_room_with_unread_mail(client)
    await client.aclose()  # no shutdown: the rows stay, as after a crash
    await manager.shutdown()
    db.close()
    async with _server(tmp_path) as fresh:
        await _assert_a_fresh_room(fresh, await fresh.post("/v1/environments", json=ROOM))


async def test_an_unknown_environment_cannot_be_removed(tmp_path):
    async with _server(tmp_path) as client:
        gone = await client.delete("/v1/environments/room2")
        assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found"
