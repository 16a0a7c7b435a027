"""Health and placement ask every node at once and leave out one that does not answer in time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from toolserver.nodes.base import NodeDirectory


class _Node:
    def __init__(self, node_id: str, delay_s: float, fail: bool = False) -> None:
        self.node_id, self.delay_s, self.fail = node_id, delay_s, fail

    async def stats(self) -> dict[str, Any]:
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("lost")
        return {"node_id": self.node_id, "sandboxes_running": 0, "pool_ready": 0, "pool_size": 0}


class _Directory(NodeDirectory):
    STATS_TIMEOUT_S = 0.3

    def __init__(self, nodes: list[_Node]) -> None:
        self.nodes = {n.node_id: n for n in nodes}

    async def node(self, node_id: str) -> Any:
        return self.nodes[node_id]

    async def node_ids(self) -> list[str]:
        return list(self.nodes)


async def test_a_silent_node_is_left_out_after_the_timeout_and_the_others_answer() -> None:
    directory = _Directory(
        [_Node("a", 0.05), _Node("hung", 60), _Node("b", 0.1), _Node("broken", 0, fail=True)]
    )
    started = time.monotonic()
    stats = await directory.stats()
    assert [s["node_id"] for s in stats] == ["a", "b"]
    assert time.monotonic() - started < 5  # not 60 s, nor one timeout per node in turn
    assert await directory.choose() in {"a", "b"}
