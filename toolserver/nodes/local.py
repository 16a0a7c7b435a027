"""Sandbox managers living in the service's own process (single process, tests, benchmarks)."""

from __future__ import annotations

from foundation.errors import Unavailable
from toolserver.nodes.base import NodeClient, NodeDirectory

__all__ = ["LocalNodes"]


class LocalNodes(NodeDirectory):
    """A fixed set of in-process managers keyed by node id."""

    def __init__(self, managers: dict[str, NodeClient]) -> None:
        self._managers = dict(managers)

    async def node(self, node_id: str) -> NodeClient:
        try:
            return self._managers[node_id]
        except KeyError:
            raise Unavailable(f"sandbox node {node_id} is not available", node_id=node_id) from None

    async def node_ids(self) -> list[str]:
        return list(self._managers)
