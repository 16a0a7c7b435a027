"""The E2B front as one ASGI app: the control API, envd's services and `/files`, the code interpreter."""

from __future__ import annotations

import logging
from typing import Any

from e2b.envd.filesystem.filesystem_connect import FilesystemASGIApplication
from e2b.envd.process.process_connect import ProcessASGIApplication
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount

from foundation.errors import ToolServerError
from toolserver.e2b._control import ControlAPI, control_routes
from toolserver.e2b._filesystem import EnvdFilesystem, FilesHTTP, files_routes
from toolserver.e2b._interpreter import Interpreter, interpreter_routes
from toolserver.e2b._process import EnvdProcess
from toolserver.e2b._records import E2BRecords
from toolserver.e2b._views import TemplateMap
from toolserver.e2b.errors import e2b_error

__all__ = ["build_e2b_app"]

log = logging.getLogger(__name__)
READ_MAX_BYTES = 4 << 20


def _service_paths(app: Any) -> Any:
    """`app` (a Connect service) seeing its own paths (`/process.Process/Start`), wherever it is mounted."""

    async def call(scope: Any, receive: Any, send: Any) -> None:
        path = str(scope.get("path", ""))
        at = path.rfind(app.path + "/")
        await app({**scope, "path": path[at:] if at >= 0 else path, "root_path": ""}, receive, send)

    return call


def build_e2b_app(svc: Any, state: Any) -> Starlette:
    """The front over `svc` (the server's Services); `state` is the main app's (shared stream caps)."""
    settings = svc.settings
    templates = TemplateMap(settings.e2b_templates, settings.sandbox_image, settings.allowed_image_list())
    records = E2BRecords(svc.sessions)
    process = ProcessASGIApplication(EnvdProcess(svc, state, records), read_max_bytes=READ_MAX_BYTES)  # type: ignore[arg-type]
    filesystem = FilesystemASGIApplication(EnvdFilesystem(svc), read_max_bytes=READ_MAX_BYTES)  # type: ignore[arg-type]
    routes = [
        *control_routes(ControlAPI(svc, templates, records)),
        *interpreter_routes(Interpreter(svc, state, records)),
        *files_routes(FilesHTTP(svc)),
        Mount(process.path, app=_service_paths(process)),
        Mount(filesystem.path, app=_service_paths(filesystem)),
    ]

    async def ours(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ToolServerError)
        if exc.status >= 500:
            log.warning("e2b %s %s failed: %s", request.method, request.url.path, exc.message)
        return e2b_error(exc.status, exc.message)

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return e2b_error(exc.status_code, str(exc.detail))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("e2b %s %s failed", request.method, request.url.path)
        return e2b_error(500, f"internal error ({type(exc).__name__})")

    return Starlette(
        routes=routes,
        exception_handlers={ToolServerError: ours, HTTPException: http, Exception: unexpected},
    )
