"""How the E2B front answers errors: E2B's bodies and Connect codes, from the project's error tree."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from foundation.errors import ToolServerError

__all__ = ["E2BConflict", "E2BUnsupported", "connect_code_name", "e2b_error"]


class E2BUnsupported(ToolServerError):
    """An E2B feature this server does not offer (yet): the message says which and why."""

    status = 501
    type = "not_implemented"


class E2BConflict(ToolServerError):
    """The sandbox is not in the state the call needs (paused already, or not paused): E2B's 409."""

    status = 409
    type = "conflict"


def e2b_error(status: int, message: str) -> JSONResponse:
    """E2B's error body, `{"code": status, "message": ...}`, which its SDK turns into typed exceptions."""
    return JSONResponse({"code": status, "message": message}, status_code=status)


def error_of(exc: ToolServerError) -> JSONResponse:
    return e2b_error(exc.status, exc.message)


_CODES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    410: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


def connect_code_name(exc: Any) -> str:
    """The Connect code (its enum name) for one of our errors' status."""
    return _CODES.get(getattr(exc, "status", 500), "INTERNAL")
