"""`ApiRouter`: an APIRouter whose routes answer exactly their response model and document our error body."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from toolserver.api import ErrorReply

__all__ = ["ERROR_RESPONSES", "ApiRouter", "content_of"]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorReply, "description": description}
    for status, description in (
        (400, "bad request (for example a body that is not JSON)"),
        (401, "missing or wrong API key"),
        (403, "the key may not do this"),
        (404, "not found, or not the caller's"),
        (409, "conflict with the object's name or state"),
        (410, "the session was lost with its node (`session_lost`, with the node's id)"),
        (413, "a body, code or file over its cap"),
        (422, "the input does not match the schema; `field` names where"),
        (429, "the namespace holds or runs as much as it may"),
        (503, "a backend (Docker, a node, a kernel) is not available; retry later"),
    )
}
"""The statuses any authenticated route may answer, each with the `{"error": {...}}` body."""


class ApiRouter(APIRouter):
    """Every route lists the error statuses and shows only the keys its handler set (the contract's shapes)."""

    def add_api_route(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        """Add a route with the project's error statuses (a route's own `responses` win) and exact keys."""
        kwargs["responses"] = {**ERROR_RESPONSES, **(kwargs.get("responses") or {})}
        kwargs["response_model_exclude_unset"] = True  # the decorators always pass False
        super().add_api_route(path, endpoint, **kwargs)


def content_of(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route whose 200 is not JSON (`text/event-stream`, raw bytes, Prometheus text)."""
    return {200: {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}}
