"""Per-namespace caps of the environment manager, in process over a real SQLite registry.

A burst of concurrent creates cannot pass a cap (the check and the reservation are one step), a
refused create leaves nothing behind, and a removed environment gives its room back.
"""

from __future__ import annotations

import asyncio

import pytest

from foundation.errors import QuotaExceeded
from toolserver.service.environments import EnvironmentManager


def _room(name: str, agents: int = 1) -> dict:
    return {"name": name, "agents": [{"kind": "echo", "name": f"e{i}", "role": "r"} for i in range(agents)]}


@pytest.fixture
async def manager(tmp_path):
    manager = EnvironmentManager(
        f"sqlite:///{tmp_path / 'registry.db'}", use_ray=False, max_environments=2, max_agents=3
    )
    yield manager
    await manager.shutdown()


async def test_a_burst_of_creates_stops_at_the_environment_cap(manager):
    outcomes = await asyncio.gather(
        *(manager.create("team-a", _room(f"r{i}")) for i in range(10)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]
    assert len(refused) == 8 and refused[0].details["setting"] == "TOOLSERVER_MAX_ENVIRONMENTS_PER_NAMESPACE"
    assert len(await manager.names("team-a")) == 2
    assert len(await manager.names("team-b")) == 0
    await manager.create("team-b", _room("theirs"))  # another namespace has its own caps


async def test_agents_are_counted_across_the_namespace(manager):
    await manager.create("team-a", _room("one", 2))
    with pytest.raises(QuotaExceeded) as refused:
        await manager.create("team-a", _room("two", 2))
    assert refused.value.details["setting"] == "TOOLSERVER_MAX_ENV_AGENTS_PER_NAMESPACE"
    assert await manager.names("team-a") == ["one"]  # nothing of the refused one
    await manager.delete("team-a", "one")
    await manager.create("team-a", _room("two", 3))  # the removed one's room came back


async def test_zero_means_no_cap(tmp_path):
    manager = EnvironmentManager(
        f"sqlite:///{tmp_path / 'registry.db'}", use_ray=False, max_environments=0, max_agents=0
    )
    try:
        for i in range(10):
            await manager.create("team-a", _room(f"r{i}", 2))
    finally:
        await manager.shutdown()
