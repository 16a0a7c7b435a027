"""Prometheus metrics of this process: requests by route and status, latency, tool calls."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics", "MetricsMiddleware"]

NODES_MAX_AGE_S = 5.0


class Metrics:
    """The server's Prometheus counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "toolserver_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "toolserver_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )

        self._nodes_at = -NODES_MAX_AGE_S
        self.egress = Gauge(
            "toolserver_sandbox_egress_connections",
            "connections sandboxes asked their node's egress proxy for since the node started, by verdict",
            ["node", "verdict"],
            registry=self.registry,
        )

    async def refresh_nodes(self, nodes: Any, max_age_s: float = NODES_MAX_AGE_S) -> None:
        """Ask the nodes for their counts, at most once per `max_age_s` (a scrape is unauthenticated)."""
        now = time.monotonic()
        if now - self._nodes_at < max_age_s:
            return
        self._nodes_at = now
        self.observe_nodes(await nodes.stats())

    def observe_nodes(self, stats: list[dict[str, Any]]) -> None:
        """Take in what the nodes report (their egress proxies' counts) before a scrape."""
        for node in stats:
            egress = node.get("egress") or {}
            for verdict in ("allowed", "denied"):
                self.egress.labels(str(node.get("node_id")), verdict).set(int(egress.get(verdict, 0)))

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware counting requests by matched route and status."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], name, str(status)).inc()
            self.metrics.latency.labels(scope["method"], name).observe(time.perf_counter() - started)
