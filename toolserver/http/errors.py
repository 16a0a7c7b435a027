"""The one place where exceptions become HTTP responses: `{"error": {"type", "message", ...}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from foundation.errors import ToolServerError

__all__ = ["error_response", "install_error_handlers"]

log = logging.getLogger(__name__)


def error_response(status: int, type_: str, message: str, **extra: Any) -> JSONResponse:
    """An error answer: `{"error": {"type", "message", ...}}` with `status`."""
    body = {"type": type_, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse({"error": body}, status_code=status)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def install_error_handlers(app: FastAPI) -> None:
    """Make every exception an error answer of the project's shape."""

    @app.exception_handler(ToolServerError)
    async def _ours(request: Request, exc: ToolServerError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = _field_path(tuple(first.get("loc", ())))
        if first.get("type") == "json_invalid":
            return error_response(400, "bad_json", f"request body is not valid JSON: {first.get('msg')}")
        return error_response(
            422,
            "validation_error",
            f"{field}: {first.get('msg')}" if field else str(first.get("msg")),
            field=field,
            errors=[{"field": _field_path(tuple(e.get("loc", ()))), "message": e.get("msg")} for e in errors],
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return error_response(exc.status_code, names.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__})")
