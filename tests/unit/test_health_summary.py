"""`/healthz`'s summary: one fan-out to the nodes per second, shared by concurrent probes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from toolserver.http.health import HealthSummary


class _Nodes:
    def __init__(self) -> None:
        self.calls = 0

    async def stats(self) -> list[dict[str, int | str]]:
        self.calls += 1
        await asyncio.sleep(0.02)
        return [{"node_id": "n", "sandboxes_running": self.calls, "pool_ready": 1, "pool_size": 1}]


async def test_concurrent_probes_share_one_fan_out_and_a_stale_summary_is_made_again():
    nodes = _Nodes()
    services = SimpleNamespace(nodes=nodes, version="t")
    summary = HealthSummary(ttl_s=0.2)
    answers = await asyncio.gather(*(summary.get(services) for _ in range(20)))
    assert nodes.calls == 1 and all(a["sandboxes_running"] == 1 for a in answers)
    assert answers[0]["status"] == "ok" and answers[0]["pool_size"] == 1
    await asyncio.sleep(0.25)
    assert (await summary.get(services))["sandboxes_running"] == 2 and nodes.calls == 2


async def test_no_node_answering_is_degraded():
    class Empty:
        async def stats(self) -> list[dict[str, int]]:
            return []

    summary = await HealthSummary().get(SimpleNamespace(nodes=Empty(), version="t"))
    assert summary["status"] == "degraded" and summary["sandboxes_running"] == 0
