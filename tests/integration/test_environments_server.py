"""Multi-agent environments on the real server: hub and agents as Ray actors, live events over HTTP."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from tests.integration.serverproc import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.ray]


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image):
    proc = ServerProcess(tmp_path_factory.mktemp("tshome-env"), env={"TOOLSERVER_POOL_SIZE": "0"})
    proc.start()
    yield proc
    proc.stop()


def test_chat_room_with_a_moderator_over_http(server):
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    spec = {
        "name": "room",
        "agents": [
            {
                "kind": "loop",
                "name": "god",
                "role": "moderator",
                "llm": {"provider": "scripted", "replies": ["NEXT: alice.", "END."]},
            },
            {"kind": "echo", "name": "alice", "role": "member", "prefix": "alice says: ", "max_replies": 1},
        ],
        "router": {
            "kind": "sop",
            "start": "moderate",
            "states": {
                "moderate": {
                    "agent": "god",
                    "transitions": [
                        {"when": {"contains": "NEXT: alice"}, "to": "alice_speaks"},
                        {"when": {"contains": "END"}, "to": "done"},
                    ],
                },
                "alice_speaks": {"agent": "alice", "transitions": [{"to": "moderate"}]},
                "done": {"terminal": True},
            },
        },
    }
    created = httpx.post(f"{server.url}/v1/environments", json=spec, headers=headers, timeout=120)
    assert created.status_code == 201, created.text
    nodes = {a["node_id"] for a in created.json()["agents"]}
    assert all(nodes), created.json()["agents"]  # every agent is an actor placed on a node

    seen: list[dict] = []

    def follow() -> None:
        with httpx.stream(
            "GET", f"{server.url}/v1/environments/room/events", headers=headers, timeout=60
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line.removeprefix("data: ")))
                    if len(seen) >= 4:
                        return

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    httpx.post(
        f"{server.url}/v1/environments/room/messages",
        json={"content": "topic: tides", "recipients": ["god"]},
        headers=headers,
    )
    steps = httpx.post(
        f"{server.url}/v1/environments/room/step", json={"steps": 10}, headers=headers, timeout=120
    ).json()["steps"]
    assert steps[-1]["finished"] is True
    watcher.join(timeout=30)
    assert [(m["sender"], m["content"]) for m in seen[:4]] == [
        ("user", "topic: tides"),
        ("god", "NEXT: alice."),
        ("alice", "alice says: NEXT: alice."),
        ("god", "END."),
    ]
    assert httpx.delete(f"{server.url}/v1/environments/room", headers=headers).status_code == 204


def test_a_sandboxed_agent_actor_runs_next_to_its_session(server):
    """The agent's actor is placed on its session's node; its tool calls run in that sandbox."""
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    write = {"name": "shell", "arguments": {"command": "echo written-by-the-agent > proof.txt"}}
    spec = {
        "name": "lab",
        "agents": [
            {
                "kind": "loop",
                "name": "coder",
                "role": "coder",
                "sandbox": True,
                "tools": ["shell", "python"],
                "llm": {"provider": "scripted", "replies": [{"tool_calls": [write]}, "done"]},
            }
        ],
    }
    created = httpx.post(f"{server.url}/v1/environments", json=spec, headers=headers, timeout=120)
    assert created.status_code == 201, created.text
    agent = created.json()["agents"][0]
    session = httpx.get(f"{server.url}/v1/sessions/{agent['session_id']}", headers=headers, timeout=30).json()
    assert agent["node_id"] == session["node_id"]
    httpx.post(
        f"{server.url}/v1/environments/lab/messages",
        json={"content": "leave a proof", "recipients": ["coder"]},
        headers=headers,
    )
    steps = httpx.post(
        f"{server.url}/v1/environments/lab/step", json={"steps": 2}, headers=headers, timeout=120
    ).json()["steps"]
    assert steps[0]["acted"] == ["coder"], steps
    proof = httpx.get(
        f"{server.url}/v1/sessions/{session['id']}/files/proof.txt", headers=headers, timeout=30
    )
    assert proof.status_code == 200 and proof.content == b"written-by-the-agent\n"
    assert httpx.delete(f"{server.url}/v1/environments/lab", headers=headers, timeout=60).status_code == 204
    gone = httpx.get(f"{server.url}/v1/sessions/{session['id']}", headers=headers, timeout=30)
    assert gone.status_code == 404 or gone.json()["status"] in ("deleted", "destroyed")
