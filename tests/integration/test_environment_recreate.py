"""A removed environment can be created again on the real server (hub and agents on Ray actors).

Also when the server restarts between the delete and the create, and when it crashed with the
environment still there. The new room starts empty: the new spec's agents, no unread message and no
subscription of the old room; the old room's history stays readable under the name.
"""

from __future__ import annotations

import httpx
import pytest

from tests.integration.serverproc import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.ray]

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


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image):
    proc = ServerProcess(tmp_path_factory.mktemp("tshome-recreate"), env={"TOOLSERVER_POOL_SIZE": "0"})
    proc.start()
    yield proc
    proc.stop()


def _client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}, timeout=120
    )


def _old_room_with_unread_mail(client: httpx.Client) -> list[str]:
    """The old room, with a message waiting in its inboxes; the old history's contents."""
    created = client.post("/v1/environments", json=OLD_ROOM)
    assert created.status_code == 201, created.text
    assert all(a["node_id"] for a in created.json()["agents"])  # agents are actors on a node
    posted = client.post("/v1/environments/room2/messages", json={"content": "for the old room"})
    assert posted.status_code == 201 and posted.json()["delivered_to"], posted.text
    room = client.get("/v1/environments/room2").json()
    assert room["pending"] and room["subscriptions"]
    return [m["content"] for m in room["history"]]


def _assert_a_fresh_room(client: httpx.Client, created: httpx.Response, old_history: list[str]) -> None:
    assert created.status_code == 201, created.text
    room = client.get("/v1/environments/room2").json()
    assert [(a["name"], a["config"].get("prefix", "")) for a in room["agents"]] == [("solo-echo", "")]
    assert room["pending"] == {} and room["subscriptions"] == {}
    assert [m["content"] for m in room["history"]][: len(old_history)] == old_history
    client.post("/v1/environments/room2/messages", json={"content": "for the new room"})
    steps = client.post("/v1/environments/room2/step", json={"steps": 3}).json()["steps"]
    replies = [m["content"] for step in steps for m in step["published"]]
    assert replies == ["for the new room"]  # the new message's echo, nothing of the old inbox
    assert client.delete("/v1/environments/room2").status_code == 204


def test_a_removed_environment_can_be_created_again(server):
    with _client(server) as client:
        old = _old_room_with_unread_mail(client)
        assert client.delete("/v1/environments/room2").status_code == 204
        assert client.get("/v1/environments/room2").status_code == 404
        _assert_a_fresh_room(client, client.post("/v1/environments", json=ROOM), old)


def test_created_again_after_a_restart_between_delete_and_create(server):
    with _client(server) as client:
        old = _old_room_with_unread_mail(client)
        assert client.delete("/v1/environments/room2").status_code == 204
    server.stop()
    server.start()
    with _client(server) as client:
        _assert_a_fresh_room(client, client.post("/v1/environments", json=ROOM), old)


def test_created_again_after_the_server_crashed_with_it(server):
    """A crash leaves the agent rows behind: the next create of the name releases them first."""
    with _client(server) as client:
        old = _old_room_with_unread_mail(client)
    server.crash()
    server.start()
    with _client(server) as client:
        _assert_a_fresh_room(client, client.post("/v1/environments", json=ROOM), old)
