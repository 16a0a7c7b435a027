"""Errors the server answered, as the same tree the server raises: `except NotFound` works in and out of process.

ApiError                     any error answer; `status`, `type`, `message`, `body`
├── BadRequestError          400 (also foundation's UserError)
├── UnauthorizedError        401 (Unauthorized)
├── ForbiddenError           403 (Forbidden)
├── NotFoundError            404 (NotFound)
│   └── SessionLostError     410 (SessionLost: the session died with its node; `node_id` names it)
├── ConflictError            409 (Conflict)
├── PayloadTooLargeError     413 (PayloadTooLarge)
├── ValidationError          422 (ValidationFailed; `field` names where)
├── QuotaExceededError       429 (QuotaExceeded)
├── ServerError              500 and other 5xx (RuntimeFailure)
└── UnavailableError         503 (Unavailable)
"""

from __future__ import annotations

from typing import Any

from foundation.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RuntimeFailure,
    SessionLost,
    ToolServerError,
    Unauthorized,
    Unavailable,
    UserError,
    ValidationFailed,
)
from toolserver.api import ErrorReply

__all__ = [
    "ApiError",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "ServerError",
    "SessionLostError",
    "UnauthorizedError",
    "UnavailableError",
    "ValidationError",
    "error_for",
]


class ApiError(ToolServerError):
    """An error answer from the server: `status_code` (as answered), `error_type`, `message` and the whole `body`."""

    def __init__(self, status: int, body: ErrorReply, retry_after_s: float | None = None) -> None:
        details = body.error.model_dump(exclude={"type", "message"}, exclude_none=True)
        super().__init__(body.error.message, **details)
        self.status_code = status
        self.error_type = body.error.type
        self.body = body
        self.field = body.error.field
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"{self.status_code} {self.error_type}: {self.message}"


class BadRequestError(ApiError, UserError):
    """400: the request was not understood."""


class UnauthorizedError(ApiError, Unauthorized):
    """401: a missing or wrong API key."""


class ForbiddenError(ApiError, Forbidden):
    """403: the key may not do this."""


class NotFoundError(ApiError, NotFound):
    """404: no such object visible to the key."""


class SessionLostError(NotFoundError, SessionLost):
    """410: the session existed but died with its node (`node_id`); not worth a retry, make a new one."""


class ConflictError(ApiError, Conflict):
    """409: the name is taken or the object's state forbids the request."""


class PayloadTooLargeError(ApiError, PayloadTooLarge):
    """413: a body, code or file over its cap."""


class ValidationError(ApiError, ValidationFailed):
    """422: the input does not match the schema; `field` names where."""


class QuotaExceededError(ApiError, QuotaExceeded):
    """429: the namespace holds or runs as much as it may."""


class ServerError(ApiError, RuntimeFailure):
    """5xx: something failed on the server that the caller could not prevent."""


class UnavailableError(ApiError, Unavailable):
    """503: a backend is not available; the client retries these by default."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: SessionLostError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: QuotaExceededError,
    503: UnavailableError,
}


def error_for(status: int, body: Any, retry_after_s: float | None = None) -> ApiError:
    """The typed error for an answer's status and body (any body: a proxy's page becomes `http_error`)."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, ErrorReply.of(body), retry_after_s)
