"""The project's exception tree.

    ToolServerError                 root of everything this project raises on purpose
    ├── UserError                   the caller's mistake: bad input, unknown names (4xx)
    │   ├── ValidationFailed        arguments do not match a schema (422, names the field)
    │   ├── NotFound                no such session / tool / file visible to the caller (404)
    │   │   └── SessionLost         the session existed but died with its node (410, names the node)
    │   ├── Conflict                the name is taken or the state forbids it (409)
    │   ├── PayloadTooLarge         code, body or file over its cap (413)
    │   ├── QuotaExceeded           the namespace holds as much as it may (429)
    │   └── Unauthorized            missing or wrong API key (401)
    │       └── Forbidden           key is valid but not allowed (403)
    ├── RuntimeFailure              something failed that the caller could not prevent (5xx)
    │   └── Unavailable             a backend (Docker, a node, a kernel) is gone or not ready (503)
    └── Signal                      control flow, not failure (for example: waiting for a human)

Every error is picklable with its attributes, because errors cross Ray process boundaries.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "QuotaExceeded",
    "RuntimeFailure",
    "SessionLost",
    "Signal",
    "ToolServerError",
    "Unauthorized",
    "Unavailable",
    "UserError",
    "ValidationFailed",
]


def _rebuild(cls: type[ToolServerError], message: str, state: dict[str, Any]) -> ToolServerError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ToolServerError(Exception):
    """Root of the project's exceptions; `type` names it in HTTP error bodies."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body's inner object."""
        body: dict[str, Any] = {"type": self.type, "message": self.message}
        body.update({k: v for k, v in self.details.items() if v is not None})
        return body


class UserError(ToolServerError):
    """The caller's mistake: bad input or an unknown name (400)."""

    status = 400
    type = "bad_request"


class ValidationFailed(UserError):
    """Arguments do not match a schema (422); `field` names where."""

    status = 422
    type = "validation_error"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message, field=field, **details)
        self.field = field


class NotFound(UserError):
    """No such session, tool or file visible to the caller (404)."""

    status = 404
    type = "not_found"


class SessionLost(NotFound):
    """The session existed, but its sandbox died with the node that held it (410); `node_id` names the node.

    A NotFound (the session is not there any more), told apart from one that never existed.
    """

    status = 410
    type = "session_lost"

    def __init__(self, message: str, *, session_id: str = "", node_id: str = "", **details: Any) -> None:
        super().__init__(message, session_id=session_id, node_id=node_id, **details)
        self.session_id = session_id
        self.node_id = node_id


class Conflict(UserError):
    """The name is taken, or the object's state forbids the request (409)."""

    status = 409
    type = "conflict"


class PayloadTooLarge(UserError):
    """Code, a body or a file over its cap (413)."""

    status = 413
    type = "payload_too_large"


class QuotaExceeded(UserError):
    """The namespace holds or runs as much as it may (429)."""

    status = 429
    type = "quota_exceeded"


class Unauthorized(UserError):
    """A missing or wrong API key (401)."""

    status = 401
    type = "unauthorized"


class Forbidden(Unauthorized):
    """A valid key that may not do this (403)."""

    status = 403
    type = "forbidden"


class RuntimeFailure(ToolServerError):
    """Something failed that the caller could not prevent (500)."""

    status = 500
    type = "runtime_error"


class Unavailable(RuntimeFailure):
    """A backend (Docker, a node, a kernel, an actor) is gone or not ready (503)."""

    status = 503
    type = "unavailable"


class Signal(ToolServerError):
    """Control flow carried as an exception; never an error to report."""

    status = 202
    type = "signal"
