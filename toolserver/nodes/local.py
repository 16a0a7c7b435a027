"""Sandbox managers living in the service's own process (single process, tests, benchmarks)."""

from __future__ import annotations

from foundation.errors import Unavailable
from sandbox.manager import SandboxManager
from toolserver.nodes.base import NodeClient, NodeDirectory

__all__ = ["LocalNodes"]

_MANAGER_IS_A_NODE_CLIENT: type[NodeClient] = SandboxManager  # mypy proves it


class LocalNodes(NodeDirectory):
    """A fixed set of in-process managers keyed by node id."""

    def __init__(self, managers: dict[str, NodeClient]) -> None:
        self._managers = dict(managers)

    async def node(self, node_id: str) -> NodeClient:
        """The manager of `node_id`; Unavailable when there is none."""
        try:
            return self._managers[node_id]
        except KeyError:
            raise Unavailable(f"sandbox node {node_id} is not available", node_id=node_id) from None

    async def node_ids(self) -> list[str]:
        """The ids the managers were given under."""
        return list(self._managers)
