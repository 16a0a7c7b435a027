"""The node lane: calls over a unix socket answer as the target does, and refuse what they should."""

from __future__ import annotations

import asyncio
import os

import pytest

from foundation.errors import NotFound, Unavailable
from toolserver.nodes.base import NodeClient
from toolserver.nodes.lane import LaneAddress, LaneClient, LaneHandle, LaneServer, lane_methods


class Target:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def shell(self, session_id: str, command: str) -> dict[str, str]:
        self.calls.append(command)
        return {"session": session_id, "out": command.upper()}

    async def get(self, session_id: str) -> None:
        raise NotFound(f"no session {session_id}", session_id=session_id)

    async def read_file(self, size: int) -> bytes:
        return b"x" * size

    async def python(self, wait_s: float) -> str:
        await asyncio.sleep(wait_s)
        return "done"

    async def secret(self) -> str:
        return "never over the lane"


class Actor:
    """What the handle falls back to: a stand-in for a Ray actor handle."""

    class _Method:
        def __init__(self, name: str) -> None:
            self.name = name

        def remote(self, *args: object) -> object:
            async def answer() -> str:
                return f"ray:{self.name}{args}"

            return answer()

    def __getattr__(self, name: str) -> object:
        return Actor._Method(name)


METHODS = frozenset({"shell", "get", "read_file", "python"})


@pytest.fixture
async def lane():
    target = Target()
    server = LaneServer(target, METHODS)
    address = await server.start("node-1")
    client = LaneClient(address, "sandbox node node-1")
    yield target, server, address, client
    client.close()
    await server.close()


async def test_calls_answer_like_the_target(lane) -> None:
    target, _, address, client = lane
    assert await client.call("shell", ("s1", "echo")) == {"session": "s1", "out": "ECHO"}
    assert len(await client.call("read_file", (3 << 20,))) == 3 << 20
    results = await asyncio.gather(*(client.call("shell", ("s1", f"c{i}")) for i in range(20)))
    assert [r["out"] for r in results] == [f"C{i}" for i in range(20)]
    assert len(target.calls) == 21
    assert oct(os.stat(os.path.dirname(address.path)).st_mode & 0o777) == "0o700"


async def test_our_errors_come_back_as_themselves(lane) -> None:
    _, _, _, client = lane
    with pytest.raises(NotFound, match="no session s9") as caught:
        await client.call("get", ("s9",))
    assert caught.value.details["session_id"] == "s9"
    assert await client.call("shell", ("s1", "after")) == {"session": "s1", "out": "AFTER"}


async def test_only_the_named_methods_are_served(lane) -> None:
    _, _, _, client = lane
    with pytest.raises(RuntimeError, match="serves no method 'secret'"):
        await client.call("secret", ())
    with pytest.raises(RuntimeError, match="serves no method '__init__'"):
        await client.call("__init__", ())


async def test_a_wrong_token_is_dropped_before_anything_is_read(lane) -> None:
    target, _, address, _ = lane
    bad = LaneClient(LaneAddress(address.path, b"\0" * 32, address.node_id), "sandbox node node-1")
    with pytest.raises(Unavailable, match="lane closed during shell"):
        await bad.call("shell", ("s1", "rm -rf"))
    assert target.calls == []


async def test_a_server_gone_mid_call_is_the_node_lost(lane) -> None:
    _, server, _, client = lane
    call = asyncio.create_task(client.call("python", (30,)))
    await asyncio.sleep(0.2)
    await server.close()
    with pytest.raises(Unavailable) as caught:
        await call
    assert caught.value.details["node_id"] == "node-1"


async def test_the_handle_falls_back_to_the_actor_when_the_lane_is_down(lane) -> None:
    _, server, _, client = lane
    handle = LaneHandle(Actor(), client, METHODS)
    assert await handle.shell.remote("s1", "up") == {"session": "s1", "out": "UP"}
    assert await handle.stats.remote() == "ray:stats()"  # not a lane method: straight to the actor
    await server.close()
    client.close()
    assert await handle.shell.remote("s1", "down") == "ray:shell('s1', 'down')"
    assert not handle.lane_up


async def test_a_cancelled_call_leaves_the_lane_usable(lane) -> None:
    _, _, _, client = lane
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.call("python", (5,)), 0.2)
    assert await client.call("shell", ("s1", "next")) == {"session": "s1", "out": "NEXT"}


def test_the_node_lane_serves_the_node_client_methods() -> None:
    methods = lane_methods(NodeClient)
    assert {"shell", "python", "get", "create", "destroy", "write_file", "stats"} <= methods
    assert not {m for m in methods if m.startswith("_")}
    assert "start" not in methods and "shutdown" not in methods
