"""The FastAPI application: services wired together, routes, error mapping, limits, metrics."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from registry import Database
from toolserver.config import Settings
from toolserver.http.body_limit import BodyLimit
from toolserver.http.errors import install_error_handlers
from toolserver.http.mcp_endpoint import mount_mcp
from toolserver.http.metrics import MetricsMiddleware
from toolserver.http.routes import agents, environments, memory, sessions, system, tools
from toolserver.http.routes import mcp_imports as mcp_import
from toolserver.nodes.base import NodeDirectory
from toolserver.service.environment_tools import EnvironmentTools
from toolserver.service.environments import EnvironmentManager
from toolserver.service.wiring import Services, wire_services
from toolserver.tools.base import ToolRunner

__all__ = ["Services", "build_services", "create_app"]


def build_services(
    settings: Settings,
    db: Database,
    nodes: NodeDirectory,
    extra_runners: dict[str, ToolRunner] | None = None,
    scheduler: Any = None,
    environments: Any = None,
) -> Services:
    """Wire the stores and services over one database and one node directory.

    `scheduler` drives agent runs and `environments` owns the multi-agent task centers: clients of
    the server's actors, or (default) in-process objects.
    """
    services = wire_services(settings, db, nodes, extra_runners, scheduler, environments)
    if environments is None:
        services.environments = EnvironmentManager.from_settings(
            settings,
            use_ray=False,
            tools=EnvironmentTools(services.sessions, services.tools, actor="", ray_namespace=""),
        )
    return services


def create_app(services: Services) -> FastAPI:
    """The FastAPI app over `services`: routes, MCP, error mapping, body limit, metrics."""
    app = FastAPI(
        title="toolserver",
        version=services.version,
        description="Tool server and sandboxed execution backend for LLM agents.",
    )
    app.state.services = services
    install_error_handlers(app)
    for module in (system, sessions, tools, agents, memory, environments, mcp_import):
        app.include_router(module.router)
    mount_mcp(app, services)
    app.add_middleware(BodyLimit, max_bytes=services.settings.max_body_mb * 1024 * 1024)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    return app
