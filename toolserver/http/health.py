"""`/healthz`'s summary, made at most once a second per replica: a burst of probes costs one fan-out to the nodes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray
from fastapi import Request

__all__ = ["HealthSummary", "health_summary"]


def _alive_ray_nodes() -> int:
    """How many Ray nodes are alive (a GCS round trip: run it off the event loop)."""
    return len([n for n in ray.nodes() if n.get("Alive")]) if ray.is_initialized() else 0


class HealthSummary:
    """The summary of the nodes' stats and Ray's nodes, shared by the probes of one `ttl_s`."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self.ttl_s = ttl_s
        self._made_at = -float("inf")
        self._summary: dict[str, Any] | None = None
        self._making: asyncio.Task[dict[str, Any]] | None = None

    async def get(self, services: Any) -> dict[str, Any]:
        """The summary, made again when it is older than `ttl_s` (concurrent callers share one making)."""
        if self._summary is not None and time.monotonic() - self._made_at < self.ttl_s:
            return self._summary
        if self._making is None or self._making.done():
            self._making = asyncio.get_running_loop().create_task(self._make(services))
        return await asyncio.shield(self._making)

    async def _make(self, services: Any) -> dict[str, Any]:
        nodes, ray_nodes = await asyncio.gather(services.nodes.stats(), asyncio.to_thread(_alive_ray_nodes))
        summary = {
            "status": "ok" if nodes else "degraded",
            "version": services.version,
            "ray_nodes": ray_nodes,
            "sandboxes_running": sum(n["sandboxes_running"] for n in nodes),
            "pool_size": sum(n["pool_ready"] for n in nodes),
            "nodes": nodes,
        }
        self._summary, self._made_at = summary, time.monotonic()
        return summary


async def health_summary(request: Request) -> HealthSummary:
    """The app's one HealthSummary (made on first use)."""
    state = request.app.state
    summary: HealthSummary | None = getattr(state, "health_summary", None)
    if summary is None:
        summary = state.health_summary = HealthSummary()
    return summary
