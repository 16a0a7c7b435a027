"""The base of every response model, and the error body every route may answer with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorBody", "ErrorReply", "Reply"]


class Reply(BaseModel):
    """A response body: declared fields are typed; unknown ones are kept (a newer server may add some)."""

    model_config = ConfigDict(extra="allow")


class ErrorBody(Reply):
    """The inner object of an error: `type` names the error (`not_found`, `validation_error`, ...)."""

    type: str
    message: str
    field: str | None = Field(None, description="where the input was wrong (validation errors)")
    setting: str | None = Field(None, description="the server setting that sets the limit, when one does")


class ErrorReply(Reply):
    """Every error answer: `{"error": {"type", "message", ...}}`."""

    error: ErrorBody

    @classmethod
    def of(cls, body: Any) -> ErrorReply:
        """The error in any body, also one that is not ours (a proxy's HTML page, say)."""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            inner = body["error"]
            if isinstance(inner.get("type"), str) and isinstance(inner.get("message"), str):
                return cls.model_validate(body)
        return cls(error=ErrorBody(type="http_error", message=str(body)[:500]))
