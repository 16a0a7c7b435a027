"""Shared ports: the request body and the answer."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from toolserver.api.base import Reply

__all__ = ["PortShare", "PortShareCreate"]


class PortShareCreate(BaseModel):
    """`POST /v1/sessions/{id}/ports/{port}/share`."""

    model_config = ConfigDict(extra="forbid")

    ttl_s: float = Field(3600.0, gt=0, le=7 * 24 * 3600, description="how long the URL works")


class PortShare(Reply):
    """A preview URL of a port: it works without the API key until `expires_at` or a revoke."""

    id: str
    port: int
    url: str
    token: str
    expires_at: float
