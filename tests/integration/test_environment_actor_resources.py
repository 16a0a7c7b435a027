"""Agent and hub actors reserve real resources, so Ray itself refuses the actor too many.

A private local Ray whose `memory` resource holds one hub and two agents: the third agent is refused
with 503 `no_room_for_agent` within the start timeout (not queued forever), nothing of it stays, and
the room comes back when the environment goes.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import ray

from agent_core.environment import NoRoomForAgent, RayEnvironment
from agent_core.environment.actors import AGENT_ACTOR_MEMORY, HUB_ACTOR_MEMORY

pytestmark = [pytest.mark.integration, pytest.mark.ray]


@pytest.fixture(scope="module")
def small_ray() -> Iterator[None]:
    if ray.is_initialized():
        pytest.skip("this process is already connected to another Ray instance")
    temp = tempfile.mkdtemp(prefix="rres-", dir="/tmp")  # short: Ray puts unix sockets under it
    ray.init(
        address="local",  # never another server's cluster found in /tmp/ray
        num_cpus=1,
        _memory=HUB_ACTOR_MEMORY + 2 * AGENT_ACTOR_MEMORY + AGENT_ACTOR_MEMORY // 2,
        include_dashboard=False,
        _temp_dir=temp,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_the_agent_too_many_is_refused_not_queued(small_ray, tmp_path):
    database = f"sqlite:///{tmp_path / 'registry.db'}"

    async def scenario() -> None:
        env = await RayEnvironment.start("team-a", "full", database, start_timeout_s=8)
        for i in range(2):
            await env.add_agent({"kind": "echo", "name": f"e{i}", "role": "r"})
        with pytest.raises(NoRoomForAgent) as refused:
            await env.add_agent({"kind": "echo", "name": "e2", "role": "r"})
        assert refused.value.status == 503 and refused.value.to_dict()["agent"] == "e2"
        assert [a.name for a in await env.hub.agents()] == ["e0", "e1"]  # the refused one is no member
        held = ray.cluster_resources()["memory"] - ray.available_resources().get("memory", 0)
        assert held == HUB_ACTOR_MEMORY + 2 * AGENT_ACTOR_MEMORY  # what the hub and two agents reserve
        await env.shutdown()
        again = await RayEnvironment.start("team-a", "again", database, start_timeout_s=60)
        # The room came back; had the refused actor stayed pending, it would take it first.
        for i in range(2):
            await again.add_agent({"kind": "echo", "name": f"e{i}", "role": "r"})
        await again.shutdown()

    asyncio.run(scenario())
