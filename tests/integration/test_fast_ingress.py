"""`toolserver up --fast-ingress`: HAProxy in front of the replicas serves the same API, SSE included."""

from __future__ import annotations

import os

import pytest

from tests.integration.serverproc import ServerProcess
from toolserver.client import Client
from toolserver.serve.ingress import haproxy_binary, haproxy_state_dir

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image):
    if haproxy_binary() is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI installs haproxy (scripts/setup.sh); it is missing")
        pytest.skip("haproxy is not installed")
    proc = ServerProcess(
        tmp_path_factory.mktemp("tshome-fast"),
        env={"TOOLSERVER_FAST_INGRESS": "1", "TOOLSERVER_POOL_SIZE": "1"},
    )
    proc.start()
    yield proc
    proc.stop()


def test_the_api_works_behind_haproxy(server):
    state = haproxy_state_dir(server.home)
    assert list(state.rglob("haproxy.cfg")), "HAProxy is not the ingress"
    with Client(server.url, server.admin_key) as client, client.session() as session:
        assert client.health().status == "ok"
        called = session.call_tool("shell", {"command": "echo behind-haproxy"})
        assert called.result["output"].strip() == "behind-haproxy"
        client.agents.define(
            "streamer",
            tools=["shell"],
            llm={
                "provider": "scripted",
                "replies": [{"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]}, "ok"],
            },
        )
        run_id = client.runs.start("streamer", "go", session.id).id
        events = [event.event for event in client.runs.events(run_id)]
        assert events[-1] == "end" and events.count("step") >= 3
        assert client.runs.get(run_id).status == "succeeded"
