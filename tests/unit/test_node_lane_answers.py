"""The node lane: an answer that cannot travel, or a method cancelled from within, is the call's error.

Either used to close the connection, which the caller takes for the node's manager lost (`Unavailable` with
the node's id), and the session service then marks the caller's session lost for good.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from foundation.errors import Unavailable
from toolserver.nodes import lane as lane_module
from toolserver.nodes.lane import LaneClient, LaneServer


class Target:
    async def egress(self, session_id: str) -> object:
        return {"lock": threading.Lock()}  # pickle refuses it

    async def read_file(self, size: int) -> bytes:
        return b"x" * size

    async def python(self) -> str:
        inner = asyncio.ensure_future(asyncio.sleep(10))
        asyncio.get_running_loop().call_soon(inner.cancel)
        await inner  # cancelled by someone else: CancelledError here, the lane's task is not cancelled
        return "never"

    async def shell(self) -> str:
        return "ok"


@pytest.fixture
async def client():
    server = LaneServer(Target(), frozenset({"egress", "read_file", "python", "shell"}))
    client = LaneClient(await server.start("node-1"), "sandbox node node-1")
    yield client
    client.close()
    await server.close()


async def test_an_answer_that_cannot_be_pickled_is_an_error_not_the_node_lost(client) -> None:
    with pytest.raises(RuntimeError, match="cannot be sent") as caught:
        await client.call("egress", ("s1",))
    assert not isinstance(caught.value, Unavailable)
    assert await client.call("shell", ()) == "ok"


async def test_an_answer_over_the_frame_cap_is_an_error_not_the_node_lost(
    client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lane_module, "MAX_FRAME_BYTES", 1024)
    with pytest.raises(RuntimeError, match="over 1024 bytes") as caught:
        await client.call("read_file", (4096,))
    assert not isinstance(caught.value, Unavailable)
    assert await client.call("read_file", (10,)) == b"x" * 10


async def test_a_method_cancelled_from_within_is_an_error_not_the_node_lost(client) -> None:
    with pytest.raises(RuntimeError, match="cancelled on the node") as caught:
        await client.call("python", ())
    assert not isinstance(caught.value, Unavailable)
    assert await client.call("shell", ()) == "ok"
