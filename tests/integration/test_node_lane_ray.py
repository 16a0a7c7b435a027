"""The node lane on real Ray and Docker: a caller on the manager's node goes over the lane, with the same
answers and errors as through Ray; the node's loss is still `Unavailable`."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from foundation.errors import Unavailable  # noqa: E402
from sandbox.base import SandboxSpec  # noqa: E402
from sandbox.errors import SandboxNotFound  # noqa: E402
from toolserver.config import Settings  # noqa: E402
from toolserver.nodes.lane import LaneHandle  # noqa: E402
from toolserver.nodes.ray_actors import (  # noqa: E402
    RAY_NAMESPACE,
    RayNodes,
    start_node_actors,
    stop_node_actors,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]


@pytest.fixture(scope="module")
def one_node() -> Iterator[None]:
    if ray.is_initialized():
        pytest.skip("this process is already connected to another Ray instance")
    ray_tmp = tempfile.mkdtemp(prefix="rlane-", dir="/tmp")  # short: Ray puts unix sockets under it
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = ray_tmp
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        ray.init(
            address=cluster.address,
            namespace=RAY_NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        yield
    finally:
        try:
            if ray.is_initialized():
                stop_node_actors()
        finally:
            ray.shutdown()
            cluster.shutdown()
            if saved is None:
                os.environ.pop("RAY_TMPDIR", None)
            else:
                os.environ["RAY_TMPDIR"] = saved
            shutil.rmtree(ray_tmp, ignore_errors=True)


def test_calls_on_the_managers_node_go_over_the_lane(
    one_node: None, tmp_path: Path, docker_engine: Any, sandbox_image: str
) -> None:
    settings = Settings(home=tmp_path, pool_size=0, sandbox_image=sandbox_image)
    (node_id,) = start_node_actors(settings, "lanetest", {})

    async def scenario() -> dict[str, Any]:
        over_lane = await RayNodes().node(node_id)
        over_ray = await RayNodes(lane=False).node(node_id)
        handle: Any = over_lane._handle  # type: ignore[attr-defined]
        assert isinstance(handle, LaneHandle) and handle.lane_up
        assert not isinstance(over_ray._handle, LaneHandle)  # type: ignore[attr-defined]
        info = await over_lane.create(SandboxSpec(image=sandbox_image, owner="lane"), 600)
        sid = info.session_id
        shell = await over_lane.shell(sid, "echo over-$((40 + 2))", 30)
        same = await over_ray.shell(sid, "echo over-$((40 + 2))", 30)
        cell = await over_lane.python(sid, "x = 6 * 7\nx", 30)
        await over_lane.write_file(sid, "big.bin", b"\x00\xff" * 600_000)
        data = await over_lane.read_file(sid, "big.bin")
        with pytest.raises(SandboxNotFound):
            await over_lane.shell("no-such-session", "true", 5)
        await over_lane.destroy(sid)
        return {"shell": shell, "same": same, "cell": cell, "data": data, "lane_up": handle.lane_up}

    out = asyncio.run(scenario())
    assert out["shell"].output == out["same"].output == "over-42\n"
    assert out["shell"].exit_code == 0
    assert out["cell"].result == "42"
    assert out["data"] == b"\x00\xff" * 600_000
    assert out["lane_up"]  # errors of the call did not take the lane down


def test_a_killed_manager_is_unavailable_over_the_lane(
    one_node: None, tmp_path: Path, docker_engine: Any, sandbox_image: str
) -> None:
    settings = Settings(home=tmp_path, pool_size=0, sandbox_image=sandbox_image)
    (node_id,) = start_node_actors(settings, "lanetest", {})

    async def scenario() -> None:
        client = await RayNodes().node(node_id)
        assert isinstance(client._handle, LaneHandle)  # type: ignore[attr-defined]
        assert (await client.stats())["node_id"] == node_id
        ray.kill(client._handle.actor)  # type: ignore[attr-defined]
        await asyncio.sleep(1.0)
        with pytest.raises(Unavailable):
            await client.stats()

    asyncio.run(scenario())
