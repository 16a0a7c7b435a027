"""The seam between the HTTP service and the sandbox managers, wherever they run."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from foundation.errors import Unavailable
from sandbox.base import SandboxInfo, SandboxSpec, SessionOps
from sandbox.checkpoints import NodePausing  # pause: the node's half
from sandbox.ports import SessionPorts
from sandbox.processes import SessionProcesses
from sandbox.snapshots import NodeSnapshots  # snapshots: the node's half
from sandbox.streams import SessionStreams
from sandbox.volumes import NodeVolumes

__all__ = ["NodeClient", "NodeDirectory"]


class NodeClient(
    SessionOps,
    SessionProcesses,
    SessionStreams,
    SessionPorts,
    NodeVolumes,
    NodePausing,
    NodeSnapshots,  # snapshots
    Protocol,
):
    """One node's sandbox manager, as the service sees it: `SessionOps`, background processes, the lifecycle.

    Implemented by `sandbox.manager.SandboxManager` (in-process, `LocalNodes`) and by
    `toolserver.nodes.ray_actors.RayNodeClient` (the node's manager actor); mypy checks both.
    """

    @abc.abstractmethod
    async def create(self, spec: SandboxSpec, ttl_s: float | None = None) -> SandboxInfo:
        """A new sandbox on this node for `spec`, expiring after `ttl_s` idle seconds (None: the default)."""

    @abc.abstractmethod
    async def get(self, session_id: str) -> SandboxInfo:
        """The session's sandbox; SandboxNotFound when this node has none."""

    @abc.abstractmethod
    async def destroy(self, session_id: str) -> None:
        """Remove the session's sandbox (a no-op when it is gone)."""

    @abc.abstractmethod
    async def egress(self, session_id: str) -> dict[str, Any]:
        """The session's allow-list and its egress proxy's recent connections (SandboxNotFound without it)."""

    @abc.abstractmethod
    async def sessions(self) -> list[SandboxInfo]:
        """The sandboxes this node holds for sessions."""

    @abc.abstractmethod
    async def stats(self) -> dict[str, Any]:
        """Counts for health and placement: node_id, sandboxes_running, pool_ready, pool_size."""


class NodeDirectory(abc.ABC):
    """Finds the sandbox manager of each node and picks a node for a new session."""

    @abc.abstractmethod
    async def node(self, node_id: str) -> NodeClient:
        """The manager on `node_id`; raises Unavailable when that node is gone."""

    @abc.abstractmethod
    async def node_ids(self) -> list[str]:
        """Nodes that currently have a live sandbox manager."""

    STATS_TIMEOUT_S = 2.0
    """How long health and placement wait for a node's counts (a node being lost may not answer at all)."""

    async def stats(self) -> list[dict[str, Any]]:
        """Per-node counts for health and placement, asked of every node at once; a node that does not
        answer within `STATS_TIMEOUT_S` is left out."""

        async def one(node_id: str) -> dict[str, Any] | None:
            try:
                return await asyncio.wait_for((await self.node(node_id)).stats(), self.STATS_TIMEOUT_S)
            except Exception:
                return None

        answers = await asyncio.gather(*(one(node_id) for node_id in await self.node_ids()))
        return [answer for answer in answers if answer is not None]

    async def choose(self, placing: Mapping[str, int] | None = None) -> str:
        """The node for a new session: the one with the fewest running sandboxes.

        `placing` counts creates under way per node, which the nodes' own counts do not show yet.
        """
        stats = await self.stats()
        if not stats:
            raise Unavailable("no sandbox node is available")
        placing = placing or {}
        best = min(
            stats,
            key=lambda s: (
                s["sandboxes_running"] - s["pool_ready"] + placing.get(s["node_id"], 0),
                s["node_id"],
            ),
        )
        return str(best["node_id"])
