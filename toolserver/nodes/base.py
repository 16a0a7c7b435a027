"""The seam between the HTTP service and the sandbox managers, wherever they run."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Protocol

from sandbox.base import FileEntry, PythonResult, SandboxInfo, SandboxSpec, ShellResult

__all__ = ["NodeClient", "NodeDirectory"]


class NodeClient(Protocol):
    """One node's sandbox manager, as the service sees it (a local object or a Ray actor)."""

    async def create(self, spec: SandboxSpec, ttl_s: float | None = None) -> SandboxInfo: ...
    async def get(self, session_id: str) -> SandboxInfo: ...
    async def shell(self, session_id: str, command: str, timeout_s: float = 30.0) -> ShellResult: ...
    async def python(self, session_id: str, code: str, timeout_s: float = 30.0) -> PythonResult: ...
    async def restart_python(self, session_id: str) -> None: ...
    async def write_file(self, session_id: str, path: str, data: bytes) -> FileEntry: ...
    async def read_file(self, session_id: str, path: str) -> bytes: ...
    async def list_files(self, session_id: str, path: str = "") -> list[FileEntry]: ...
    async def destroy(self, session_id: str) -> None: ...
    async def sessions(self) -> list[SandboxInfo]: ...
    async def stats(self) -> dict[str, Any]: ...


class NodeDirectory(abc.ABC):
    """Finds the sandbox manager of each node and picks a node for a new session."""

    @abc.abstractmethod
    async def node(self, node_id: str) -> NodeClient:
        """The manager on `node_id`; raises Unavailable when that node is gone."""

    @abc.abstractmethod
    async def node_ids(self) -> list[str]:
        """Nodes that currently have a live sandbox manager."""

    async def stats(self) -> list[dict[str, Any]]:
        """Per-node counts for health and placement; a node that does not answer is left out."""
        out = []
        for node_id in await self.node_ids():
            try:
                out.append(await (await self.node(node_id)).stats())
            except Exception:
                continue
        return out

    async def choose(self, placing: Mapping[str, int] | None = None) -> str:
        """The node for a new session: the one with the fewest running sandboxes.

        `placing` counts creates under way per node, which the nodes' own counts do not show yet.
        """
        stats = await self.stats()
        if not stats:
            from foundation.errors import Unavailable

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
