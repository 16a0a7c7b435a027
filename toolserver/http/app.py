"""The FastAPI application: services wired together, routes, error mapping, limits, metrics."""

from __future__ import annotations

from fastapi import FastAPI

from toolserver.e2b import mount_e2b
from toolserver.http.body_limit import BodyLimit
from toolserver.http.errors import install_error_handlers
from toolserver.http.mcp_endpoint import mount_mcp
from toolserver.http.metrics import MetricsMiddleware
from toolserver.http.routes import agents, environments, memory, ports, processes, sessions, system, tools
from toolserver.http.routes import mcp_imports as mcp_import
from toolserver.http.routes import snapshots as snapshot_routes  # snapshots
from toolserver.http.routes import volumes as volume_routes
from toolserver.service.wiring import Services, build_services

__all__ = ["Services", "build_services", "create_app"]


def create_app(services: Services) -> FastAPI:
    """The FastAPI app over `services`: routes, MCP, error mapping, body limit, metrics."""
    app = FastAPI(
        title="toolserver",
        version=services.version,
        description="Tool server and sandboxed execution backend for LLM agents.",
    )
    app.state.services = services
    install_error_handlers(app)
    for module in (system, sessions, processes, ports, tools, agents, memory, environments, mcp_import):
        app.include_router(module.router)
    app.include_router(volume_routes.router)
    app.include_router(snapshot_routes.router)  # snapshots
    mount_mcp(app, services)
    mount_e2b(app)
    app.add_middleware(BodyLimit, max_bytes=services.settings.max_body_mb * 1024 * 1024)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    return app
